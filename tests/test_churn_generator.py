"""The churn generator is the demo's only data source: it must honour configs/churn.yaml,
be reproducible, look like real churn data, and drift only in the way it is asked to."""

from pathlib import Path

import hashlib

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from mlops_assets.data.churn_generator import generate_churn

CONFIG_PATH = Path(__file__).resolve().parents[1] / "configs" / "churn.yaml"
CHURN_CONFIG = yaml.safe_load(CONFIG_PATH.read_text())
DECLARED_COLUMNS = CHURN_CONFIG["columns"]
TARGET = CHURN_CONFIG["target"]
INPUT_COLUMNS = [name for name in DECLARED_COLUMNS if name != TARGET]
CATEGORICAL_FEATURES = ["contract_type", "payment_method", "region"]

EXPECTED_DTYPE_BY_TYPE = {
    "string": np.dtype(object),
    "categorical": np.dtype(object),
    "datetime": np.dtype("datetime64[ns]"),
    "boolean": np.dtype(bool),
    "integer": np.dtype("int64"),
    "float": np.dtype("float64"),
}


def assert_matches_declared_columns(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(DECLARED_COLUMNS)
    for name, spec in DECLARED_COLUMNS.items():
        column = frame[name]
        assert column.dtype == EXPECTED_DTYPE_BY_TYPE[spec["type"]], name
        assert not isinstance(column.dtype, pd.CategoricalDtype), name
        assert column.notna().all(), f"{name} has nulls"
        if spec["type"] in {"string", "categorical"}:
            assert column.map(type).eq(str).all(), f"{name} holds non-str values"
        if "values" in spec:
            assert set(column.unique()) == set(spec["values"]), name
        if "min" in spec:
            assert column.min() >= spec["min"], name
        if "max" in spec:
            assert column.max() <= spec["max"], name
        if spec.get("unique"):
            assert column.is_unique, name


def test_same_seed_gives_identical_rows():
    first = generate_churn(5_000, seed=11, covariate_drift=0.4, concept_drift=0.3)
    second = generate_churn(5_000, seed=11, covariate_drift=0.4, concept_drift=0.3)
    pd.testing.assert_frame_equal(first, second, check_exact=True)
    assert pd.util.hash_pandas_object(first).equals(pd.util.hash_pandas_object(second))


def test_different_seed_gives_different_rows():
    first = generate_churn(5_000, seed=11)
    second = generate_churn(5_000, seed=12)
    for name in ["event_time", "contract_type", "monthly_charges", "churned"]:
        assert not first[name].equals(second[name]), name


def test_zero_drift_is_the_undrifted_default():
    pd.testing.assert_frame_equal(
        generate_churn(3_000, seed=5),
        generate_churn(3_000, seed=5, covariate_drift=0.0, concept_drift=0.0),
        check_exact=True,
    )


def test_rows_for_existing_arguments_never_change():
    """Benchmarks and demos compare runs over time: the same arguments must keep giving the same bytes."""
    frame = generate_churn(2_000, seed=7, covariate_drift=0.5, concept_drift=0.5)
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame).values.tobytes()).hexdigest()
    assert digest == "f0acb5ca22f5b84209b63d8ba9afa0b26df6a33d67c032327385e68b99356158"


def test_single_column_shifts_move_only_the_named_columns_by_the_asked_amount():
    base = generate_churn(50_000, seed=41)
    moved = generate_churn(50_000, seed=41, mean_shift={"monthly_charges": 0.2, "support_calls_90d": 0.2},
                           share_shift={"region": ("west", 0.10), "has_autopay": (True, -0.10)})
    changed = ["monthly_charges", "support_calls_90d", "region", "has_autopay"]
    pd.testing.assert_frame_equal(base.drop(columns=changed), moved.drop(columns=changed), check_exact=True)
    for column in ("monthly_charges", "support_calls_90d"):
        shift_in_sds = (moved[column].mean() - base[column].mean()) / base[column].std()
        assert shift_in_sds == pytest.approx(0.2, abs=0.01), column
    assert moved["support_calls_90d"].dtype == np.int64
    west_share = (moved["region"] == "west").mean() - (base["region"] == "west").mean()
    assert west_share == pytest.approx(0.10, abs=0.005)
    # the other regions give up their share in proportion
    for region in ("north", "south", "east"):
        ratio = (moved["region"] == region).mean() / (base["region"] == region).mean()
        assert ratio == pytest.approx(1 - 0.10 / 0.8, rel=0.03), region
    assert moved["has_autopay"].mean() - base["has_autopay"].mean() == pytest.approx(-0.10, abs=0.005)
    assert_matches_declared_columns(moved)


