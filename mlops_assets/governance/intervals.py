"""Bootstrap confidence intervals, vectorised: each resample is a row of counts, not a copied frame.

A bootstrap resample of n rows drawn with replacement is the same as giving each row
a weight (how often it was drawn). Every metric here takes a weight matrix ``W`` of
shape (resamples, rows) and returns one value per resample, so 200 resamples cost a
few matrix products instead of 200 pandas group-bys. With ``W`` a single row of ones
the functions equal scikit-learn's (ties included), which the tests check.

fairlearn's own ``MetricFrame(n_boot=...)`` rebuilds the frame per resample: about 11 s
for 100 resamples of one pair of attributes on 3,000 rows here (benchmarks/governance.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import numpy as np

#: Resamples x rows per chunk: bounds memory on large test sets (about 40 MB of float64).
_CHUNK_CELLS = 5_000_000


def weight_chunks(rows: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap weights (how often each row was drawn), in chunks of resamples."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_CELLS // max(rows, 1))
    done = 0
    while done < resamples:
        k = min(per_chunk, resamples - done)
        drawn = rng.integers(0, rows, size=(k, rows)) + (np.arange(k) * rows)[:, None]
        yield np.bincount(drawn.ravel(), minlength=k * rows).reshape(k, rows).astype(float)
        done += k


def bootstrap(rows: int, resamples: int, seed: int, statistic: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``statistic`` (weights -> one value, or a vector of values, per resample) over every resample."""
    return np.concatenate([statistic(w) for w in weight_chunks(rows, resamples, seed)], axis=0)


def interval(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the first axis; NaN where every resample was undefined."""
    tail = (1 - confidence) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice": that interval is NaN, as it should be
        return np.nanquantile(samples, tail, axis=0), np.nanquantile(samples, 1 - tail, axis=0)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _score_blocks(y: np.ndarray, scores: np.ndarray, weights: np.ndarray, descending: bool):
    """Weighted positives and negatives per distinct score, scores sorted (ties form one block)."""
    order = np.argsort(-scores if descending else scores, kind="mergesort")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    w = weights[:, order]
    positive = y[order].astype(float)
    return np.add.reduceat(w * positive, starts, axis=1), np.add.reduceat(w * (1 - positive), starts, axis=1)


def roc_auc(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC per weight row; ties count half. NaN when a class is absent."""
    if len(y) == 0:
        return np.full(weights.shape[0], np.nan)
    positives, negatives = _score_blocks(y, scores, weights, descending=False)
    negatives_below = np.cumsum(negatives, axis=1) - negatives
    pairs = (positives * (negatives_below + 0.5 * negatives)).sum(axis=1)
    return _ratio(pairs, positives.sum(axis=1) * negatives.sum(axis=1))


def average_precision(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Area under the precision-recall steps, as scikit-learn's ``average_precision_score``."""
    positives, negatives = _score_blocks(y, scores, weights, descending=True)
    true_pos = np.cumsum(positives, axis=1)
    precision = _ratio(true_pos, true_pos + np.cumsum(negatives, axis=1))
    return _ratio(np.nansum(positives * precision, axis=1), positives.sum(axis=1))


def brier(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return _ratio(weights @ (scores - y) ** 2, weights.sum(axis=1))


def log_loss(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    p = np.clip(scores, 1e-15, 1 - 1e-15)
    return _ratio(weights @ -(y * np.log(p) + (1 - y) * np.log(1 - p)), weights.sum(axis=1))


def decision_metrics(y: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Rates at the decision threshold per weight row: selection rate, TPR, FPR, precision, accuracy, F1."""
    y, predicted = y.astype(float), predicted.astype(float)
    rows = weights.sum(axis=1)
    true_pos = weights @ (y * predicted)
    false_pos = weights @ ((1 - y) * predicted)
    positives, negatives, selected = weights @ y, weights @ (1 - y), weights @ predicted
    correct = weights @ (y == predicted).astype(float)
    precision, recall = _ratio(true_pos, selected), _ratio(true_pos, positives)
    return {
        "rows": rows,
        "selection_rate": _ratio(selected, rows),
        "tpr": recall,
        "fpr": _ratio(false_pos, negatives),
        "precision": precision,
        "accuracy": _ratio(correct, rows),
        "f1": _ratio(2 * true_pos, selected + positives),
    }


def headline_metrics(y: np.ndarray, scores: np.ndarray, threshold: float, weights: np.ndarray) -> dict[str, np.ndarray]:
    """The card's test metrics per weight row (one row of ones: the point estimates)."""
    decisions = decision_metrics(y, (scores >= threshold).astype(int), weights)
    return {
        "roc_auc": roc_auc(y, scores, weights),
        "pr_auc": average_precision(y, scores, weights),
        "log_loss": log_loss(y, scores, weights),
        "brier": brier(y, scores, weights),
        "accuracy": decisions["accuracy"],
        "precision": decisions["precision"],
        "recall": decisions["tpr"],
        "f1": decisions["f1"],
    }


def metrics_with_intervals(y: np.ndarray, scores: np.ndarray, threshold: float, resamples: int,
                           confidence: float, seed: int) -> dict[str, dict[str, float]]:
    """Each headline metric with its bootstrap interval: {"roc_auc": {"value", "low", "high"}, ...}."""
    y = np.asarray(y, dtype=float)
    scores = np.asarray(scores, dtype=float)
    point = headline_metrics(y, scores, threshold, np.ones((1, len(y))))
    out = {name: {"value": float(values[0]), "low": float("nan"), "high": float("nan")} for name, values in point.items()}
    if resamples > 0:
        names = list(point)
        samples = bootstrap(len(y), resamples, seed, lambda w: np.column_stack(
            [headline_metrics(y, scores, threshold, w)[n] for n in names]))
        low, high = interval(samples, confidence)
        for i, name in enumerate(names):
            out[name].update(low=float(low[i]), high=float(high[i]))
    return out
