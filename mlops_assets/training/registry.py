"""The MLflow model registry as the platform uses it.

One registered model per dataset (``<dataset>_model``). Aliases carry deployment
state (``champion`` serves, ``challenger`` is under test, ``previous`` is the rollback
target) and every version carries tags saying what it was built from.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient
from sklearn.pipeline import Pipeline

from mlops_assets.config import NUMERIC_TYPES, DatasetConfig
from mlops_assets.errors import PlatformError
from mlops_assets.features.engineering import derive_features
from mlops_assets.pipeline.gates import GATES_PASSED_TAG, failed_gates_in_tags
from mlops_assets.settings import Settings
from mlops_assets.training.artifacts import canonicalize_logged_model, deduplicate, local_artifact_folder
from mlops_assets.training.model_families import FAMILIES
from mlops_assets.training.tracking import (
    EXPERIMENT_KIND_TAG,
    MODEL_TRAINING_KIND,
    describe_experiment,
    speed_up_sqlite,
)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"

EXPERIMENT_DESCRIPTION = (
    "Runs of the mlops-assets platform. Each Dagster run that trains is a parent run; nested under it, "
    "per dataset: the Optuna **study** (one nested run per trial) and the **model** run (parameters, "
    "validation and test metrics, environment, datasets, model card, the model). Registered models are "
    "named `<dataset>_model`; aliases `champion`, `challenger`, `previous` carry deployment state."
)

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
    speed_up_sqlite(tracking)
    experiment = tracking.get_experiment_by_name(settings.mlflow_experiment)
    if experiment is not None:
        if experiment.tags.get(EXPERIMENT_KIND_TAG) != MODEL_TRAINING_KIND:
            describe_experiment(tracking, experiment.experiment_id, EXPERIMENT_DESCRIPTION)
        return experiment.experiment_id
    settings.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
    try:
        experiment_id = tracking.create_experiment(
            settings.mlflow_experiment, artifact_location=settings.mlflow_artifacts.as_uri()
        )
    except MlflowException as exc:  # another worker created it first
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return tracking.get_experiment_by_name(settings.mlflow_experiment).experiment_id
    describe_experiment(tracking, experiment_id, EXPERIMENT_DESCRIPTION)
    return experiment_id


@dataclass(frozen=True)
class RegisteredModel:
    """What the model asset hands downstream: where the version lives, not the object."""

    name: str
    version: str
    run_id: str
    decision_threshold: float


@dataclass(frozen=True)
class LoggedModel:
    """What the ``model`` asset hands to ``evaluation``: a logged model, not yet a registered version."""

    name: str  # the registered model it will become a version of
    run_id: str
    model_uri: str
    decision_threshold: float
    version_tags: dict[str, str]
    threshold_warning: str | None = None


def log_model(pipeline: Pipeline, config: DatasetConfig, example: pd.DataFrame) -> ModelInfo:
    """Log the fitted pipeline in the active run, with signature and input example; not registered."""
    # Integer columns are declared as doubles: a missing value at inference time arrives as NaN,
    # which an integer schema would refuse. MLflow upcasts integers to doubles on the way in.
    sample = example[config.model_features].head(5)
    sample = sample.astype({c: "float64" for c in sample.columns if pd.api.types.is_integer_dtype(sample[c])})
    # The pyfunc serves predict_proba (below), so the signature describes its [p(0), p(1)] rows.
    signature = infer_signature(sample, pipeline.predict_proba(sample))
    info = mlflow.sklearn.log_model(
        pipeline,
        name="model",
        signature=signature,
        input_example=sample,
        pip_requirements=[f"{p}=={installed_version(p)}" for p in _MODEL_REQUIREMENTS],
        skops_trusted_types=list(FAMILIES[config.model.family].skops_trusted_types),
        pyfunc_predict_fn="predict_proba",
    )
    # The same model gets the same bytes, so retraining on unchanged data stores it once (artifacts.py).
    canonicalize_logged_model(mlflow.get_logged_model(info.model_id).artifact_location)
    return info


def register_version(settings: Settings, config: DatasetConfig, model_uri: str, run_id: str,
                     decision_threshold: float, tags: dict[str, str], description: str) -> RegisteredModel:
    """A new version of the dataset's registered model, with its tags and description set in one go."""
    tracking = client(settings)
    try:
        tracking.get_registered_model(config.registered_model_name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        tracking.create_registered_model(
            config.registered_model_name,
            tags={"dataset": config.name},
            description=f"Model of the `{config.name}` dataset ({config.model.family}). {config.description}".strip(),
        )
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    version = tracking.create_model_version(
        config.registered_model_name, model_uri, run_id=run_id,
        tags={k: str(v) for k, v in tags.items()}, description=description, model_id=model_id,
    )
    return RegisteredModel(name=config.registered_model_name, version=str(version.version), run_id=run_id,
                           decision_threshold=decision_threshold)


def load_logged(settings: Settings, model_uri: str) -> Pipeline:
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return mlflow.sklearn.load_model(model_uri)


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

    def score_records(self, records: Sequence[dict]) -> np.ndarray:
        """The same for request records (dicts of raw feature values): the sklearn serving path."""
        raw = self.config.request_features
        frame = pd.DataFrame.from_records(records, columns=raw)
        for column in raw:
            if self.config.columns[column].type in NUMERIC_TYPES and frame[column].dtype == object:
                frame[column] = frame[column].astype(float)  # a null in the batch: None -> NaN, as in training
        return self.score(frame)


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


def log_evaluation(settings: Settings, run_id: str, model_uri: str, metrics: dict[str, float],
                   files: list[Path], dataset: tuple[str, str] | None = None) -> None:
    """Attach holdout metrics (to the run and to its logged model) and plots to the run that trained it."""
    from mlflow.entities import Metric

    tracking = client(settings)
    now = int(time.time() * 1000)
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    name, digest = dataset or (None, None)
    tracking.log_batch(run_id, metrics=[
        Metric(f"test_{key}", float(value), now, 0, model_id=model_id, dataset_name=name, dataset_digest=digest)
        for key, value in metrics.items()])
    for path in files:
        tracking.log_artifact(run_id, str(path), artifact_path="evaluation")


def attach_to_version(settings: Settings, config: DatasetConfig, version: str, files: list[Path],
                      artifact_path: str) -> str | None:
    """Log report files (model card, drift report) as artifacts of the run that trained ``version``.

    The MLflow UI then shows them beside the model, and ``mlflow.artifacts.download_artifacts``
    returns them. Logged under ``artifact_path``, a file of the same name is replaced; on a
    local store each file's bytes are stored once (artifacts.py): a card rendered again
    unchanged costs nothing. Returns the run id, or None when the version is not registered.
    """
    tracking = client(settings)
    try:
        run_id = tracking.get_model_version(config.registered_model_name, version).run_id
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        return None
    for path in files:
        tracking.log_artifact(run_id, str(path), artifact_path=artifact_path)
    folder = local_artifact_folder(tracking.get_run(run_id).info.artifact_uri, artifact_path)
    if folder is not None:
        deduplicate(settings, folder)
    return run_id


def record_inference_path(settings: Settings, config: DatasetConfig, version: str, path) -> None:
    """Write how the version is scored (``InferencePath.tags``) on it, when that changed; never raises."""
    try:
        tracking = client(settings)
        current = tracking.get_model_version(config.registered_model_name, version).tags
        for key, value in path.tags().items():
            if current.get(key) != value:
                tracking.set_model_version_tag(config.registered_model_name, version, key, value)
    except MlflowException:
        pass  # the registry is unreachable: the service's log and GET /models still say it
