"""Registered model versions for the serving tests, made in seconds without running the Dagster graph.

The serving tests move aliases and write the prediction log, so they need a registry
of their own (the session's ``materialized_churn`` home is shared and read-only). The
versions are real: the config's pipeline fitted on the generated rows, logged and
registered through the platform's own registry code.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.data.sources import load_source
from mlops_assets.features.engineering import build_feature_table
from mlops_assets.features.training_set import binary_target, split_frame, time_split
from mlops_assets.settings import Settings
from mlops_assets.training.model_families import build_pipeline
from mlops_assets.training.registry import ensure_experiment, log_and_register

ADMIN_TOKEN = "test-admin-token"


def training_set(config: DatasetConfig) -> pd.DataFrame:
    return time_split(build_feature_table(load_source(config), config), config)


def register_version(settings: Settings, config: DatasetConfig, rows: pd.DataFrame, params: dict | None = None,
                     unseen_region: str | None = None) -> str:
    """Fit the config's pipeline on the train split and register it; returns the new version.

    ``unseen_region``: train without that region and with an encoder that raises on unknown
    categories, as a version trained before a category existed would: it fails on such rows.
    """
    model = config.model.model_copy(update={"params": {**config.model.params, **(params or {})}})
    fitted_config = config.model_copy(update={"model": model})
    train = split_frame(rows, "train")
    pipeline = build_pipeline(fitted_config)
    if unseen_region is not None:
        train = train[train["region"] != unseen_region]
        pipeline.set_params(prepare__categorical__handle_unknown="error", prepare__categorical__unknown_value=None)
    pipeline.fit(train[config.model_features], binary_target(train, config))
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    with mlflow.start_run(experiment_id=ensure_experiment(settings), run_name=f"{config.name}-serving-test"):
        registered = log_and_register(settings, pipeline, fitted_config, train,
                                      {"dataset": config.name, "decision_threshold": "0.3"})
    return registered.version


@contextmanager
def environment(**variables: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def churn_record(i: int) -> dict:
    """A valid churn record that varies with ``i`` (so the two variants' scores differ)."""
    return {"tenure_months": i % 100, "monthly_charges": 20.0 + (i * 7) % 300, "total_charges": 100.0 + i * 13 % 5000,
            "data_usage_gb": float(i % 40), "avg_session_minutes": 5.0 + i % 30, "logins_last_30d": i % 25,
            "support_calls_90d": i % 6, "late_payments_12m": i % 4, "has_autopay": bool(i % 2),
            "contract_type": ["month_to_month", "one_year", "two_year"][i % 3],
            "payment_method": ["card", "bank_transfer", "electronic_check", "mailed_check"][i % 4],
            "region": ["north", "south", "east"][i % 3]}


@dataclass
class LoadResult:
    answers: list[dict]
    failures: list[str]


def steady_load(send: Callable[[httpx.Client, int], httpx.Response], clients: int, stop: threading.Event,
                max_requests: int = 2000) -> tuple[list[threading.Thread], LoadResult]:
    """Threads sending requests back to back until ``stop`` (or ``max_requests`` in all): a bounded load."""
    result = LoadResult([], [])
    counter = iter(range(max_requests))
    lock = threading.Lock()

    def run() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                try:
                    response = send(client, i)
                except httpx.HTTPError as exc:
                    with lock:
                        result.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with lock:
                    if response.status_code == 200:
                        result.answers.append(response.json())
                    else:
                        result.failures.append(f"{response.status_code}: {response.text[:200]}")
                time.sleep(0.002)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    return threads, result


EXPERIMENT = {"id": "churn-ab-test", "mode": "ab", "split": "70/30", "primary_metric": "brier",
              "covariate": "monthly_charges", "min_units": 20, "guardrails": {"max_error_rate": 0.05}}


@dataclass
class ServingHome:
    """A registry of the serving tests' own: churn versions 1-3 and a loans version, with their aliases."""

    home: Path
    configs_dir: Path
    versions: dict[str, str]

    @contextmanager
    def entered(self, **extra: str) -> Iterator[tuple[Settings, dict[str, DatasetConfig]]]:
        """This home in the environment (``extra``: more variables, e.g. MLOPS_PREDICTION_LOG_URL)."""
        from mlops_assets.config import load_dataset_configs
        from mlops_assets.settings import HOME_VARIABLES, use_home

        home_extra = {k: v for k, v in extra.items() if k in HOME_VARIABLES}
        other = {k: v for k, v in extra.items() if k not in HOME_VARIABLES}
        with environment(**other), use_home(self.home, self.configs_dir, **home_extra) as settings:
            yield settings, {c.name: c for c in load_dataset_configs(settings.configs)}


def make_serving_home(tmp_path_factory, churn_config_dir: Path) -> Iterator[ServingHome]:
    """Churn (declared with an A/B experiment at 70/30) and loans (a free-text column), versions registered."""
    import shutil

    import yaml

    from mlops_assets.config import load_dataset_configs
    from mlops_assets.settings import use_home
    from mlops_assets.training.registry import set_alias
    from tests.datasets import make_loans, write_loans

    configs_dir = tmp_path_factory.mktemp("serving-configs")
    churn = yaml.safe_load((churn_config_dir / "churn.yaml").read_text())
    churn["experiment"] = EXPERIMENT
    (configs_dir / "churn.yaml").write_text(yaml.safe_dump(churn))
    write_loans(configs_dir, make_loans(600))
    home = tmp_path_factory.mktemp("serving-home")
    with use_home(home, configs_dir) as settings:
        configs = {c.name: c for c in load_dataset_configs(settings.configs)}
        rows = training_set(configs["churn"])
        versions = {
            "champion": register_version(settings, configs["churn"], rows),
            "challenger": register_version(settings, configs["churn"], rows, {"learning_rate": 0.2, "max_leaf_nodes": 8}),
            "faulty": register_version(settings, configs["churn"], rows, unseen_region="west"),
        }
        set_alias(settings, configs["churn"], "champion", versions["champion"])
        set_alias(settings, configs["churn"], "challenger", versions["challenger"])
        versions["loans"] = register_version(settings, configs["loans"], training_set(configs["loans"]))
        set_alias(settings, configs["loans"], "champion", versions["loans"])
    yield ServingHome(home, configs_dir, versions)
    shutil.rmtree(home, ignore_errors=True)
