"""Realized performance against scikit-learn and scipy, and the estimate before labels where the truth is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import bootstrap
from sklearn.metrics import accuracy_score, average_precision_score, log_loss, roc_auc_score

from mlops_assets.config import CostMatrix
from mlops_assets.monitoring.performance import (
    PerformanceInputError,
    estimate_performance,
    realized_performance,
)

COST = CostMatrix(true_positive=2.0, false_positive=1.0, false_negative=10.0, true_negative=0.0)


def calibrated_rows(rows: int, seed: int, *, x_mean: float = 0.0, concept: float = 1.0):
    """Scores that are true probabilities; ``concept`` != 1 changes how the outcome depends on the input."""
    rng = np.random.default_rng(seed)
    x = rng.normal(x_mean, 1.0, rows)
    score = 1 / (1 + np.exp(-(1.6 * x - 1.0)))
    truth = 1 / (1 + np.exp(-(1.6 * concept * x - 1.0)))
    return (rng.random(rows) < truth).astype(int), np.round(score, 3)  # rounding makes ties, as real models do


def test_point_metrics_are_scikit_learns():
    labels, scores = calibrated_rows(3_000, 1)
    result = realized_performance(labels, scores, 0.4, COST, replicates=50)
    m = {k: v.value for k, v in result.metrics.items()}
    assert m["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    assert m["log_loss"] == pytest.approx(log_loss(labels, scores), abs=1e-12)
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, scores >= 0.4), abs=1e-12)
    decided = scores >= 0.4
    cost = (2.0 * (decided & (labels == 1)) + 1.0 * (decided & (labels == 0)) + 10.0 * (~decided & (labels == 1)))
    assert m["expected_cost"] == pytest.approx(cost.mean(), abs=1e-12)
    bins = np.minimum((scores * 10).astype(int), 9)
    ece = sum(abs(labels[bins == b].mean() - scores[bins == b].mean()) * (bins == b).mean()
              for b in range(10) if (bins == b).any())
    assert m["ece"] == pytest.approx(ece, abs=1e-12)
    assert sum(b.rows for b in result.reliability) == 3_000


def test_bootstrap_intervals_agree_with_scipys_percentile_bootstrap():
    labels, scores = calibrated_rows(1_500, 2)
    ours = realized_performance(labels, scores, 0.4, COST, replicates=2_000, seed=1).metrics
    clipped = np.clip(scores, 1e-15, 1 - 1e-15)

    def mean_log_loss(y, s, axis=-1):
        return -(y * np.log(s) + (1 - y) * np.log(1 - s)).mean(axis=axis)

    def accuracy(y, s, axis=-1):
        return ((s >= 0.4) == (y == 1)).mean(axis=axis)

    for name, statistic in (("log_loss", mean_log_loss), ("accuracy", accuracy)):
        reference = bootstrap((labels, clipped), statistic, paired=True, vectorized=True, n_resamples=2_000,
                              method="percentile", random_state=np.random.default_rng(2)).confidence_interval
        width = reference.high - reference.low
        assert ours[name].low == pytest.approx(reference.low, abs=0.08 * width), name
        assert ours[name].high == pytest.approx(reference.high, abs=0.08 * width), name


def test_estimate_before_labels_follows_covariate_drift():
    ref_labels, ref_scores = calibrated_rows(6_000, 3)
    cur_labels, cur_scores = calibrated_rows(5_000, 4, x_mean=0.8)  # inputs moved, P(y | x) did not
    estimated = estimate_performance(ref_labels, ref_scores, cur_scores, 0.5, COST, simulations=200).metrics
    realized = realized_performance(cur_labels, cur_scores, 0.5, COST, replicates=50).metrics
    reference = realized_performance(ref_labels, ref_scores, 0.5, COST, replicates=50).metrics
    for name in ("roc_auc", "accuracy", "expected_cost"):
        assert estimated[name].low <= realized[name].value <= estimated[name].high, name
    # the estimate is closer to the truth than assuming nothing changed
    assert abs(estimated["accuracy"].value - realized["accuracy"].value) < \
        abs(reference["accuracy"].value - realized["accuracy"].value)


def test_estimate_before_labels_cannot_see_concept_drift():
    ref_labels, ref_scores = calibrated_rows(6_000, 5)
    cur_labels, cur_scores = calibrated_rows(5_000, 6, concept=0.3)  # same inputs, weaker relation
    estimated = estimate_performance(ref_labels, ref_scores, cur_scores, 0.5, COST, simulations=200)
    realized = realized_performance(cur_labels, cur_scores, 0.5, COST, replicates=50).metrics
    assert realized["roc_auc"].value < estimated.metrics["roc_auc"].low  # the estimate stays up, the truth fell
    assert any("blind to concept drift" in note for note in estimated.notes)


def test_unusable_scores_and_missing_labels_are_left_out_and_named():
    labels, scores = calibrated_rows(2_000, 7)
    labels = labels.astype(float)
    scores = scores.astype(float)
    scores[:5], scores[5:8], labels[8:20] = np.nan, np.inf, np.nan
    result = realized_performance(labels, scores, 0.4, COST, replicates=20)
    assert result.rows == 2_000 - 20
    assert "8 scores were NaN, infinite or outside [0, 1]" in " ".join(result.notes)
    assert "12 rows have no label yet" in " ".join(result.notes)


@pytest.mark.parametrize(("labels", "scores", "message"), [
    ([1, 1, 1], [0.2, 0.5, 0.9], "one class"),
    ([0, 2, 1], [0.2, 0.5, 0.9], "labels must be 0 or 1"),
    ([0, 1], [0.2, 0.5, 0.9], "2 labels but 3 scores"),
    ([0, 1], [np.nan, np.inf], "no labelled row with a usable score"),
])
def test_labels_that_cannot_be_scored_are_refused_with_the_reason(labels, scores, message):
    with pytest.raises(PerformanceInputError, match=message):
        realized_performance(np.array(labels), np.array(scores), 0.5, COST, replicates=10)