def test_columns_dtypes_values_and_ranges_match_the_config():
    assert_matches_declared_columns(generate_churn(20_000, seed=CHURN_CONFIG["source"]["seed"]))


def test_strongly_drifted_data_still_matches_the_config():
    assert_matches_declared_columns(generate_churn(20_000, seed=3, covariate_drift=3.0, concept_drift=3.0))


def test_customer_ids_are_numbered_in_event_order():
    frame = generate_churn(1_500, seed=1)
    assert frame["customer_id"].str.fullmatch(r"C\d{7}").all()
    assert frame["customer_id"].iloc[0] == "C0000001"
    assert frame["customer_id"].iloc[-1] == "C0001500"


def test_event_times_are_sorted_and_within_the_window():
    frame = generate_churn(10_000, seed=2, start="2024-03-01", end="2024-06-30")
    event_time = frame["event_time"]
    assert event_time.is_monotonic_increasing
    assert event_time.min() >= pd.Timestamp("2024-03-01")
    assert event_time.max() <= pd.Timestamp("2024-06-30")
    assert event_time.dt.month.nunique() == 4  # spread over the window, not bunched


def test_signup_date_is_never_after_event_time_and_matches_tenure():
    frame = generate_churn(10_000, seed=2)
    assert (frame["signup_date"] <= frame["event_time"]).all()
    tenure_from_dates = (frame["event_time"] - frame["signup_date"]).dt.days / 30.44
    assert np.abs(tenure_from_dates - frame["tenure_months"]).max() < 0.1


def test_churn_rate_is_between_15_and_35_percent():
    for seed in (7, 8, 9):
        churn_rate = generate_churn(20_000, seed=seed)["churned"].mean()
        assert 0.15 <= churn_rate <= 0.35, (seed, churn_rate)


def test_churn_follows_contract_payment_support_and_engagement():
    frame = generate_churn(100_000, seed=4)
    churn_by_contract = frame.groupby("contract_type")["churned"].mean()
    assert churn_by_contract["month_to_month"] > 2 * churn_by_contract["one_year"]
    assert churn_by_contract["one_year"] > churn_by_contract["two_year"]
    churn_by_payment = frame.groupby("payment_method")["churned"].mean()
    assert churn_by_payment.idxmax() == "electronic_check"
    churn_by_autopay = frame.groupby("has_autopay")["churned"].mean()
    assert churn_by_autopay[False] > churn_by_autopay[True] + 0.05
    assert frame["churned"].corr(frame["support_calls_90d"]) > 0.05
    assert frame["churned"].corr(frame["late_payments_12m"]) > 0.05
    assert frame["churned"].corr(frame["logins_last_30d"]) < -0.05
    assert frame["churned"].corr(frame["avg_session_minutes"]) < -0.05
    assert frame["churned"].corr(frame["tenure_months"]) < -0.1


def test_month_to_month_customers_have_short_tenure():
    tenure_by_contract = generate_churn(50_000, seed=4).groupby("contract_type")["tenure_months"].median()
    assert tenure_by_contract["month_to_month"] < tenure_by_contract["one_year"] < tenure_by_contract["two_year"]


def test_total_charges_track_monthly_charges_times_tenure():
    frame = generate_churn(20_000, seed=4)
    expected = frame["monthly_charges"] * frame["tenure_months"]
    assert frame["total_charges"].corr(expected) > 0.98
    assert (frame.loc[frame["tenure_months"] == 0, "total_charges"] == 0).all()


def test_age_and_region_shift_data_usage_mildly():
    usage = generate_churn(100_000, seed=4)
    usage_by_age = usage.groupby("age_band")["data_usage_gb"].mean()
    assert 1.3 < usage_by_age["18-24"] / usage_by_age["65+"] < 4
    usage_by_region = usage.groupby("region")["data_usage_gb"].mean()
    assert 1.05 < usage_by_region.max() / usage_by_region.min() < 1.5


def test_gender_has_at_most_a_tiny_effect_on_churn():
    churn_by_gender = generate_churn(400_000, seed=4).groupby("gender")["churned"].mean()
    assert abs(churn_by_gender["female"] - churn_by_gender["male"]) < 0.015
    assert abs(churn_by_gender["nonbinary"] - churn_by_gender["female"]) < 0.04


