"""Training one model version: fit on the train split, pick the threshold on validation, log and register.

Plain domain code: the ``model`` asset calls it, and so could a notebook or a script.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.metadata import distributions

import mlflow
import pandas as pd
from sklearn.pipeline import Pipeline

from mlops_assets.config import DatasetConfig
from mlops_assets.data.snapshots import frame_fingerprint
from mlops_assets.features.training_set import binary_target, split_frame, training_set_tags
from mlops_assets.settings import Settings
from mlops_assets.training.evaluation import choose_threshold, classification_metrics
from mlops_assets.training.model_families import build_pipeline
from mlops_assets.training.registry import RegisteredModel, git_commit, log_and_register


@dataclass(frozen=True)
class FittedModel:
    pipeline: Pipeline
    threshold: float
    validation_metrics: dict[str, float]
    train_rows: int


def environment_hash() -> str:
    """Hash of every installed distribution and version: equal hashes, equal environments."""
    pins = sorted(f"{d.metadata['Name'].lower()}=={d.version}" for d in distributions())
    return hashlib.sha256("\n".join(pins).encode()).hexdigest()[:12]


def fit_model(training_set: pd.DataFrame, config: DatasetConfig) -> FittedModel:
    """The config's pipeline fitted on the train split, its threshold chosen on the validation split."""
    train, validation = split_frame(training_set, "train"), split_frame(training_set, "validation")
    pipeline = build_pipeline(config).fit(train[config.model_features], binary_target(train, config))
    y_validation = binary_target(validation, config)
    scores = pipeline.predict_proba(validation[config.model_features])[:, 1]
    threshold = choose_threshold(y_validation, scores, config.model.decision_threshold)
    return FittedModel(pipeline, threshold, classification_metrics(y_validation, scores, threshold), len(train))


def lineage_tags(training_set: pd.DataFrame, config: DatasetConfig, fitted: FittedModel) -> dict[str, str]:
    """What a registered version was built from: enough to rebuild or to explain it."""
    return {
        "dataset": config.name,
        "data_snapshot": frame_fingerprint(training_set),
        "feature_version": config.feature_version,
        "git_commit": git_commit(),
        "environment_hash": environment_hash(),
        "model_family": config.model.family,
        "decision_threshold": f"{fitted.threshold:.6f}",
        **training_set_tags(training_set),  # feature-store manifest: view + table versions, content hash
    }


def log_training_run(
    settings: Settings, fitted: FittedModel, config: DatasetConfig, training_set: pd.DataFrame,
    tags: dict[str, str], version_tags: dict[str, str] | None = None,
) -> RegisteredModel:
    """A nested MLflow run (under the active one) with params and validation metrics, and a new version.

    ``tags`` go on the run and the version; ``version_tags`` on the version only.
    """
    with mlflow.start_run(run_name=f"{config.name}-train", nested=True, tags=tags):
        mlflow.log_params({"model_family": config.model.family, "features": len(config.model_features),
                           "train_rows": fitted.train_rows, **config.model.params})
        mlflow.log_metrics({f"validation_{k}": v for k, v in fitted.validation_metrics.items()})
        return log_and_register(settings, fitted.pipeline, config, split_frame(training_set, "train"),
                                {**tags, **(version_tags or {})})
