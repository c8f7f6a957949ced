"""Is model B really better than model A? Paired tests on the same test rows.

MLflow's compare view shows two numbers; this says whether their difference means anything:

- ROC AUC: DeLong's test for two correlated ROC curves (the fast algorithm of Sun & Xu,
  2014), with its normal confidence interval.
- Accuracy at each model's threshold: McNemar's exact test on the rows the two models
  label differently; the interval from the paired bootstrap.
- PR AUC, log loss, Brier score: a seeded paired bootstrap (both models scored on the
  same resampled rows), percentile interval, p-value from the centred bootstrap
  distribution.

Differences are B - A. For log loss and Brier lower is better.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest, norm, rankdata
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

LOWER_IS_BETTER = {"log_loss", "brier"}


@dataclass(frozen=True)
class MetricComparison:
    metric: str
    a: float
    b: float
    difference: float  # b - a
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    significant: bool
    verdict: str


@dataclass(frozen=True)
class Comparison:
    label_a: str
    label_b: str
    rows: int
    significance_level: float
    metrics: list[MetricComparison]

    def as_dicts(self) -> list[dict]:
        return [asdict(m) for m in self.metrics]

    def table(self) -> list[dict]:
        """Rows for a Markdown or terminal table."""
        return [{"metric": m.metric, self.label_a: round(m.a, 4), self.label_b: round(m.b, 4),
                 "difference": f"{m.difference:+.4f}", f"{100 * (1 - self.significance_level):g}% CI":
                 f"[{m.ci_low:+.4f}, {m.ci_high:+.4f}]", "p": f"{m.p_value:.3g}", "test": m.test,
                 "verdict": m.verdict} for m in self.metrics]

    @property
    def summary(self) -> str:
        better = [m.metric for m in self.metrics if m.significant and _b_is_better(m)]
        worse = [m.metric for m in self.metrics if m.significant and not _b_is_better(m)]
        parts = []
        if better:
            parts.append(f"{self.label_b} is significantly better on {', '.join(better)}")
        if worse:
            parts.append(f"{self.label_b} is significantly worse on {', '.join(worse)}")
        if not parts:
            parts.append(f"no significant difference between {self.label_a} and {self.label_b}")
        return "; ".join(parts) + f" (level {self.significance_level:g}, {self.rows} paired test rows)"


def _b_is_better(m: MetricComparison) -> bool:
    return m.difference < 0 if m.metric in LOWER_IS_BETTER else m.difference > 0


def delong_test(y_true: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> tuple[float, float, float]:
    """(AUC_B - AUC_A, its standard error, two-sided p-value) by DeLong's method."""
    y_true = np.asarray(y_true).astype(bool)
    m, n = int(y_true.sum()), int((~y_true).sum())
    if m < 2 or n < 2:
        raise ValueError("DeLong's test needs at least two positive and two negative rows")
    predictions = np.vstack([scores_a, scores_b]).astype(float)
    positives, negatives = predictions[:, y_true], predictions[:, ~y_true]
    tx = rankdata(positives, axis=1)
    ty = rankdata(negatives, axis=1)
    tz = rankdata(np.hstack([positives, negatives]), axis=1)
    aucs = (tz[:, :m].sum(axis=1) / m - (m + 1) / 2) / n
    v01 = (tz[:, :m] - tx) / n
    v10 = 1.0 - (tz[:, m:] - ty) / m
    covariance = np.cov(v01) / m + np.cov(v10) / n
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    difference = float(aucs[1] - aucs[0])
    if variance <= 0:
        return difference, 0.0, 1.0 if difference == 0 else 0.0
    se = float(np.sqrt(variance))
    return difference, se, float(2 * norm.sf(abs(difference) / se))


def mcnemar_test(y_true: np.ndarray, predicted_a: np.ndarray, predicted_b: np.ndarray) -> tuple[int, int, float]:
    """(rows only A gets right, rows only B gets right, exact two-sided p-value)."""
    right_a, right_b = predicted_a == y_true, predicted_b == y_true
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    if only_a + only_b == 0:
        return only_a, only_b, 1.0
    return only_a, only_b, float(binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue)


