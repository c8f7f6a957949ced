"""Experiment-management assets of one dataset: the trained, registered model and its evaluation."""

import dagster as dg
import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.dagster_metadata import metric_metadata, rounded
from mlops_assets.markdown import png_markdown
from mlops_assets.settings import Settings
from mlops_assets.training.evaluation import Evaluation, evaluate_on_test
from mlops_assets.training.registry import RegisteredModel, ensure_experiment
from mlops_assets.training.train import fit_model, lineage_tags, log_training_run

GROUP = "training"


def mlflow_run_url(settings: Settings, run_id: str) -> str:
    experiment_id = ensure_experiment(settings)
    return f"{settings.mlflow_ui}/#/experiments/{experiment_id}/runs/{run_id}"


def build_training_assets(config: DatasetConfig, settings: Settings) -> list[dg.AssetsDefinition]:
    name = config.name
    training_set_key = dg.AssetKey([name, "training_set"])
    model_key = dg.AssetKey([name, "model"])

    @dg.asset(
        key=model_key,
        ins={"training_set": dg.AssetIn(training_set_key)},
        group_name=GROUP,
        owners=config.owners,
        kinds={"sklearn", "mlflow"},
        required_resource_keys={"mlflow"},
        description=f"{config.model.family} pipeline for {name}, trained on the train split, its decision "
        f"threshold chosen on the validation split, logged to MLflow and registered as a new version of "
        f"'{config.registered_model_name}'.",
    )
    def model(context: dg.AssetExecutionContext, training_set: pd.DataFrame) -> dg.Output[RegisteredModel]:
        fitted = fit_model(training_set, config)
        tags = lineage_tags(training_set, config, fitted)
        # dagster_run_id goes on the version only: dagster-mlflow finds the Dagster run's MLflow run
        # by that tag in every step, and would resume this nested run if it carried it.
        registered = log_training_run(settings, fitted, config, training_set, tags, {"dagster_run_id": context.run_id})
        context.log.info(f"registered {registered.name} version {registered.version} (run {registered.run_id})")
        return dg.Output(
            registered,
            metadata={
                "registered_model": registered.name,
                "model_version": registered.version,
                "mlflow_run_id": registered.run_id,
                "mlflow_run": dg.MetadataValue.url(mlflow_run_url(settings, registered.run_id)),
                "decision_threshold": rounded(fitted.threshold),
                **{f"validation_{k}": rounded(v) for k, v in fitted.validation_metrics.items()
                   if k in ("roc_auc", "pr_auc", "log_loss", "brier")},
                "params": dg.MetadataValue.json(config.model.params),
                "data_snapshot": tags["data_snapshot"],
                "feature_version": config.feature_version,
                "git_commit": tags["git_commit"],
                "environment_hash": tags["environment_hash"],
            },
        )

    @dg.asset(
        key=[name, "evaluation"],
        ins={"training_set": dg.AssetIn(training_set_key), "model": dg.AssetIn(model_key)},
        group_name=GROUP,
        owners=config.owners,
        kinds={"sklearn", "mlflow"},
        description=f"Holdout evaluation of the newest {name} model version on the test split (the newest "
        "rows): ROC AUC, PR AUC, log loss, Brier score and accuracy at the chosen threshold, with ROC and "
        "calibration plots. The model is loaded back from the registry, so this also proves it loads.",
    )
    def evaluation(context: dg.AssetExecutionContext, training_set: pd.DataFrame, model: RegisteredModel) -> dg.Output[Evaluation]:
        result = evaluate_on_test(settings, config, training_set, model)
        return dg.Output(
            result,
            metadata={
                **metric_metadata(result.metrics),
                "model_version": model.version,
                "mlflow_run": dg.MetadataValue.url(mlflow_run_url(settings, model.run_id)),
                "roc_curve": dg.MetadataValue.md(png_markdown(result.plots["roc"].read_bytes(), "ROC curve")),
                "calibration": dg.MetadataValue.md(png_markdown(result.plots["calibration"].read_bytes(), "calibration")),
                "plots_folder": dg.MetadataValue.path(str(result.plots["roc"].parent)),
            },
        )

    return [model, evaluation]
