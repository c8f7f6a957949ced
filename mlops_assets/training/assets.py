"""Experiment-management assets of one dataset: the tuning study, the model, its evaluation (and version)."""

import dagster as dg
import mlflow
import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.dagster_metadata import metric_metadata, rounded
from mlops_assets.markdown import markdown_table, png_markdown
from mlops_assets.settings import Settings
from mlops_assets.training.evaluation import Evaluation, evaluate_on_test
from mlops_assets.training.registry import LoggedModel, ensure_experiment
from mlops_assets.training.study import StudyOutcome, check_tunable
from mlops_assets.training.tracking import experiment_url
from mlops_assets.training.train import fit_model, lineage_tags, log_training_run
from mlops_assets.training.tuning import tune

GROUP = "training"


def mlflow_run_url(settings: Settings, run_id: str) -> str:
    return experiment_url(settings.mlflow_ui, ensure_experiment(settings), run_id)


def _active_run_id() -> str | None:
    run = mlflow.active_run()
    return run.info.run_id if run else None


def build_training_assets(config: DatasetConfig, settings: Settings) -> list[dg.AssetsDefinition]:
    # A search space naming a parameter the family does not have fails here, when the code location loads.
    check_tunable(config)
    name = config.name
    training_set_key = dg.AssetKey([name, "training_set"])
    study_key = dg.AssetKey([name, "study"])
    model_key = dg.AssetKey([name, "model"])
    space = ", ".join(config.search_space) or "nothing (no search_space)"

    @dg.asset(
        key=study_key,
        ins={"training_set": dg.AssetIn(training_set_key)},
        group_name=GROUP,
        owners=config.owners,
        kinds={"optuna", "mlflow"},
        required_resource_keys={"mlflow"},
        description=f"Optuna study tuning {config.model.family} for {name} over {space}: TPE sampler "
        f"(seed {config.tuning.seed}), {config.tuning.pruner} pruning on {config.tuning.stages} intermediate "
        f"validation {config.tuning.metric} scores, up to {config.tuning.n_trials} trials or "
        f"{config.tuning.timeout_seconds} s. The study lives in its own database; each trial is a nested MLflow run.",
    )
    def study(context: dg.AssetExecutionContext, training_set: pd.DataFrame) -> dg.Output[StudyOutcome]:
        outcome = tune(settings, config, training_set, parent_run_id=_active_run_id())
        context.log.info(outcome.summary)
        metadata: dict[str, dg.MetadataValue] = {"summary": dg.MetadataValue.text(outcome.summary),
                                                 "best_params": dg.MetadataValue.json(outcome.best_params)}
        if outcome.tuned:
            metadata.update({
                "study_name": outcome.study_name,
                "storage": outcome.storage,
                f"best_validation_{outcome.metric}": rounded(outcome.best_value),
                "best_trial": dg.MetadataValue.int(outcome.best_trial),
                "trials": dg.MetadataValue.json(outcome.trials),
                "new_trials": dg.MetadataValue.int(outcome.new_trials),
                "tuning_rows": outcome.tuning_rows,
                "seconds": dg.MetadataValue.float(round(outcome.seconds, 2)),
                "mlflow_run": dg.MetadataValue.url(mlflow_run_url(settings, outcome.mlflow_run_id)),
                **{name.replace("_", " "): dg.MetadataValue.md(png_markdown(open(path, "rb").read(), name))
                   for name, path in outcome.plots.items()},
            })
        return dg.Output(outcome, metadata=metadata)

    @dg.asset(
        key=model_key,
        ins={"training_set": dg.AssetIn(training_set_key), "study": dg.AssetIn(study_key)},
        group_name=GROUP,
        owners=config.owners,
        kinds={"sklearn", "mlflow"},
        required_resource_keys={"mlflow"},
        description=f"{config.model.family} pipeline for {name} with the study's best parameters, trained on the "
        f"train split, its decision threshold chosen on the validation split. Logged to MLflow with its "
        f"parameters, environment, datasets and signature; registered as a version of "
        f"'{config.registered_model_name}' only once its evaluation is done.",
    )
    def model(context: dg.AssetExecutionContext, training_set: pd.DataFrame, study: StudyOutcome) -> dg.Output[LoggedModel]:
        fitted = fit_model(training_set, config, study.best_params)
        tags = lineage_tags(training_set, config, fitted)
        if study.tuned:
            tags.update({"optuna.study": study.study_name, "optuna.best_trial": str(study.best_trial)})
        extra = {"tuning_seed": config.tuning.seed, "tuned": study.tuned}
        logged = log_training_run(settings, fitted, config, training_set, tags, extra_params=extra)
        if fitted.threshold_warning:
            context.log.warning(fitted.threshold_warning)
        context.log.info(f"logged {config.name} model in run {logged.run_id} (registered after evaluation)")
        metadata = {
            "mlflow_run_id": logged.run_id,
            "mlflow_run": dg.MetadataValue.url(mlflow_run_url(settings, logged.run_id)),
            "model_uri": logged.model_uri,
            "decision_threshold": rounded(fitted.threshold),
            **{f"validation_{k}": rounded(v) for k, v in fitted.validation_metrics.items()
               if k in ("roc_auc", "pr_auc", "log_loss", "brier")},
            "params": dg.MetadataValue.json({**config.model.params, **study.best_params}),
            "data_snapshot": tags["data_snapshot"],
            "feature_version": config.feature_version,
            "git_commit": tags["git_commit"],
            "environment_hash": tags["environment_hash"],
            "predictions_hash": tags["predictions_hash"],
        }
        if fitted.threshold_warning:
            metadata["decision_threshold_warning"] = dg.MetadataValue.text(fitted.threshold_warning)
        return dg.Output(logged, metadata=metadata)

    @dg.asset(
        key=[name, "evaluation"],
        ins={"training_set": dg.AssetIn(training_set_key), "model": dg.AssetIn(model_key)},
        group_name=GROUP,
        owners=config.owners,
        kinds={"sklearn", "mlflow"},
        description=f"Holdout evaluation of the new {name} model on the test split (the newest rows): ROC AUC, "
        "PR AUC, log loss, Brier score and accuracy at the chosen threshold, with ROC and calibration plots, "
        "and a paired significance test against the current champion on the same rows (DeLong, McNemar, "
        "bootstrap). Only then is the model registered as a new version, its metrics as tags.",
    )
    def evaluation(context: dg.AssetExecutionContext, training_set: pd.DataFrame, model: LoggedModel) -> dg.Output[Evaluation]:
        result = evaluate_on_test(settings, config, training_set, model, {"dagster_run_id": context.run_id})
        metadata: dict[str, dg.MetadataValue] = {
            **metric_metadata(result.metrics),
            "model_version": result.model.version,
            "mlflow_run": dg.MetadataValue.url(mlflow_run_url(settings, model.run_id)),
            "roc_curve": dg.MetadataValue.md(png_markdown(result.plots["roc"].read_bytes(), "ROC curve")),
            "calibration": dg.MetadataValue.md(png_markdown(result.plots["calibration"].read_bytes(), "calibration")),
            "plots_folder": dg.MetadataValue.path(str(result.plots["roc"].parent)),
        }
        if result.inference:
            metadata["inference_path"] = dg.MetadataValue.text(
                f"{result.inference['inference_path']}: {result.inference['inference_check']}")
        if result.comparison is not None:
            metadata["compared_with_champion"] = dg.MetadataValue.text(f"v{result.champion_version}")
            metadata["comparison_summary"] = dg.MetadataValue.text(result.comparison_summary)
            metadata["comparison"] = dg.MetadataValue.md(markdown_table(pd.DataFrame(
                [{k: row[k] for k in ("metric", "a", "b", "difference", "ci_low", "ci_high", "p_value", "test", "verdict")}
                 for row in result.comparison]).rename(columns={"a": f"champion v{result.champion_version}",
                                                                 "b": "candidate"})))
        if result.artifact_storage:
            stored = result.artifact_storage
            metadata["artifact_storage"] = dg.MetadataValue.text(
                f"{stored['files']} files, {stored['logical_bytes'] / 1e6:.1f} MB in MLflow's layout, "
                f"{stored['stored_bytes'] / 1e6:.1f} MB on disk (content-addressed)")
        if result.threshold_warning:
            metadata["decision_threshold_warning"] = dg.MetadataValue.text(result.threshold_warning)
        return dg.Output(result, metadata=metadata)

    return [study, model, evaluation]
