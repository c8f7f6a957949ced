"""Drift of a dataset's current batch against the rows its model was trained on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.data.sources import generate_current_batch
from mlops_assets.features.engineering import build_feature_table
from mlops_assets.features.training_set import split_frame
from mlops_assets.monitoring.drift import DriftResult, compute_drift


@dataclass(frozen=True)
class TrainingDrift:
    result: DriftResult
    reference_rows: int
    current_rows: int
    current_origin: str


def current_features(config: DatasetConfig, training_set: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The batch to compare with the training rows, and where it came from."""
    batch = generate_current_batch(config)
    if batch is None:
        return split_frame(training_set, "test"), "the newest (test) rows of the source"
    drift = config.drift
    return (
        build_feature_table(batch, config),
        f"{drift.current_rows} generated rows after the training period "
        f"(covariate_drift={drift.covariate_drift}, concept_drift={drift.concept_drift})",
    )


def drift_against_training(config: DatasetConfig, training_set: pd.DataFrame, html_path: Path) -> TrainingDrift:
    """Model features of the current batch vs the train split, by the methods the config names."""
    reference = split_frame(training_set, "train")
    current, origin = current_features(config, training_set)
    result = compute_drift(
        reference,
        current,
        numeric_columns=config.numeric_features,
        categorical_columns=config.categorical_features,
        numeric_method=config.drift.numeric_method,
        categorical_method=config.drift.categorical_method,
        threshold=config.drift.threshold,
        html_path=html_path,
    )
    return TrainingDrift(result, len(reference), len(current), origin)
