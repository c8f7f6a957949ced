"""The MLflow model registry as the platform uses it.

One registered model per dataset (``<dataset>_model``). Aliases carry deployment
state (``champion`` serves, ``challenger`` is under test, ``previous`` is the rollback
target) and every version carries tags saying what it was built from.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.pipeline import Pipeline

from mlops_assets.config import DatasetConfig
from mlops_assets.errors import PlatformError
from mlops_assets.features.engineering import derive_features
from mlops_assets.pipeline.gates import GATES_PASSED_TAG, failed_gates_in_tags
from mlops_assets.settings import PROJECT_ROOT, Settings
from mlops_assets.training.model_families import FAMILIES

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"

# Passing requirements explicitly saves ~2.4 s of inference per log_model call.
_MODEL_REQUIREMENTS = ("scikit-learn", "numpy", "pandas", "scipy", "skops")


class NoChampionError(PlatformError, LookupError):
    """A dataset has no model version holding the champion alias."""


def client(settings: Settings) -> MlflowClient:
    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri)


def ensure_experiment(settings: Settings) -> str:
    """The experiment id, created with its artifacts under MLOPS_HOME (not ./mlruns)."""
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    tracking = client(settings)
    experiment = tracking.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is not None:
        return experiment.experiment_id
    settings.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
    return tracking.create_experiment(
        settings.mlflow_experiment, artifact_location=settings.mlflow_artifacts.as_uri()
    )


def git_commit() -> str:
    """The project's commit, or "unknown" outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


@dataclass(frozen=True)
class RegisteredModel:
    """What the model asset hands downstream: where the version lives, not the object."""

    name: str
    version: str
    run_id: str
    decision_threshold: float


def log_and_register(
    settings: Settings,
    pipeline: Pipeline,
    config: DatasetConfig,
    example: pd.DataFrame,
    tags: dict[str, str],
) -> RegisteredModel:
    """Log the fitted pipeline in the active run and register it as a new version."""
    # Integer columns are declared as doubles: a missing value at inference time arrives as NaN,
    # which an integer schema would refuse. MLflow upcasts integers to doubles on the way in.
    sample = example[config.model_features].head(5)
    sample = sample.astype({c: "float64" for c in sample.columns if pd.api.types.is_integer_dtype(sample[c])})
    # The pyfunc serves predict_proba (below), so the signature describes its [p(0), p(1)] rows.
    signature = infer_signature(sample, pipeline.predict_proba(sample))
    info = mlflow.sklearn.log_model(
        pipeline,
        name="model",
        registered_model_name=config.registered_model_name,
        signature=signature,
        input_example=sample,
        pip_requirements=[f"{p}=={installed_version(p)}" for p in _MODEL_REQUIREMENTS],
        skops_trusted_types=list(FAMILIES[config.model.family].skops_trusted_types),
        pyfunc_predict_fn="predict_proba",
    )
    version = str(info.registered_model_version)
    tracking = client(settings)
    for key, value in tags.items():
        tracking.set_model_version_tag(config.registered_model_name, version, key, str(value))
    run_id = mlflow.active_run().info.run_id
    return RegisteredModel(
        name=config.registered_model_name,
        version=version,
        run_id=run_id,
        decision_threshold=float(tags["decision_threshold"]),
    )


def alias_version(settings: Settings, config: DatasetConfig, alias: str) -> str | None:
    """The version holding ``alias``, or None when the model or the alias does not exist.

    Any other registry error propagates: "registry unreachable" must never read as "no champion".
    """
    try:
        return str(client(settings).get_model_version_by_alias(config.registered_model_name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def set_alias(settings: Settings, config: DatasetConfig, alias: str, version: str) -> None:
    client(settings).set_registered_model_alias(config.registered_model_name, alias, version)


def delete_alias(settings: Settings, config: DatasetConfig, alias: str) -> None:
    client(settings).delete_registered_model_alias(config.registered_model_name, alias)


def set_version_tags(settings: Settings, config: DatasetConfig, version: str, tags: dict[str, str]) -> None:
    tracking = client(settings)
    for key, value in tags.items():
        tracking.set_model_version_tag(config.registered_model_name, version, key, str(value))


def model_versions(settings: Settings, config: DatasetConfig) -> list:
    """Every registered version of the dataset's model, oldest first (none when it was never registered)."""
    found = client(settings).search_model_versions(f"name='{config.registered_model_name}'")
    return sorted(found, key=lambda v: int(v.version))


def no_champion_reason(settings: Settings, config: DatasetConfig) -> str:
    """Why ``config``'s dataset has no champion, in the words the service and the CLI print."""
    versions = model_versions(settings, config)
    prefix = f"{config.name} has no {CHAMPION}"
    if not versions:
        return (f"{prefix}: no version of {config.registered_model_name} is registered in "
                f"{settings.mlflow_tracking_uri}; run `mlops materialize` (or `mlops demo`) first")
    newest = versions[-1]
    failed = failed_gates_in_tags(newest.tags)
    if failed:
        return f"{prefix}: version {newest.version} failed {failed}"
    if newest.tags.get(GATES_PASSED_TAG) != "true":
        return (f"{prefix}: version {newest.version} has no gate results (its run stopped before the gates); "
                "run `mlops materialize` again")
    return (f"{prefix}: no version holds the alias, though version {newest.version} passed every gate; "
            f"`mlops promote {config.registered_model_name} {newest.version} --reason TEXT` serves it")


@dataclass
class ServedModel:
    """A registered version loaded for scoring: derived features are computed here, as in training."""

    config: DatasetConfig
    version: str
    run_id: str
    decision_threshold: float
    pipeline: Pipeline

    def score(self, records: pd.DataFrame) -> np.ndarray:
        """Positive-class probability for rows holding the raw feature columns."""
        features = derive_features(records, self.config)[self.config.model_features]
        return self.pipeline.predict_proba(features)[:, 1]


def load_version(settings: Settings, config: DatasetConfig, version: str) -> ServedModel:
    tracking = client(settings)
    details = tracking.get_model_version(config.registered_model_name, version)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    pipeline = mlflow.sklearn.load_model(f"models:/{config.registered_model_name}/{version}")
    return ServedModel(
        config=config,
        version=str(version),
        run_id=details.run_id,
        decision_threshold=float(details.tags.get("decision_threshold", 0.5)),
        pipeline=pipeline,
    )


def load_champion(settings: Settings, config: DatasetConfig) -> ServedModel:
    """The version holding the champion alias, ready to score."""
    version = alias_version(settings, config, CHAMPION)
    if version is None:
        raise NoChampionError(no_champion_reason(settings, config))
    return load_version(settings, config, version)


def log_evaluation(settings: Settings, run_id: str, metrics: dict[str, float], files: list[Path]) -> None:
    """Attach holdout metrics and plots to the run that trained the model, even after it ended."""
    tracking = client(settings)
    for key, value in metrics.items():
        tracking.log_metric(run_id, f"test_{key}", value)
    for path in files:
        tracking.log_artifact(run_id, str(path), artifact_path="evaluation")