def test_covariate_drift_raises_charges_and_month_to_month_share():
    baseline = generate_churn(50_000, seed=21)
    drifted = generate_churn(50_000, seed=22, covariate_drift=1.0)
    assert drifted["monthly_charges"].mean() > 1.10 * baseline["monthly_charges"].mean()
    baseline_share = (baseline["contract_type"] == "month_to_month").mean()
    drifted_share = (drifted["contract_type"] == "month_to_month").mean()
    assert drifted_share > baseline_share + 0.15
    assert drifted["data_usage_gb"].mean() > 1.15 * baseline["data_usage_gb"].mean()
    assert drifted["logins_last_30d"].mean() < 0.85 * baseline["logins_last_30d"].mean()


def test_zero_covariate_drift_keeps_inputs_statistically_equal_across_seeds():
    baseline = generate_churn(50_000, seed=21)
    other_seed = generate_churn(50_000, seed=22, covariate_drift=0.0)
    charges_ratio = other_seed["monthly_charges"].mean() / baseline["monthly_charges"].mean()
    assert abs(charges_ratio - 1) < 0.02
    baseline_share = (baseline["contract_type"] == "month_to_month").mean()
    other_share = (other_seed["contract_type"] == "month_to_month").mean()
    assert abs(other_share - baseline_share) < 0.02
    usage_ratio = other_seed["data_usage_gb"].mean() / baseline["data_usage_gb"].mean()
    assert abs(usage_ratio - 1) < 0.03


def test_concept_drift_leaves_inputs_identical_but_changes_churn_given_inputs():
    for covariate_drift in (0.0, 1.0):
        stable = generate_churn(50_000, seed=31, covariate_drift=covariate_drift)
        drifted = generate_churn(50_000, seed=31, covariate_drift=covariate_drift, concept_drift=1.0)
        pd.testing.assert_frame_equal(stable[INPUT_COLUMNS], drifted[INPUT_COLUMNS], check_exact=True)
        assert not stable[TARGET].equals(drifted[TARGET])

        many_calls = stable["support_calls_90d"] >= 3
        assert drifted.loc[many_calls, TARGET].mean() > stable.loc[many_calls, TARGET].mean() + 0.08

        def contract_gap(frame: pd.DataFrame) -> float:
            churn_by_contract = frame.groupby("contract_type")[TARGET].mean()
            return churn_by_contract["month_to_month"] - churn_by_contract["two_year"]

        assert contract_gap(drifted) < contract_gap(stable) - 0.03


def test_gradient_boosting_holdout_auc_is_realistic():
    frame = generate_churn(20_000, seed=7)
    features = frame[CHURN_CONFIG["features"]].copy()
    for name in CATEGORICAL_FEATURES:
        features[name] = features[name].astype("category")
    train_rows = int(len(frame) * 0.7)  # rows are sorted by event_time: train on the past
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    model.fit(features.iloc[:train_rows], frame[TARGET].iloc[:train_rows])
    scores = model.predict_proba(features.iloc[train_rows:])[:, 1]
    auc = roc_auc_score(frame[TARGET].iloc[train_rows:], scores)
    assert 0.72 <= auc <= 0.93, auc


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"rows": 0}, "rows"),
        ({"rows": -10}, "rows"),
        ({"rows": 10, "start": "2025-06-01", "end": "2025-06-01"}, "after start"),
        ({"rows": 10, "start": "2025-06-01", "end": "2025-01-01"}, "after start"),
        ({"rows": 10, "start": "not a date"}, "dates"),
        ({"rows": 10, "covariate_drift": -0.1}, "covariate_drift"),
        ({"rows": 10, "concept_drift": -1.0}, "concept_drift"),
        ({"rows": 10, "covariate_drift": float("nan")}, "covariate_drift"),
        ({"rows": 10, "mean_shift": {"region": 0.2}}, "mean_shift names 'region'"),
        ({"rows": 10, "mean_shift": {"monthly_charges": float("inf")}}, "finite number"),
        ({"rows": 10, "share_shift": {"monthly_charges": ("a", 0.1)}}, "share_shift names 'monthly_charges'"),
        ({"rows": 10, "share_shift": {"region": ("central", 0.1)}}, "'central' is not one of"),
        ({"rows": 10, "share_shift": {"region": "west"}}, "must be \\(category, points\\)"),
    ],
)
def test_bad_arguments_raise_value_error(arguments, message):
    with pytest.raises(ValueError, match=message):
        generate_churn(**arguments)
