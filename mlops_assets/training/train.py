"""Training one model: fit on the train split, pick the threshold on validation, log the run and the model.

Plain domain code: the ``model`` asset calls it, ``mlops reproduce`` calls it again from
a run's records. Nothing is registered here: a version is registered only once its
evaluation is done (``evaluation.register_evaluated``), so a run that fails after this
step leaves no version behind.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import mlflow.data
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from mlops_assets.config import DatasetConfig
from mlops_assets.data.snapshots import frame_fingerprint
from mlops_assets.features.training_set import binary_target, split_frame, training_set_tags
from mlops_assets.settings import Settings
from mlops_assets.training.environment import (
    ENVIRONMENT_ARTIFACT,
    REQUIREMENTS_ARTIFACT,
    Environment,
    capture_environment,
)
from mlops_assets.training.evaluation import choose_threshold, classification_metrics, threshold_warning
from mlops_assets.training.model_families import build_pipeline
from mlops_assets.training.registry import LoggedModel, ensure_experiment, log_model
from mlops_assets.training.tracking import DESCRIPTION_TAG, now_label

CONFIG_ARTIFACT_FOLDER = "config"


@dataclass(frozen=True)
class FittedModel:
    pipeline: Pipeline
    threshold: float
    validation_metrics: dict[str, float]
    train_rows: int
    tuned_params: dict[str, Any] = field(default_factory=dict)
    threshold_warning: str | None = None


def predictions_hash(scores: np.ndarray) -> str:
    """Identity of a model's behaviour: skops writes different bytes for the same model, predictions do not."""
    return hashlib.sha256(np.ascontiguousarray(scores, dtype=np.float64).tobytes()).hexdigest()[:16]


def fit_model(training_set: pd.DataFrame, config: DatasetConfig, params: dict[str, Any] | None = None) -> FittedModel:
    """The config's pipeline (``params`` override its parameters) fitted on train, threshold chosen on validation."""
    train, validation = split_frame(training_set, "train"), split_frame(training_set, "validation")
    pipeline = build_pipeline(config, params).fit(train[config.model_features], binary_target(train, config))
    y_validation = binary_target(validation, config).to_numpy()
    scores = pipeline.predict_proba(validation[config.model_features])[:, 1]
    threshold = choose_threshold(y_validation, scores, config.model.decision_threshold)
    return FittedModel(pipeline, threshold, classification_metrics(y_validation, scores, threshold), len(train),
                       dict(params or {}), threshold_warning(y_validation, scores, threshold))


def test_scores(pipeline: Pipeline, training_set: pd.DataFrame, config: DatasetConfig) -> np.ndarray:
    return pipeline.predict_proba(split_frame(training_set, "test")[config.model_features])[:, 1]


def lineage_tags(training_set: pd.DataFrame, config: DatasetConfig, fitted: FittedModel,
                 environment: Environment | None = None) -> dict[str, str]:
    """What a model was built from: enough to rebuild it (``mlops reproduce``) or to explain it."""
    environment = environment or capture_environment()
    tags = {
        "dataset": config.name,
        "data_snapshot": frame_fingerprint(training_set),
        "feature_version": config.feature_version,
        "model_family": config.model.family,
        "decision_threshold": f"{fitted.threshold:.6f}",
        "tuned_params": json.dumps(fitted.tuned_params, sort_keys=True),
        "predictions_hash": predictions_hash(test_scores(fitted.pipeline, training_set, config)),
        **environment.tags(),
        **training_set_tags(training_set),  # feature-store manifest: view + table versions, content hash
    }
    if fitted.threshold_warning:
        tags["decision_threshold_warning"] = fitted.threshold_warning
    return tags


def pipeline_params(pipeline: Pipeline) -> dict[str, str]:
    """The pipeline's full ``get_params``, as MLflow params (strings, at most 6000 characters)."""
    return {key: str(value)[:6000] for key, value in sorted(pipeline.get_params(deep=True).items())
            if not key.endswith(("steps", "transformers", "memory")) and "__" in key}


def log_datasets(settings: Settings, training_set: pd.DataFrame, config: DatasetConfig) -> None:
    """Train, validation and test splits as MLflow datasets of the active run (the UI's "Datasets")."""
    source = str(settings.asset_storage / config.name / "training_set")
    for split in ("train", "validation", "test"):
        frame = split_frame(training_set, split)
        with warnings.catch_warnings():
            # "integer columns cannot represent missing values"; "source can be interpreted in multiple ways"
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(frame, source=source, targets=config.target, name=f"{config.name}-{split}")
        mlflow.log_input(dataset, context="training" if split == "train" else split)


def log_training_run(
    settings: Settings, fitted: FittedModel, config: DatasetConfig, training_set: pd.DataFrame,
    tags: dict[str, str], extra_params: dict[str, Any] | None = None, parent_run_id: str | None = None,
) -> LoggedModel:
    """A run (nested under the active one) with everything to explain and rebuild the model, and the model.

    Params: the pipeline's full ``get_params``, seeds, family. Metrics: validation.
    Tags: lineage and environment. Artifacts: the dataset config file, the installed package
    list, the training data as MLflow datasets, and the model with signature and input example.
    """
    environment = capture_environment()
    run_name = f"{config.name} model {now_label()}"
    description = (f"`{config.model.family}` trained on `{config.name}` "
                   f"({fitted.train_rows} training rows, data snapshot `{tags['data_snapshot']}`). "
                   f"{config.description}").strip()
    nested = mlflow.active_run() is not None
    with mlflow.start_run(experiment_id=ensure_experiment(settings), run_name=run_name, nested=nested, parent_run_id=parent_run_id if not nested else None,
                          tags={**tags, "run_kind": "model", DESCRIPTION_TAG: description}) as run:
        mlflow.log_params({"model_family": config.model.family, "features": len(config.model_features),
                           "train_rows": fitted.train_rows, "model_seed": config.model.seed,
                           "threshold_rule": str(config.model.decision_threshold),
                           **(extra_params or {}), **pipeline_params(fitted.pipeline)})
        mlflow.log_metrics({f"validation_{k}": v for k, v in fitted.validation_metrics.items()})
        with tempfile.TemporaryDirectory() as folder:
            folder = Path(folder)
            (folder / "environment.json").write_text(environment.to_json())
            (folder / "requirements.txt").write_text("\n".join(environment.packages) + "\n")
            mlflow.log_artifact(str(folder / "environment.json"), Path(ENVIRONMENT_ARTIFACT).parent.as_posix())
            mlflow.log_artifact(str(folder / "requirements.txt"), Path(REQUIREMENTS_ARTIFACT).parent.as_posix())
        if config.path is not None:
            mlflow.log_artifact(str(config.path), CONFIG_ARTIFACT_FOLDER)
        log_datasets(settings, training_set, config)
        info = log_model(fitted.pipeline, config, split_frame(training_set, "train"))
        run_id = run.info.run_id
    return LoggedModel(name=config.registered_model_name, run_id=run_id, model_uri=info.model_uri,
                       decision_threshold=fitted.threshold, version_tags=tags,
                       threshold_warning=fitted.threshold_warning)
