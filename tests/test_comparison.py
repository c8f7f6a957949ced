"""Paired model comparison against reference implementations (MLstatkit's DeLong, statsmodels' McNemar)."""

from __future__ import annotations

import numpy as np
import pytest
from MLstatkit import Delong_test
from scipy.stats import bootstrap
from statsmodels.stats.contingency_tables import mcnemar

from mlops_assets.training.comparison import compare_models, delong_test, mcnemar_test


def two_models(rows: int, seed: int, gap: float):
    """Labels and two correlated scores; model B sees the signal ``gap`` more clearly."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, rows)
    shared = rng.normal(size=rows)
    a = 1 / (1 + np.exp(-(1.0 * y + shared + rng.normal(scale=0.8, size=rows))))
    b = 1 / (1 + np.exp(-((1.0 + gap) * y + shared + rng.normal(scale=0.8, size=rows))))
    return y, a, b


@pytest.mark.parametrize(("rows", "seed", "gap"), [(300, 1, 0.0), (1000, 2, 0.3), (5000, 3, 0.1), (200, 4, 1.0)])
def test_delong_matches_mlstatkit(rows, seed, gap):
    y, a, b = two_models(rows, seed, gap)
    z_ref, p_ref = Delong_test(y, a, b, return_ci=False, return_auc=False)[:2]
    difference, se, p = delong_test(y, a, b)
    assert difference / se == pytest.approx(z_ref, rel=1e-9)
    assert p == pytest.approx(p_ref, rel=1e-9, abs=1e-15)


def test_delong_handles_tied_scores_like_the_reference():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 800)
    a = np.round(rng.random(800) * 0.5 + y * 0.2, 1)  # few distinct values: many ties
    b = np.round(rng.random(800) * 0.5 + y * 0.3, 2)
    z_ref, p_ref = Delong_test(y, a, b, return_ci=False, return_auc=False)[:2]
    difference, se, p = delong_test(y, a, b)
    assert difference / se == pytest.approx(z_ref, rel=1e-9) and p == pytest.approx(p_ref, rel=1e-9)


@pytest.mark.parametrize(("rows", "seed", "gap"), [(60, 1, 0.5), (2000, 2, 0.2), (3000, 3, 0.0)])
def test_mcnemar_matches_statsmodels_exact_test(rows, seed, gap):
    y, a, b = two_models(rows, seed, gap)
    predicted_a, predicted_b = a >= 0.5, b >= 0.55
    only_a, only_b, p = mcnemar_test(y, predicted_a, predicted_b)
    right_a, right_b = predicted_a == y, predicted_b == y
    table = [[np.sum(right_a & right_b), np.sum(right_a & ~right_b)], [np.sum(~right_a & right_b), np.sum(~right_a & ~right_b)]]
    assert (only_a, only_b) == (table[0][1], table[1][0])
    assert p == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)


def test_bootstrap_interval_agrees_with_scipys_paired_bootstrap_and_is_seeded():
    y, a, b = two_models(1500, 7, 0.4)
    first = compare_models(y, a, b, 0.5, 0.5, bootstrap_samples=2000, seed=11)
    again = compare_models(y, a, b, 0.5, 0.5, bootstrap_samples=2000, seed=11)
    assert first == again  # seeded: the same rows give the same intervals and p-values
    brier = next(m for m in first.metrics if m.metric == "brier")
    reference = bootstrap((y, a, b), lambda y, a, b: np.mean((b - y) ** 2) - np.mean((a - y) ** 2), paired=True,
                          vectorized=False, n_resamples=2000, method="percentile", random_state=3).confidence_interval
    width = reference.high - reference.low
    assert brier.ci_low == pytest.approx(reference.low, abs=0.1 * width)
    assert brier.ci_high == pytest.approx(reference.high, abs=0.1 * width)


def test_comparison_says_in_words_whether_a_difference_is_significant():
    y, a, b = two_models(4000, 8, 0.8)
    clear = compare_models(y, a, b, 0.5, 0.5, label_a="champion v1", label_b="candidate")
    auc = next(m for m in clear.metrics if m.metric == "roc_auc")
    assert auc.significant and auc.ci_low > 0 and auc.test == "DeLong" and auc.verdict == "candidate better (significant)"
    assert clear.summary.startswith("candidate is significantly better on roc_auc")
    same = compare_models(y, a, a.copy(), 0.5, 0.5)
    assert not any(m.significant for m in same.metrics)
    assert same.summary.startswith("no significant difference")
    # Lower is better for log loss and Brier: a worse model is "worse" although its number is larger.
    worse = compare_models(y, b, a, 0.5, 0.5, label_b="candidate")
    brier = next(m for m in worse.metrics if m.metric == "brier")
    assert brier.difference > 0 and brier.verdict == "candidate worse (significant)"
