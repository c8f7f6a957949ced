"""How well the model does on a window: realized when labels exist, estimated before they arrive.

**Realized** (labels known): ROC AUC, PR AUC (average precision), log loss, expected
calibration error with its reliability curve, accuracy at the decision threshold, and the
expected cost per decision from the config's cost matrix, each with a percentile bootstrap
interval (Efron & Tibshirani 1993). The bootstrap is vectorised: resampling counts are drawn
once per replicate and every metric is computed from them on scores sorted once, so 1,000
replicates over 100,000 rows take seconds, not minutes.

**Estimated** (no labels yet): confidence-based performance estimation (CBPE, as NannyML
does). The model's scores are calibrated on the labelled reference window (isotonic
regression); in the current window each row then counts as a positive with weight p and as
a negative with weight 1 - p, which gives the expected ROC AUC, accuracy and cost. The
interval comes from simulating labels from the calibrated probabilities (and refitting the
calibration on bootstrap resamples of the reference): the range the realized value should
fall in **if the relation between inputs and outcome is unchanged**. Covariate drift is
fine (that is what it is for); concept drift, a change in P(outcome | inputs), is invisible
to it by construction: the estimate stays where it was while the realized value falls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata
from sklearn.isotonic import IsotonicRegression

from mlops_assets.config import CostMatrix
from mlops_assets.errors import PlatformError

ECE_BINS = 10  # equal-width bins of the predicted probability (Naeini et al. 2015; Guo et al. 2017)
LOG_LOSS_EPS = 1e-15
_MAX_CELLS = 4_000_000  # replicates x rows held in memory at once
_MAX_RESAMPLED_ROWS = 200_000_000  # beyond this, fewer replicates: at a million rows the intervals are tiny anyway


class PerformanceInputError(PlatformError, ValueError):
    """Labels or scores that cannot be scored (wrong length, not 0/1, a single class, no finite score)."""


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.4g} [{self.low:.4g}, {self.high:.4g}]"


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    rows: int
    mean_score: float
    positive_rate: float


@dataclass(frozen=True)
class RealizedPerformance:
    rows: int
    positives: int
    threshold: float
    metrics: dict[str, Interval]  # roc_auc, pr_auc, log_loss, ece, accuracy, expected_cost
    reliability: list[ReliabilityBin]
    level: float = 0.95
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EstimatedPerformance:
    rows: int
    threshold: float
    metrics: dict[str, Interval]  # roc_auc, accuracy, expected_cost
    calibration_rows: int
    level: float = 0.95
    notes: list[str] = field(default_factory=list)


def finite_scores(scores: np.ndarray) -> tuple[np.ndarray, int]:
    """Mask of usable scores (finite, within [0, 1]) and how many were not."""
    scores = np.asarray(scores, dtype=float)
    ok = np.isfinite(scores) & (scores >= 0) & (scores <= 1)
    return ok, int((~ok).sum())


def _validated(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    labels = np.asarray(labels, dtype=float)
    scores = np.asarray(scores, dtype=float)
    if labels.shape != scores.shape:
        raise PerformanceInputError(f"{len(labels)} labels but {len(scores)} scores")
    notes = []
    ok, bad = finite_scores(scores)
    known = ~np.isnan(labels)
    if bad:
        notes.append(f"{bad:,} scores were NaN, infinite or outside [0, 1] and were left out")
    if (~known).sum():
        notes.append(f"{int((~known).sum()):,} rows have no label yet and were left out")
    keep = ok & known
    labels, scores = labels[keep], scores[keep]
    if not np.isin(labels, (0.0, 1.0)).all():
        raise PerformanceInputError(f"labels must be 0 or 1, found {sorted(set(np.unique(labels)) - {0.0, 1.0})[:5]}")
    if len(labels) == 0:
        raise PerformanceInputError("no labelled row with a usable score")
    if labels.min() == labels.max():
        raise PerformanceInputError(f"all {len(labels):,} labelled rows are of one class ({int(labels[0])}): "
                                    "ROC AUC and PR AUC need both")
    return labels.astype(np.int8), scores, notes


def _row_costs(labels: np.ndarray, decisions: np.ndarray, cost: CostMatrix) -> np.ndarray:
    return np.where(decisions,
                    np.where(labels == 1, cost.true_positive, cost.false_positive),
                    np.where(labels == 1, cost.false_negative, cost.true_negative)).astype(float)


class _SortedScores:
    """Scores sorted once and grouped by distinct value, so weighted ROC/PR AUC are a few cumulative sums."""

    def __init__(self, scores: np.ndarray):
        self.order = np.argsort(scores, kind="stable")
        ordered = scores[self.order]
        self.starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])

    def grouped(self, weights: np.ndarray) -> np.ndarray:
        """Per-replicate sums of ``weights`` (replicates x rows) over each distinct score, ascending."""
        return np.add.reduceat(weights[:, self.order], self.starts, axis=1)

    def roc_auc(self, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
        pos, neg = self.grouped(positive), self.grouped(negative)
        below = np.cumsum(neg, axis=1) - neg
        pairs = pos.sum(axis=1) * neg.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (pos * (below + 0.5 * neg)).sum(axis=1) / pairs

    def average_precision(self, positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
        """scikit-learn's definition: sum over thresholds (descending) of recall gained x precision."""
        pos, neg = self.grouped(positive)[:, ::-1], self.grouped(negative)[:, ::-1]
        tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
            return (pos * precision).sum(axis=1) / pos.sum(axis=1)


