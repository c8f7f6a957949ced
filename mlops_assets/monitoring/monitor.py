"""One monitoring run: any reference window against any current window of a dataset.

Data drift of the model features, drift of the model's score, drift of the target when
both windows carry labels, realized performance where labels exist, and the CBPE estimate
of the current window's performance from its scores alone. The result is plain data;
:mod:`mlops_assets.monitoring.html_report` renders it for a person.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.features.training_set import binary_target
from mlops_assets.monitoring.drift import DriftReport, compare_windows
from mlops_assets.monitoring.performance import (
    EstimatedPerformance,
    PerformanceInputError,
    RealizedPerformance,
    estimate_performance,
    realized_performance,
)
from mlops_assets.monitoring.rules import SCORE_COLUMN, drift_rules, monitored_columns
from mlops_assets.monitoring.windows import Window

Scorer = Callable[[pd.DataFrame], np.ndarray]


@dataclass(frozen=True)
class ModelUnderWatch:
    """The model whose scores are monitored: how to score rows and where it decides."""

    label: str  # e.g. "churn_model v3"
    score: Scorer
    threshold: float


@dataclass(frozen=True)
class MonitoringReport:
    dataset: str
    model: str | None
    created: str  # UTC, ISO 8601
    drift: DriftReport
    reference_performance: RealizedPerformance | None
    current_performance: RealizedPerformance | None
    estimated_performance: EstimatedPerformance | None
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return self.drift.verdict


def labels_of(frame: pd.DataFrame, config: DatasetConfig) -> np.ndarray:
    """The target as 0/1 floats (as training reads it), NaN where a row has no label (yet)."""
    known = frame[config.target].notna().to_numpy()
    out = np.full(len(frame), np.nan)
    out[known] = binary_target(frame[known], config).to_numpy(dtype=float)
    return out


def _scored(window: Window, model: ModelUnderWatch, features: list[str]) -> Window:
    """The window with the model's score as one more column."""
    frame = window.frame.copy()
    frame[SCORE_COLUMN] = np.asarray(model.score(frame[features]), dtype=float) if len(frame) else np.zeros(0)
    return Window(frame, window.description, window.time_column)


def monitor(reference: Window, current: Window, config: DatasetConfig, model: ModelUnderWatch | None = None, *,
            bootstrap_replicates: int = 1000, seed: int = 0) -> MonitoringReport:
    """Drift, performance and the performance estimate of ``current`` against ``reference``."""
    rules = drift_rules(config)
    notes: list[str] = []
    if model is not None:
        reference = _scored(reference, model, config.model_features)
        current = _scored(current, model, config.model_features)
    labelled = {name: config.target in w.frame and w.frame[config.target].notna().any()
                for name, w in (("reference", reference), ("current", current))}
    columns = monitored_columns(config, score=model is not None, target=all(labelled.values()))
    if not all(labelled.values()):
        without = " and ".join(name for name, has in labelled.items() if not has)
        notes.append(f"no labels in the {without} window: target drift and realized performance are not computed")
    drift = compare_windows(reference, current, columns, rules)

    reference_performance = current_performance = estimated = None
    if model is not None:
        cost = config.drift.cost_matrix
        ref_scores = reference.frame[SCORE_COLUMN].to_numpy(dtype=float)
        cur_scores = current.frame[SCORE_COLUMN].to_numpy(dtype=float)
        ref_labels = labels_of(reference.frame, config) if labelled["reference"] else None
        cur_labels = labels_of(current.frame, config) if labelled["current"] else None
        for label, labels, scores in (("reference", ref_labels, ref_scores), ("current", cur_labels, cur_scores)):
            if labels is None:
                continue
            try:
                result = realized_performance(labels, scores, model.threshold, cost,
                                              replicates=bootstrap_replicates, seed=seed)
            except PerformanceInputError as exc:
                notes.append(f"realized performance of the {label} window not computed: {exc}")
                continue
            if label == "reference":
                reference_performance = result
            else:
                current_performance = result
        if ref_labels is None:
            notes.append("the performance estimate needs a labelled reference to calibrate the scores on")
        elif len(current.frame):
            try:
                estimated = estimate_performance(ref_labels, ref_scores, cur_scores, model.threshold, cost, seed=seed)
            except PerformanceInputError as exc:
                notes.append(f"performance estimate not computed: {exc}")
    return MonitoringReport(
        dataset=config.name,
        model=model.label if model else None,
        created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        drift=drift,
        reference_performance=reference_performance,
        current_performance=current_performance,
        estimated_performance=estimated,
        notes=notes,
    )
