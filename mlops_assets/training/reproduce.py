"""Rebuild a model from its run's records and say, line by line, whether it came out the same.

A run records its dataset config, tuned parameters and seeds (to rebuild), and the
environment, the training data hash, its metrics and a hash of its test-set predictions
(to compare). Predictions, not model files, identify a model: skops writes different
bytes for the same model on every save.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException

from mlops_assets.config import ConfigError, DatasetConfig
from mlops_assets.data.snapshots import frame_fingerprint
from mlops_assets.errors import PlatformError
from mlops_assets.features.training_set import binary_target, split_frame
from mlops_assets.settings import Settings
from mlops_assets.training.environment import ENVIRONMENT_ARTIFACT, Environment, capture_environment
from mlops_assets.training.evaluation import classification_metrics
from mlops_assets.training.registry import client
from mlops_assets.training.train import CONFIG_ARTIFACT_FOLDER, fit_model, predictions_hash, test_scores


class RunNotFoundError(PlatformError, LookupError):
    """A run id that the tracking store does not know, or a run that is not a model run."""


@dataclass(frozen=True)
class Check:
    name: str
    matches: bool
    detail: str

    def line(self) -> str:
        return f"{self.name:<20} {'match' if self.matches else 'DIFFERS'}  {self.detail}"


@dataclass(frozen=True)
class Reproduction:
    run_id: str
    checks: list[Check]

    @property
    def exact(self) -> bool:
        return all(check.matches for check in self.checks)

    @property
    def reasons(self) -> list[str]:
        """What differs before the model itself: the likely causes of a different model."""
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.matches
                and c.name in ("environment", "code", "training data", "dataset config")]

    def report(self) -> str:
        lines = [f"reproducing run {self.run_id}"] + [f"  {c.line()}" for c in self.checks]
        if self.exact:
            lines.append("exact reproduction: same environment, data, metrics and test-set predictions")
        else:
            causes = self.reasons
            lines.append("NOT an exact reproduction" + (f"; because {'; '.join(causes)}" if causes else ""))
        return "\n".join(lines)


def model_run(settings: Settings, run_id: str):
    """The run, or a one-line error naming what is wrong with the id."""
    try:
        run = client(settings).get_run(run_id)
    except MlflowException as exc:
        raise RunNotFoundError(f"run {run_id!r} does not exist in {settings.mlflow_tracking_uri}") from exc
    if run.data.tags.get("run_kind") != "model":
        kind = run.data.tags.get("run_kind", "not made by mlops-assets")
        raise RunNotFoundError(f"run {run_id} is a {kind} run, not a model run: pass the run of a trained model "
                               "(`mlops runs search \"tags.run_kind = 'model'\"` lists them)")
    return run


def logged_config(settings: Settings, run, current: DatasetConfig) -> tuple[DatasetConfig, bool]:
    """The config the run was trained with (its logged file), and whether the current file is the same."""
    tracking = client(settings)
    with tempfile.TemporaryDirectory() as folder:
        files = tracking.list_artifacts(run.info.run_id, CONFIG_ARTIFACT_FOLDER)
        if not files:
            return current, False
        text = Path(tracking.download_artifacts(run.info.run_id, files[0].path, folder)).read_text()
    same = current.path is not None and Path(current.path).read_text() == text
    try:  # the current file's location, so a relative source path still resolves
        return DatasetConfig(**yaml.safe_load(text), path=current.path), same
    except Exception as exc:  # noqa: BLE001 - a config that no longer parses is a finding, not a crash
        raise ConfigError(f"run {run.info.run_id}: its logged dataset config no longer loads: {exc}") from exc


def reproduce_run(settings: Settings, run_id: str, config: DatasetConfig, training_set: pd.DataFrame,
                  environment: Environment | None = None) -> Reproduction:
    """Retrain the run's model on ``training_set`` with its recorded config, parameters and seeds, then compare."""
    run = model_run(settings, run_id)
    tags, metrics = run.data.tags, run.data.metrics
    if tags.get("dataset") != config.name:
        raise RunNotFoundError(f"run {run_id} trained dataset {tags.get('dataset')!r}, not {config.name!r}")
    checks: list[Check] = []

    recorded_env = _recorded_environment(settings, run_id)
    environment = environment or capture_environment()
    if recorded_env is None:
        checks.append(Check("environment", False, "the run recorded no environment"))
    else:
        package_diffs = recorded_env.package_differences(environment)
        code_diffs = recorded_env.code_differences(environment)
        checks.append(Check("environment", not package_diffs, "; ".join(package_diffs) or
                            f"Python {environment.python}, {len(environment.packages)} packages "
                            f"(hash {environment.packages_hash})"))
        checks.append(Check("code", not code_diffs, "; ".join(code_diffs) or
                            f"commit {environment.git_commit}"
                            + (" with the same uncommitted changes" if environment.git_dirty else "")))

    trained_config, same_config = logged_config(settings, run, config)
    checks.append(Check("dataset config", same_config, "the logged config file" +
                        (" equals the current one" if same_config else " differs from the current one; rebuilt with the logged one")))

    snapshot = frame_fingerprint(training_set)
    checks.append(Check("training data", snapshot == tags.get("data_snapshot"),
                        f"hash {snapshot}" if snapshot == tags.get("data_snapshot")
                        else f"recorded {tags.get('data_snapshot')}, now {snapshot}"))

    params = json.loads(tags.get("tuned_params", "{}"))
    fitted = fit_model(training_set, trained_config, params)
    differing = [k for k, v in fitted.validation_metrics.items()
                 if f"validation_{k}" in metrics and not _same(metrics[f"validation_{k}"], v)]
    checks.append(Check("validation metrics", not differing,
                        "all equal" if not differing else ", ".join(
                            f"{k} {metrics[f'validation_{k}']:.6g} vs {fitted.validation_metrics[k]:.6g}" for k in differing)))

    scores = test_scores(fitted.pipeline, training_set, trained_config)
    y_test = binary_target(split_frame(training_set, "test"), trained_config).to_numpy()
    test_metrics = classification_metrics(y_test, scores, fitted.threshold)
    recorded_test = {k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")}
    differing = [k for k, v in recorded_test.items() if k in test_metrics and not _same(v, test_metrics[k])]
    checks.append(Check("test metrics", bool(recorded_test) and not differing,
                        "the run was never evaluated" if not recorded_test else "all equal" if not differing else
                        ", ".join(f"{k} {recorded_test[k]:.6g} vs {test_metrics[k]:.6g}" for k in differing)))

    digest = predictions_hash(scores)
    checks.append(Check("test predictions", digest == tags.get("predictions_hash"),
                        f"hash {digest}" if digest == tags.get("predictions_hash")
                        else f"recorded {tags.get('predictions_hash')}, now {digest}"))
    return Reproduction(run_id, checks)


def _recorded_environment(settings: Settings, run_id: str) -> Environment | None:
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client(settings).download_artifacts(run_id, ENVIRONMENT_ARTIFACT, folder)
        except (MlflowException, OSError):
            return None
        return Environment.from_json(Path(path).read_text())


def _same(recorded: float, now: float) -> bool:
    """Equal as MLflow stored them (a double round-trips exactly); NaN equals NaN."""
    return bool(np.isnan(recorded) and np.isnan(now)) or float(recorded) == float(now)