def _bins(scores: np.ndarray) -> np.ndarray:
    return np.minimum((scores * ECE_BINS).astype(int), ECE_BINS - 1)


def reliability_curve(labels: np.ndarray, scores: np.ndarray) -> list[ReliabilityBin]:
    bins = _bins(scores)
    out = []
    for b in range(ECE_BINS):
        inside = bins == b
        if inside.any():
            out.append(ReliabilityBin(b / ECE_BINS, (b + 1) / ECE_BINS, int(inside.sum()),
                                      float(scores[inside].mean()), float(labels[inside].mean())))
    return out


def _metrics_for_weights(weights: np.ndarray, labels: np.ndarray, scores: np.ndarray, sorted_scores: _SortedScores,
                         row_log_loss: np.ndarray, correct: np.ndarray, row_cost: np.ndarray,
                         bin_onehot: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric for each replicate's resampling counts (replicates x rows)."""
    total = weights.sum(axis=1)
    positive = weights * labels
    negative = weights - positive
    # ECE = sum over bins of (rows in bin / n) * |positive rate - mean score| = sum of |sum(y - p)| / n
    per_bin_gap = (weights * (labels - scores)) @ bin_onehot
    return {
        "roc_auc": sorted_scores.roc_auc(positive, negative),
        "pr_auc": sorted_scores.average_precision(positive, negative),
        "log_loss": weights @ row_log_loss / total,
        "ece": np.abs(per_bin_gap).sum(axis=1) / total,
        "accuracy": weights @ correct / total,
        "expected_cost": weights @ row_cost / total,
    }


def realized_performance(labels: np.ndarray, scores: np.ndarray, threshold: float, cost: CostMatrix, *,
                         replicates: int = 1000, level: float = 0.95, seed: int = 0) -> RealizedPerformance:
    """Metrics on labelled rows, each with a percentile bootstrap interval (see the module doc)."""
    labels, scores, notes = _validated(labels, scores)
    n = len(labels)
    replicates = max(1, min(replicates, max(200, _MAX_RESAMPLED_ROWS // n)))
    decisions = scores >= threshold
    clipped = np.clip(scores, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    inputs = dict(
        labels=labels.astype(float), scores=scores, sorted_scores=_SortedScores(scores),
        row_log_loss=-(labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)),
        correct=(decisions == (labels == 1)).astype(float), row_cost=_row_costs(labels, decisions, cost),
        bin_onehot=np.eye(ECE_BINS)[_bins(scores)],
    )
    point = {k: float(v[0]) for k, v in _metrics_for_weights(np.ones((1, n)), **inputs).items()}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {k: [] for k in point}
    chunk = max(1, _MAX_CELLS // n)
    for start in range(0, replicates, chunk):
        size = min(chunk, replicates - start)
        picks = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
        counts = np.bincount(picks.ravel(), minlength=size * n).reshape(size, n).astype(float)
        for k, v in _metrics_for_weights(counts, **inputs).items():
            draws[k].append(v)
    tail = (1 - level) / 2 * 100
    metrics = {}
    for k, value in point.items():
        values = np.concatenate(draws[k])
        values = values[np.isfinite(values)]  # a resample without one class has no AUC
        low, high = np.percentile(values, [tail, 100 - tail]) if len(values) else (math.nan, math.nan)
        metrics[k] = Interval(value, float(low), float(high))
    return RealizedPerformance(n, int(labels.sum()), threshold, metrics, reliability_curve(labels, scores), level, notes)


def _calibrator(labels: np.ndarray, scores: np.ndarray) -> IsotonicRegression:
    return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, labels)


def _expected_metrics(probabilities: np.ndarray, scores: np.ndarray, sorted_scores: _SortedScores,
                      decisions: np.ndarray, cost: CostMatrix) -> dict[str, float]:
    """Expected ROC AUC, accuracy and cost when row i is positive with probability p_i (pairs i != j for AUC)."""
    p = probabilities[None, :]
    auc_pairs = sorted_scores.roc_auc(p, 1 - p)[0] * p.sum() * (1 - p).sum()
    self_pairs = float((probabilities * (1 - probabilities)).sum())
    denominator = p.sum() * (1 - p).sum() - self_pairs
    roc_auc = (auc_pairs - 0.5 * self_pairs) / denominator if denominator > 0 else math.nan
    accuracy = np.where(decisions, probabilities, 1 - probabilities).mean()
    expected_cost = np.where(decisions,
                             probabilities * cost.true_positive + (1 - probabilities) * cost.false_positive,
                             probabilities * cost.false_negative + (1 - probabilities) * cost.true_negative).mean()
    return {"roc_auc": float(roc_auc), "accuracy": float(accuracy), "expected_cost": float(expected_cost)}


def estimate_performance(reference_labels: np.ndarray, reference_scores: np.ndarray, current_scores: np.ndarray,
                         threshold: float, cost: CostMatrix, *, simulations: int = 300, level: float = 0.95,
                         seed: int = 0) -> EstimatedPerformance:
    """CBPE: expected ROC AUC, accuracy and cost of the current window from its scores alone (module doc)."""
    ref_labels, ref_scores, _ = _validated(reference_labels, reference_scores)
    current_scores = np.asarray(current_scores, dtype=float)
    ok, bad = finite_scores(current_scores)
    notes = [f"{bad:,} current scores were NaN, infinite or outside [0, 1] and were left out"] if bad else []
    scores = current_scores[ok]
    if len(scores) == 0:
        raise PerformanceInputError("no usable score in the current window")
    decisions = scores >= threshold
    sorted_scores = _SortedScores(scores)
    point = _expected_metrics(_calibrator(ref_labels, ref_scores).predict(scores), scores, sorted_scores,
                              decisions, cost)

    rng = np.random.default_rng(seed)
    ranks = rankdata(scores)  # mid-ranks: the Mann-Whitney form of ROC AUC for simulated labels
    n, n_ref = len(scores), len(ref_labels)
    simulated: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(simulations):
        resample = rng.integers(0, n_ref, n_ref)
        probabilities = _calibrator(ref_labels[resample], ref_scores[resample]).predict(scores)
        labels = rng.random(n) < probabilities
        positives = int(labels.sum())
        if 0 < positives < n:
            simulated["roc_auc"].append((ranks[labels].sum() - positives * (positives + 1) / 2)
                                        / (positives * (n - positives)))
        simulated["accuracy"].append(float((decisions == labels).mean()))
        simulated["expected_cost"].append(float(_row_costs(labels.astype(int), decisions, cost).mean()))
    tail = (1 - level) / 2 * 100
    metrics = {}
    for k, value in point.items():
        values = np.asarray(simulated[k])
        low, high = np.percentile(values, [tail, 100 - tail]) if len(values) else (math.nan, math.nan)
        metrics[k] = Interval(value, float(low), float(high))
    notes.append("estimated from calibrated scores alone: valid under covariate drift, blind to concept drift "
                 "(a change in how the outcome depends on the inputs)")
    return EstimatedPerformance(n, threshold, metrics, n_ref, level, notes)