def _average_precision(y_sorted: np.ndarray, distinct_end: np.ndarray) -> float:
    """sklearn's average precision for rows already sorted by descending score."""
    tps = np.cumsum(y_sorted)[distinct_end]
    if tps[-1] == 0:
        return 0.0
    fps = (np.flatnonzero(distinct_end) + 1) - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _bootstrap_average_precision(y: np.ndarray, scores: np.ndarray, samples: np.ndarray) -> np.ndarray:
    values = np.empty(len(samples))
    for i, rows in enumerate(samples):
        s, t = scores[rows], y[rows]
        order = np.argsort(-s, kind="mergesort")
        s, t = s[order], t[order]
        values[i] = _average_precision(t, np.r_[np.diff(s) != 0, True])
    return values


def _row_losses(metric: str, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    if metric == "brier":
        return (p - y) ** 2
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def compare_models(y_true: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, threshold_a: float,
                   threshold_b: float, *, significance_level: float = 0.05, bootstrap_samples: int = 1000,
                   seed: int = 0, label_a: str = "A", label_b: str = "B") -> Comparison:
    """Every headline metric of A and B on the same rows, with a paired interval and a p-value each."""
    y = np.asarray(y_true).astype(int)
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if not (len(y) == len(a) == len(b)):
        raise ValueError("both models must be scored on the same rows")
    alpha = significance_level
    z = norm.ppf(1 - alpha / 2)
    samples = np.random.default_rng(seed).integers(0, len(y), size=(bootstrap_samples, len(y)))
    quantiles = (100 * alpha / 2, 100 * (1 - alpha / 2))
    rows: list[MetricComparison] = []

    def add(metric: str, value_a: float, value_b: float, low: float, high: float, p: float, test: str) -> None:
        difference = value_b - value_a
        significant = p < alpha
        better = (difference < 0) if metric in LOWER_IS_BETTER else (difference > 0)
        verdict = (f"{label_b} {'better' if better else 'worse'} (significant)" if significant
                   else "not significant: the difference may be noise")
        rows.append(MetricComparison(metric, value_a, value_b, difference, low, high, p, test, significant, verdict))

    difference, se, p = delong_test(y, a, b)
    add("roc_auc", roc_auc_score(y, a), roc_auc_score(y, b), difference - z * se, difference + z * se, p, "DeLong")

    predicted_a, predicted_b = (a >= threshold_a).astype(int), (b >= threshold_b).astype(int)
    correct_difference = (predicted_b == y).astype(float) - (predicted_a == y).astype(float)
    boot = correct_difference[samples].mean(axis=1)
    _, _, p = mcnemar_test(y, predicted_a, predicted_b)
    add("accuracy", float(np.mean(predicted_a == y)), float(np.mean(predicted_b == y)),
        *np.percentile(boot, quantiles), p, "McNemar (exact)")

    boot = _bootstrap_average_precision(y, b, samples) - _bootstrap_average_precision(y, a, samples)
    value_a, value_b = average_precision_score(y, a), average_precision_score(y, b)
    add("pr_auc", value_a, value_b, *np.percentile(boot, quantiles), _bootstrap_p(boot, value_b - value_a),
        "paired bootstrap")

    for metric, exact in (("log_loss", lambda p: log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
                          ("brier", lambda p: brier_score_loss(y, p))):
        loss_difference = _row_losses(metric, y, b) - _row_losses(metric, y, a)
        boot = loss_difference[samples].mean(axis=1)
        value_a, value_b = exact(a), exact(b)
        add(metric, value_a, value_b, *np.percentile(boot, quantiles), _bootstrap_p(boot, value_b - value_a),
            "paired bootstrap")
    return Comparison(label_a, label_b, len(y), alpha, rows)


def _bootstrap_p(replicates: np.ndarray, observed: float) -> float:
    """Two-sided p-value of "no difference" from the bootstrap distribution, centred on the observed one."""
    extreme = np.sum(np.abs(replicates - observed) >= abs(observed))
    return float((extreme + 1) / (len(replicates) + 1))
