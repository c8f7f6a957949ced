"""Drift verdicts on windows whose drift we control exactly, and the statistics checked against scipy/statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from mlops_assets.monitoring.drift import DriftInputError, compare_windows
from mlops_assets.monitoring.effects import (
    design_margin,
    detection_power,
    min_effect_p_value,
    rows_needed,
    weighted_holm,
)
from mlops_assets.monitoring.rules import DriftRules, Matters, MonitoredColumn
from mlops_assets.monitoring.summaries import numeric_summary
from mlops_assets.monitoring.windows import Window, time_window

COLUMNS = [MonitoredColumn("income", "numeric", "feature"), MonitoredColumn("age", "numeric", "feature"),
           MonitoredColumn("visits", "numeric", "feature"), MonitoredColumn("region", "categorical", "feature"),
           MonitoredColumn("channel", "categorical", "feature")]
RULES = DriftRules()
REGIONS, REGION_SHARES = ["north", "south", "east", "west"], [0.4, 0.3, 0.2, 0.1]
CHANNELS, CHANNEL_SHARES = ["web", "app", "store"], [0.5, 0.3, 0.2]


def batch(rows: int, seed: int, *, income_shift_sd: float = 0.0, channel_shares=CHANNEL_SHARES) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "income": rng.normal(50_000 + income_shift_sd * 12_000, 12_000, rows),
        "age": rng.gamma(4.0, 10.0, rows),  # skewed
        "visits": rng.poisson(3.0, rows),  # a count: integer-valued
        "region": rng.choice(REGIONS, rows, p=REGION_SHARES),
        "channel": rng.choice(CHANNELS, rows, p=channel_shares),
        "day": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 30, rows), unit="D"),
    })


def compare(reference: pd.DataFrame, current: pd.DataFrame, columns=COLUMNS, rules=RULES):
    return compare_windows(Window(reference, "reference", "day"), Window(current, "current", "day"), columns, rules)


def column(report, name):
    return next(c for c in report.columns if c.column == name)


# --- the statistics, against reference implementations ----------------------------------------

def test_min_effect_p_value_at_zero_margin_is_the_two_sided_z_test_of_statsmodels():
    rng = np.random.default_rng(1)
    reference, current = rng.normal(0, 1, 800), rng.normal(0.15, 1.3, 600)
    z, p_statsmodels = CompareMeans(DescrStatsW(current), DescrStatsW(reference)).ztest_ind(usevar="unequal")
    diff = current.mean() - reference.mean()
    se = math.sqrt(current.var(ddof=1) / 600 + reference.var(ddof=1) / 800)
    assert diff / se == pytest.approx(z, rel=1e-12)
    assert min_effect_p_value(diff, se, 0.0) == pytest.approx(p_statsmodels, rel=1e-9)


def test_min_effect_p_value_is_the_one_sided_test_against_the_margin():
    """Beyond the margin, H0 |shift| <= m is rejected as the one-sided test of shift = m (statsmodels)."""
    rng = np.random.default_rng(2)
    reference, current = rng.normal(0, 1, 3000), rng.normal(0.3, 1, 3000)
    margin = 0.1
    _, p_one_sided = CompareMeans(DescrStatsW(current), DescrStatsW(reference)).ztest_ind(
        usevar="unequal", alternative="larger", value=margin)
    diff = current.mean() - reference.mean()
    se = math.sqrt(current.var() / 3000 + reference.var() / 3000)
    other_tail = norm.cdf((-margin - diff) / se)  # the folded normal's far tail, ~1e-40 here
    assert min_effect_p_value(diff, se, margin) == pytest.approx(p_one_sided + other_tail, rel=1e-3)
    assert min_effect_p_value(0.05, se, margin) == pytest.approx(norm.cdf((margin - 0.05) / se)
                                                                  + norm.cdf((-margin - 0.05) / se))


def test_weighted_holm_with_equal_weights_is_statsmodels_holm():
    p = [0.001, 0.04, 0.03, 0.2, 0.012, 0.0049]
    rejected, adjusted = weighted_holm(p, [1.0] * len(p), alpha=0.05)
    expected_rejected, expected_adjusted, *_ = multipletests(p, alpha=0.05, method="holm")
    assert rejected.tolist() == expected_rejected.tolist()
    np.testing.assert_allclose(adjusted, expected_adjusted, rtol=1e-12)


def test_weighted_holm_gives_a_heavier_hypothesis_more_of_alpha():
    p, weights = [0.02, 0.02, 0.9], [0.9, 0.1, 1.0]
    rejected, _ = weighted_holm(p, weights, alpha=0.05)  # 0.02 <= 0.05 * 0.9 / 2, but not 0.05 * 0.1 / 1.1
    assert rejected.tolist() == [True, False, False]
    assert not weighted_holm(p, [1.0, 1.0, 1.0], alpha=0.05)[0].any()  # unweighted: 0.02 > 0.05 / 3


def test_the_designed_margin_catches_what_matters_with_the_configured_power():
    level = 0.05 / 20
    for se in (0.004, 0.01, 0.03):
        margin = design_margin(0.2, se, level, power=0.9)
        assert 0 < margin < 0.2
        assert detection_power(0.2, se, level, margin) == pytest.approx(0.9, abs=1e-6)
    assert design_margin(0.2, 0.0005, level, 0.9) > 0.19  # huge windows: only shifts near what matters alarm
    assert design_margin(0.2, 0.2, level, 0.9) == 0.0  # tiny windows: clipped at the floor


def test_rows_needed_is_the_smallest_window_that_reaches_the_power():
    level, reference_rows = 0.05 / 20, 50_000
    needed = rows_needed(0.2, level, 0.9, unit_variance_current=1.0, reference_variance=1 / reference_rows)
    for rows, enough in ((needed, True), (needed * 0.8, False)):
        se = math.sqrt(1 / rows + 1 / reference_rows)
        assert (detection_power(0.2, se, level, 0.0) >= 0.9 - 1e-9) == enough
    assert rows_needed(0.2, level, 0.9, unit_variance_current=1.0, reference_variance=1.0) == math.inf


def test_quartiles_match_numpy_and_their_error_is_how_much_they_vary():
    rng = np.random.default_rng(3)
    samples = [rng.gamma(2.0, 3.0, 2_000) for _ in range(400)]
    summaries = [numeric_summary(v, len(v), 0, 0, jitter=False) for v in samples]
    np.testing.assert_allclose(summaries[0].quartiles, np.quantile(samples[0], [0.25, 0.5, 0.75]), rtol=1e-12)
    spread = np.std([np.quantile(v, [0.25, 0.5, 0.75]) for v in samples], axis=0)
    typical_se = np.mean([s.quartile_se for s in summaries], axis=0)
    np.testing.assert_allclose(typical_se, spread, rtol=0.12)


# --- verdicts on seeded windows ---------------------------------------------------------------

def test_samples_from_the_same_distribution_do_not_drift():
    report = compare(batch(5_000, 1), batch(5_000, 2))
    assert report.verdict == "no drift", report.to_markdown()
    assert report.drifted_columns == [] and report.drift_share == 0.0
    assert [c.column for c in report.columns] == [c.name for c in COLUMNS]


def test_shifted_numeric_and_categorical_columns_are_the_ones_flagged_largest_first():
    report = compare(batch(5_000, 1), batch(5_000, 3, income_shift_sd=0.6, channel_shares=[0.3, 0.3, 0.4]))
    assert report.verdict == "drift"
    assert report.drifted_columns == ["income", "channel"], report.to_markdown()  # 0.6 SD = 3x, 20 pts = 2x
    assert report.drift_share == pytest.approx(2 / 5)
    income = column(report, "income")
    mean = next(t for t in income.tests if t.statistic == "mean")
    assert mean.drifted and mean.estimate == pytest.approx(0.6, abs=0.06) and mean.unit == "SD"
    assert mean.ci95[0] > mean.margin  # the whole interval lies beyond the negligible margin
    channel = column(report, "channel")
    assert "share of" in channel.headline and "pts" in channel.headline
    assert report.effect_sizes["income"] > report.effect_sizes["channel"] > 1


def test_a_real_but_negligible_shift_does_not_alarm_at_100k_rows():
    columns = [MonitoredColumn("income", "numeric", "feature")]
    reference = batch(100_000, 5)
    current = batch(100_000, 6, income_shift_sd=0.03)
    report = compare(reference, current, columns)
    mean = next(t for t in report.columns[0].tests if t.statistic == "mean")
    # statistically real (a plain z-test is certain), but far below the 0.2 SD that matters
    assert min_effect_p_value(mean.estimate, mean.se, 0.0) < 1e-6
    assert report.verdict == "no drift" and mean.margin > 0.15


def test_what_matters_is_read_per_column():
    reference, current = batch(5_000, 1), batch(5_000, 3, income_shift_sd=0.6)
    strict = DriftRules(per_column={"income": Matters(numeric_sd=2.0)})
    assert "income" not in compare(reference, current, rules=strict).drifted_columns
    assert "income" in compare(reference, current).drifted_columns


# --- bad input, each named -------------------------------------------------------------------

def test_an_empty_current_window_is_no_data_not_an_alarm():
    report = compare(batch(2_000, 1), batch(2_000, 2).iloc[0:0])
    assert report.verdict == "no data" and report.drifted_columns == []
    assert report.summary().startswith("no data")
    assert all(c.verdict == "not tested" for c in report.columns)


def test_a_window_too_small_for_what_matters_says_how_many_rows_it_needs():
    report = compare(batch(50_000, 1), batch(120, 2))
    assert report.verdict == "too small"
    income = column(report, "income")
    assert income.verdict == "too small" and 120 < income.rows_needed < 5_000
    assert f"that needs {income.rows_needed:,.0f} rows" in " ".join(income.notes)
    assert f"{max(c.rows_needed for c in report.too_small):,.0f}" in report.summary()


def test_an_all_null_column_is_named_and_its_missing_share_is_what_drifts():
    current = batch(3_000, 2)
    current["income"] = np.nan
    income = column(compare(batch(3_000, 1), current), "income")
    assert income.drifted and income.headline.startswith("missing +100.0 pts")
    assert any("all values missing or infinite in the current window" in n for n in income.notes)


def test_a_column_null_in_both_windows_is_not_tested():
    reference, current = batch(3_000, 1), batch(3_000, 2)
    reference["age"] = current["age"] = np.nan
    age = column(compare(reference, current), "age")
    assert age.verdict == "not tested" and any("no values in either window" in n for n in age.notes)


def test_a_constant_reference_column_is_compared_as_shares_of_values():
    reference, current = batch(3_000, 1), batch(3_000, 2)
    reference["visits"] = 0
    current.loc[current.index[:300], "visits"] = 7  # 10% of rows take a value the reference never had
    current.loc[current.index[300:], "visits"] = 0
    visits = column(compare(reference, current), "visits")
    assert any("constant (0) in the reference" in n for n in visits.notes)
    assert visits.drifted and visits.headline.startswith("new categories 10.0%")


def test_unseen_categories_are_named_and_alarm_only_above_what_matters():
    reference = batch(5_000, 1)
    few, many = batch(5_000, 2), batch(5_000, 2)
    few.loc[few.index[:10], "region"] = "central"  # 0.2%: below the 1% that matters
    many.loc[many.index[:150], "region"] = "central"  # 3%
    quiet, loud = column(compare(reference, few), "region"), column(compare(reference, many), "region")
    assert any("never seen in the reference: 'central' (0.2%)" in n for n in quiet.notes)
    assert not quiet.drifted
    assert loud.drifted and any(t.statistic == "new categories" and t.drifted for t in loud.tests)


def test_nan_and_infinite_scores_are_counted_named_and_left_out():
    score = [MonitoredColumn("model_score", "numeric", "score")]
    rng = np.random.default_rng(4)
    reference = pd.DataFrame({"model_score": rng.beta(2, 5, 4_000)})
    current = pd.DataFrame({"model_score": rng.beta(2, 5, 4_000)})
    current.loc[:29, "model_score"] = np.nan
    current.loc[30:39, "model_score"] = np.inf
    result = compare_windows(Window(reference, "r"), Window(current, "c"), score, RULES).columns[0]
    assert any("30 missing (NaN) and 10 infinite scores in the current window" in n for n in result.notes)
    assert result.current_values == 3_960 and result.verdict == "no drift"


def test_labels_not_arrived_yet_are_not_target_drift():
    target = [MonitoredColumn("churned", "categorical", "target")]
    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"churned": (rng.random(4_000) < 0.25).astype(float)})
    current = pd.DataFrame({"churned": (rng.random(4_000) < 0.25).astype(float)})
    current.loc[:2_999, "churned"] = np.nan  # three quarters still waiting for feedback
    result = compare_windows(Window(reference, "r"), Window(current, "c"), target, RULES).columns[0]
    assert result.verdict in ("no drift", "too small")
    assert [t.statistic for t in result.tests] == ["share of 1.0", "new categories"]  # no "missing" share
    assert "3,000 rows of the current window have no label yet: left out" in result.notes


def test_a_missing_column_or_an_empty_reference_is_refused_by_name():
    with pytest.raises(DriftInputError, match=r"current window lacks the monitored columns \['channel'\]"):
        compare(batch(500, 1), batch(500, 2).drop(columns="channel"))
    with pytest.raises(DriftInputError, match="reference window .* has no rows"):
        compare(batch(500, 1).iloc[0:0], batch(500, 2))


def test_time_window_cuts_a_period_and_reports_it():
    frame = batch(3_000, 1)
    window = time_window(frame, "day", "2026-01-10", "2026-01-17")
    info = window.info()
    assert info.rows == int(((frame["day"] >= "2026-01-10") & (frame["day"] < "2026-01-17")).sum())
    assert (info.start, info.end) == ("2026-01-10", "2026-01-16")
    with pytest.raises(ValueError, match="must end after it starts"):
        time_window(frame, "day", "2026-01-10", "2026-01-10")
