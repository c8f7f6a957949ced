"""Drift verdicts on synthetic batches whose drift we control exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from evidently import ColumnType
from evidently.core.report import Snapshot
from evidently.legacy.calculations.stattests import get_stattest

from mlops_assets.monitoring.drift import METHODS, compute_drift, is_drifted

N_ROWS = 5_000
NUMERIC = ["age", "income", "tenure_days", "is_premium"]  # is_premium is boolean on purpose
CATEGORICAL = ["region", "channel"]
REGIONS = ["north", "south", "east", "west"]
REGION_SHARES = [0.4, 0.3, 0.2, 0.1]
CHANNELS = ["web", "app", "store"]
CHANNEL_SHARES = [0.5, 0.3, 0.2]


def make_batch(seed: int, *, income_shift_sd: float = 0.0, channel_shares=CHANNEL_SHARES) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income_mean, income_sd = 50_000.0, 12_000.0
    return pd.DataFrame(
        {
            "age": rng.normal(40, 10, N_ROWS),
            "income": rng.normal(income_mean + income_shift_sd * income_sd, income_sd, N_ROWS),
            "tenure_days": rng.exponential(300, N_ROWS),
            "is_premium": rng.random(N_ROWS) < 0.3,
            "region": rng.choice(REGIONS, N_ROWS, p=REGION_SHARES),
            "channel": rng.choice(CHANNELS, N_ROWS, p=channel_shares),
            "customer_id": np.arange(N_ROWS),  # not compared: frames may hold more columns
        }
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return make_batch(seed=1)


@pytest.fixture(scope="module")
def same_distribution() -> pd.DataFrame:
    return make_batch(seed=2)


@pytest.fixture(scope="module")
def drifted() -> pd.DataFrame:
    # income moves by one standard deviation; 30 points of channel share move from web to store.
    return make_batch(seed=3, income_shift_sd=1.0, channel_shares=[0.2, 0.3, 0.5])


def drift(reference, current, **kwargs):
    return compute_drift(
        reference, current, numeric_columns=NUMERIC, categorical_columns=CATEGORICAL, **kwargs
    )


def test_samples_from_the_same_distribution_do_not_drift(reference, same_distribution):
    result = drift(reference, same_distribution)

    assert [c.column for c in result.columns] == NUMERIC + CATEGORICAL
    assert result.drifted_columns == [], result.to_markdown()
    assert result.drift_share == 0.0


def test_shifted_numeric_and_categorical_columns_are_exactly_the_ones_flagged(reference, drifted):
    result = drift(reference, drifted)

    assert sorted(result.drifted_columns) == ["channel", "income"], result.to_markdown()
    assert result.drift_share == pytest.approx(2 / 6)
    by_name = {c.column: c for c in result.columns}
    assert by_name["income"].kind == "numeric" and by_name["income"].method == "wasserstein"
    assert by_name["channel"].kind == "categorical" and by_name["channel"].method == "jensenshannon"
    assert by_name["income"].score >= 0.1  # a distance: large means drift


def test_p_value_methods_flag_small_scores_not_large_ones(reference, drifted):
    result = drift(reference, drifted, numeric_method="ks", categorical_method="chisquare", threshold=0.05)

    by_name = {c.column: c for c in result.columns}
    assert by_name["income"].score < 0.05
    assert by_name["income"].drifted
    assert by_name["age"].score >= 0.05
    assert not by_name["age"].drifted
    assert by_name["income"].threshold == 0.05


def test_html_report_is_written_under_new_directories(reference, drifted, tmp_path):
    target = tmp_path / "reports" / "nested" / "drift.html"

    result = drift(reference, drifted, html_path=target)

    assert result.html_path == target
    assert target.is_file() and target.stat().st_size > 0
    assert "<html" in target.read_text(encoding="utf-8").lower()


def test_report_that_evidently_silently_fails_to_write_raises(reference, same_distribution, tmp_path, monkeypatch):
    target = tmp_path / "drift.html"
    target.write_text("stale report from an earlier run")
    monkeypatch.setattr(Snapshot, "save_html", lambda self, filename: None)

    with pytest.raises(RuntimeError, match="drift.html"):
        drift(reference, same_distribution, html_path=target)


def test_missing_column_is_named_in_the_error(reference, same_distribution):
    with pytest.raises(ValueError, match="loyalty_score"):
        compute_drift(
            reference,
            same_distribution,
            numeric_columns=["age", "loyalty_score"],
            categorical_columns=CATEGORICAL,
        )


def test_unknown_method_is_named_and_only_methods_for_that_kind_are_listed(reference, same_distribution):
    with pytest.raises(ValueError, match="bhattacharyya") as err:
        drift(reference, same_distribution, numeric_method="bhattacharyya")
    message = str(err.value)
    assert "wasserstein" in message and "ks" in message
    # Evidently's own error lists every registered test; ours lists what fits numeric columns.
    assert "chisquare" not in message and "text_content" not in message


def test_method_that_does_not_fit_the_column_kind_is_rejected(reference, same_distribution):
    with pytest.raises(ValueError, match="categorical drift method 'ks'"):
        drift(reference, same_distribution, categorical_method="ks")


@pytest.mark.filterwarnings("ignore::UserWarning")  # scipy's anderson_ksamp p-value capping notes
@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_table_agrees_with_evidentlys_own_verdict(method):
    """Guards the direction table against an Evidently upgrade that changes what a score means."""
    rng = np.random.default_rng(7)
    n = 300
    samples = {
        ColumnType.Numerical: tuple(pd.Series(rng.normal(mean, 1, n)) for mean in (0, 0, 1)),
        ColumnType.Categorical: tuple(
            pd.Series(rng.choice(["a", "b"], n, p=p)) for p in ([0.5, 0.5], [0.5, 0.5], [0.2, 0.8])
        ),
    }
    kinds = {"numeric": ColumnType.Numerical, "categorical": ColumnType.Categorical}
    threshold = 0.05 if METHODS[method].score == "p_value" else 0.1
    for kind in sorted(METHODS[method].kinds):
        column_type = kinds[kind]
        reference_sample, same, shifted = samples[column_type]
        stattest = get_stattest(reference_sample, same, column_type, method)
        assert column_type in stattest.allowed_feature_types
        for current in (same, shifted):
            verdict = stattest(reference_sample, current, column_type, threshold)
            assert is_drifted(method, verdict.drift_score, threshold) == verdict.drifted, (kind, verdict)
        assert stattest(reference_sample, shifted, column_type, threshold).drifted, (method, kind)


def test_markdown_table_names_every_compared_column(reference, drifted):
    markdown = drift(reference, drifted).to_markdown()

    assert markdown.splitlines()[0] == "| column | kind | method | score | threshold | drifted |"
    for column in NUMERIC + CATEGORICAL:
        assert f"| {column} |" in markdown
    assert "customer_id" not in markdown
