"""A throw-away model version for a benchmark, trained and registered the way the pipeline does it.

The model and evaluation assets' own functions, called as one step: fit, log the run,
evaluate on the test split (which verifies the compiled form and logs the records the
service verifies it on again), register, then point an alias at the version. A benchmark
that served a version registered any other way would measure another scoring path.
"""

from __future__ import annotations

import mlflow
import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.settings import Settings
from mlops_assets.training.evaluation import evaluate_on_test
from mlops_assets.training.registry import ensure_experiment, set_alias
from mlops_assets.training.train import fit_model, lineage_tags, log_training_run


def register_trained(settings: Settings, config: DatasetConfig, rows: pd.DataFrame, alias: str) -> str:
    """Train ``config``'s model on ``rows`` (a time-split training set), register it under ``alias``; the version."""
    fitted = fit_model(rows, config)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    with mlflow.start_run(experiment_id=ensure_experiment(settings), run_name=f"benchmark-{alias}"):
        logged = log_training_run(settings, fitted, config, rows, lineage_tags(rows, config, fitted))
    evaluation = evaluate_on_test(settings, config, rows, logged)
    set_alias(settings, config, alias, evaluation.model.version)
    return evaluation.model.version
