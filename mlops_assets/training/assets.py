"""Experiment-management assets of one dataset: the trained, registered model and its evaluation."""


import hashlib
from dataclasses import dataclass, field
from importlib.metadata import distributions
from pathlib import Path

import dagster as dg
import mlflow
import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.dagster_metadata import frame_fingerprint, markdown_table, png_markdown
from mlops_assets.features.training_set import binary_target, split_frame
from mlops_assets.settings import Settings
from mlops_assets.training.evaluation import choose_threshold, classification_metrics, evaluation_plots
from mlops_assets.training.model_families import build_pipeline
from mlops_assets.training.registry import (
    RegisteredModel,
    ensure_experiment,
    git_commit,
    load_version,
    log_and_register,
    log_evaluation,
)

GROUP = "training"


@dataclass(frozen=True)
class Evaluation:
    """Holdout result of one registered model version."""

    model: RegisteredModel
    metrics: dict[str, float]
    plots: dict[str, Path] = field(default_factory=dict)


def environment_hash() -> str:
    """Hash of every installed distribution and version: equal hashes, equal environments."""
    pins = sorted(f"{d.metadata['Name'].lower()}=={d.version}" for d in distributions())
    return hashlib.sha256("\n".join(pins).encode()).hexdigest()[:12]


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
        train, validation = split_frame(training_set, "train"), split_frame(training_set, "validation")
        pipeline = build_pipeline(config)
        pipeline.fit(train[config.model_features], binary_target(train, config))
        y_validation = binary_target(validation, config)
        validation_scores = pipeline.predict_proba(validation[config.model_features])[:, 1]
        threshold = choose_threshold(y_validation, validation_scores, config.model.decision_threshold)
        validation_metrics = classification_metrics(y_validation, validation_scores, threshold)
        tags = {
            "dataset": name,
            "data_snapshot": frame_fingerprint(training_set),
            "feature_version": config.feature_version,
            "git_commit": git_commit(),
            "environment_hash": environment_hash(),
            "model_family": config.model.family,
            "decision_threshold": f"{threshold:.6f}",
            "dagster_run_id": context.run_id,
        }
        # Not the dagster_run_id tag: dagster-mlflow finds "its" run by that tag and would resume this one.
        run_tags = {k: v for k, v in tags.items() if k != "dagster_run_id"}
        with mlflow.start_run(run_name=f"{name}-train", nested=True, tags=run_tags):
            mlflow.log_params({"model_family": config.model.family, "features": len(config.model_features),
                               "train_rows": len(train), **config.model.params})
            mlflow.log_metrics({f"validation_{k}": v for k, v in validation_metrics.items()})
            registered = log_and_register(pipeline, config, train, tags)
        context.log.info(f"registered {registered.name} version {registered.version} (run {registered.run_id})")
        return dg.Output(
            registered,
            metadata={
                "registered_model": registered.name,
                "model_version": registered.version,
                "mlflow_run_id": registered.run_id,
                "mlflow_run": dg.MetadataValue.url(mlflow_run_url(settings, registered.run_id)),
                "decision_threshold": dg.MetadataValue.float(threshold),
                **{f"validation_{k}": dg.MetadataValue.float(v) for k, v in validation_metrics.items()
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
        test = split_frame(training_set, "test")
        served = load_version(settings, config, model.version)
        y_test = binary_target(test, config).to_numpy()
        scores = served.pipeline.predict_proba(test[config.model_features])[:, 1]
        metrics = classification_metrics(y_test, scores, model.decision_threshold)
        plots = evaluation_plots(y_test, scores, f"{name} v{model.version}")
        folder = settings.dataset_reports(name) / f"v{model.version}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"roc": folder / "roc.png", "calibration": folder / "calibration.png"}
        paths["roc"].write_bytes(plots.roc_png)
        paths["calibration"].write_bytes(plots.calibration_png)
        log_evaluation(settings, model.run_id, metrics, list(paths.values()))
        metric_table = pd.DataFrame({"metric": list(metrics), "value": list(metrics.values())})
        return dg.Output(
            Evaluation(model=model, metrics=metrics, plots=paths),
            metadata={
                **{k: dg.MetadataValue.float(v) for k, v in metrics.items()},
                "model_version": model.version,
                "mlflow_run": dg.MetadataValue.url(mlflow_run_url(settings, model.run_id)),
                "metrics": dg.MetadataValue.md(markdown_table(metric_table)),
                "roc_curve": dg.MetadataValue.md(png_markdown(plots.roc_png, "ROC curve")),
                "calibration": dg.MetadataValue.md(png_markdown(plots.calibration_png, "calibration")),
                "plots_folder": dg.MetadataValue.path(str(folder)),
            },
        )

    return [model, evaluation]
