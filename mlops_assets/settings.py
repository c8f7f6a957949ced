"""Where a run writes and which services it talks to: every environment variable, in one place.

Everything a local run writes lives under ``MLOPS_HOME`` (default ``.mlops/`` in the
working directory), so deleting that folder resets the platform. Every process that
takes part (Dagster, the BentoML service, the CLI, tests) derives the same MLflow
URI and Dagster storage from it: MLflow left to itself follows the current directory.

| variable | default | what it sets |
| --- | --- | --- |
| ``MLOPS_HOME`` | ``./.mlops`` | root of all local state |
| ``MLOPS_CONFIGS`` | ``<project>/configs`` | a dataset config file or a folder of them |
| ``MLFLOW_TRACKING_URI`` | ``sqlite:///$MLOPS_HOME/mlflow/mlflow.db`` | MLflow tracking and registry |
| ``MLOPS_OPTUNA_STORAGE`` | ``sqlite:///$MLOPS_HOME/optuna/optuna.db`` | Optuna studies (its own database, never MLflow's) |
| ``MLOPS_MLFLOW_EXPERIMENT`` | ``mlops-assets`` | experiment that holds the Dagster runs |
| ``MLOPS_MLFLOW_UI`` | ``http://127.0.0.1:5000`` | base of the run links shown in Dagster |
| ``DAGSTER_HOME`` | the project root | folder holding the ``dagster.yaml`` to use |
| ``MLOPS_DAGSTER_STORAGE`` | always ``$MLOPS_HOME/dagster`` | plumbing: the storage the root ``dagster.yaml`` names (``.env`` sets it for plain ``dagster dev``) |
| ``BENTOML_HOME`` | ``$MLOPS_HOME/bentoml`` | BentoML's own store (instead of ``~/bentoml``) |
| ``MLOPS_ONLINE_STORE`` | SQLite ``$MLOPS_HOME/feature_store/online.db`` | online feature store: ``redis://host:port/db[?prefix=...]`` or ``sqlite:///path`` |
| ``MLOPS_ONLINE_PREFIX`` | ``mlops:`` | key prefix in a shared Redis (the URL's ``?prefix=`` wins) |
| ``MLOPS_APPROVALS_DB`` | ``sqlite:///$MLOPS_HOME/governance/approvals.db`` | approval ledger (read in ``governance/ledger.py``) |
| ``MLOPS_PREDICTION_LOG_URL`` | ``sqlite:///$MLOPS_HOME/serving/prediction_log.db`` | the prediction log and experiment state (SQLAlchemy URL; ``postgresql://...`` in production) |
| ``MLOPS_ADMIN_TOKEN`` | unset (admin endpoints refuse everyone) | bearer token of the service's admin endpoints |
| ``MLOPS_SERVE_WORKERS`` | ``1`` | service worker processes (``mlops serve --workers`` sets it) |
| ``MLOPS_MAX_BODY_BYTES`` | ``1048576`` | larger request bodies are answered 413 |
| ``MLOPS_RELOAD_INTERVAL_S`` | ``10`` | how often each worker asks the registry whether an alias moved |
| ``MLOPS_LOG_FLUSH_INTERVAL_S`` | ``0.2`` | how long a prediction waits, at most, to be written to the log |
| ``MLOPS_COMPILED_SCORING`` | ``1`` | ``0`` serves every version through its sklearn pipeline instead of its verified compiled form |
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: Every variable that points a process at a platform home (see the table above).
HOME_VARIABLES = ("MLOPS_HOME", "MLOPS_CONFIGS", "MLFLOW_TRACKING_URI", "MLOPS_MLFLOW_EXPERIMENT", "MLOPS_MLFLOW_UI",
                  "DAGSTER_HOME", "MLOPS_DAGSTER_STORAGE", "BENTOML_HOME", "MLOPS_DAGSTER_PG_URL",
                  "MLOPS_OPTUNA_STORAGE", "MLOPS_APPROVALS_DB", "MLOPS_PREDICTION_LOG_URL")


@dataclass(frozen=True)
class Settings:
    """Resolved locations for one platform home."""

    home: Path
    configs: Path
    mlflow_tracking_uri: str
    optuna_storage: str
    mlflow_experiment: str
    mlflow_ui: str
    dagster_home: Path
    prediction_log_url: str = ""

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("MLOPS_HOME", ".mlops")).expanduser().resolve()
        configs = Path(os.environ.get("MLOPS_CONFIGS", PROJECT_ROOT / "configs")).expanduser().resolve()
        tracking = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
        return cls(
            home=home,
            configs=configs,
            mlflow_tracking_uri=tracking,
            optuna_storage=os.environ.get("MLOPS_OPTUNA_STORAGE") or f"sqlite:///{home / 'optuna' / 'optuna.db'}",
            mlflow_experiment=os.environ.get("MLOPS_MLFLOW_EXPERIMENT", "mlops-assets"),
            mlflow_ui=os.environ.get("MLOPS_MLFLOW_UI", "http://127.0.0.1:5000").rstrip("/"),
            dagster_home=Path(os.environ.get("DAGSTER_HOME", PROJECT_ROOT)).expanduser().resolve(),
            prediction_log_url=os.environ.get("MLOPS_PREDICTION_LOG_URL")
            or f"sqlite:///{home / 'serving' / 'prediction_log.db'}",
        )

    @property
    def dagster_storage(self) -> Path:
        return self.home / "dagster"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlflow" / "artifacts"

    @property
    def asset_storage(self) -> Path:
        """Where the IO manager keeps asset values between steps and runs."""
        return self.home / "assets"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    def dataset_reports(self, dataset: str) -> Path:
        path = self.reports / dataset
        path.mkdir(parents=True, exist_ok=True)
        return path

    def environ(self) -> dict[str, str]:
        """Variables that make a child process (Dagster, BentoML) see this same home."""
        return {
            "MLOPS_HOME": str(self.home),
            "MLOPS_CONFIGS": str(self.configs),
            "MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            "MLOPS_OPTUNA_STORAGE": self.optuna_storage,
            "MLOPS_MLFLOW_EXPERIMENT": self.mlflow_experiment,
            "MLOPS_MLFLOW_UI": self.mlflow_ui,
            "DAGSTER_HOME": str(self.dagster_home),
            "MLOPS_DAGSTER_STORAGE": str(self.dagster_storage),
            "BENTOML_HOME": os.environ.get("BENTOML_HOME", str(self.home / "bentoml")),
            "MLOPS_PREDICTION_LOG_URL": self.prediction_log_url,
        }

    def export(self) -> None:
        """Make this process and every child it starts agree on the home."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.dagster_storage.mkdir(parents=True, exist_ok=True)
        os.environ.update(self.environ())


@contextmanager
def use_home(home: Path, configs: Path, **extra: str) -> Iterator[Settings]:
    """Point this process (and the children it starts) at another home for the block, then restore.

    For tests and benchmarks that run several homes in one process; ``extra`` sets more
    variables, e.g. ``DAGSTER_HOME`` for the PostgreSQL instance.
    """
    saved = {k: os.environ.get(k) for k in HOME_VARIABLES}
    for key in HOME_VARIABLES:
        os.environ.pop(key, None)
    os.environ.update({"MLOPS_HOME": str(home), "MLOPS_CONFIGS": str(configs), **extra})
    try:
        settings = Settings.from_env()
        settings.export()
        yield settings
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
