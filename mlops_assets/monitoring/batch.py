"""The windows the graph's ``drift_report`` compares, and the run that compares them.

Reference: the held-out rows of the training set (validation and test splits). The model
never trained on them, so its scores there are honest (scores on training rows are
overconfident and would read as score drift), and they carry labels to calibrate the
performance estimate on. Current: for a generated dataset, a fresh batch from the period
after the training data (with the drift the config asks for); for a file dataset, which has
no future to draw from, the test split against the validation split.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.data.sources import generate_current_batch
from mlops_assets.features.engineering import build_feature_table
from mlops_assets.features.training_set import split_frame
from mlops_assets.monitoring.html_report import write_report
from mlops_assets.monitoring.monitor import ModelUnderWatch, MonitoringReport, monitor
from mlops_assets.monitoring.windows import Window


def dataset_windows(config: DatasetConfig, training_set: pd.DataFrame) -> tuple[Window, Window]:
    """(reference, current) for the dataset as the graph has it (see the module doc)."""
    time = config.time_column
    batch = generate_current_batch(config)
    if batch is None:
        return (Window(split_frame(training_set, "validation"), "validation split (held out)", time),
                Window(split_frame(training_set, "test"), "test split: the newest rows of the source", time))
    held_out = training_set[training_set["split"].isin(["validation", "test"])].drop(columns="split")
    drift = config.drift
    return (Window(held_out, "validation and test splits (held out from training)", time),
            Window(build_feature_table(batch, config),
                   f"{drift.current_rows:,} generated rows after the training period "
                   f"(covariate_drift={drift.covariate_drift:g}, concept_drift={drift.concept_drift:g})", time))


def monitor_current_batch(config: DatasetConfig, training_set: pd.DataFrame, model: ModelUnderWatch | None,
                          reports: Path, run_id: str | None = None) -> tuple[MonitoringReport, Path]:
    """Compare the dataset's current batch with its reference and write the HTML report under ``reports``."""
    reference, current = dataset_windows(config, training_set)
    report = monitor(reference, current, config, model)
    return report, write_report(report, reports, run_id)
