"""Feature engineering and the time-based split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from mlops_assets.config import ConfigError, load_dataset_config
from mlops_assets.data.churn_generator import generate_churn
from mlops_assets.data.sources import load_source
from mlops_assets.features.definitions import validate as validate_features
from mlops_assets.features.engineering import build_feature_table, derive_features
from mlops_assets.features.training_set import binary_target, split_frame, split_summary, time_split
from mlops_assets.settings import PROJECT_ROOT
from tests.datasets import LOANS_CONFIG, make_loans, write_loans

CHURN = load_dataset_config(PROJECT_ROOT / "configs" / "churn.yaml")


def test_derived_features_follow_their_expressions_and_division_by_zero_is_missing():
    rows = pd.DataFrame({"total_charges": [100.0, 50.0], "tenure_months": [4, -1],
                         "support_calls_90d": [2, 1], "logins_last_30d": [0, 9]})
    derived = derive_features(rows, CHURN)
    assert derived["charges_per_tenure_month"].iloc[0] == pytest.approx(20.0)
    assert np.isnan(derived["charges_per_tenure_month"].iloc[1])  # 50 / 0
    assert derived["support_calls_per_login"].tolist() == [2.0, 0.1]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("income / nonexistent", "reads undeclared columns ['nonexistent']"),
        ("__import__('os').system('true')", "only ['abs', 'exp', 'log', 'log1p', 'maximum', 'minimum', 'sqrt'] may be called"),
        ("income.real", "uses Attribute"),
        ("income +", "is not an expression"),
        ("income * 'x'", "is not a number"),
    ],
    ids=["unknown-column", "import", "attribute", "syntax", "string"],
)
def test_a_bad_derived_expression_is_refused_when_the_feature_system_reads_the_config(tmp_path, expression, message):
    path = tmp_path / "loans.yaml"
    path.write_text(yaml.safe_dump({**LOANS_CONFIG, "derived_features": {"bad": expression}}))
    (tmp_path / "loans.csv").write_text(",".join(LOANS_CONFIG["columns"]) + "\n")
    config = load_dataset_config(path)  # config.py only parses; the feature system owns expressions
    with pytest.raises(ConfigError, match="derived feature 'bad'") as error:
        validate_features(config)
    assert message in str(error.value) and str(path) in str(error.value)


def test_derived_features_agree_with_pandas_eval_and_allow_numpy_functions():
    rows = generate_churn(200, seed=4)
    derived = derive_features(rows, CHURN)
    for name, expression in CHURN.derived_features.items():
        expected = rows.eval(expression).replace([np.inf, -np.inf], np.nan)
        np.testing.assert_allclose(derived[name], expected)
    config = CHURN.model_copy(update={"derived_features": {"log_charges": "log1p(monthly_charges) * (tenure_months > 3)"}})
    np.testing.assert_allclose(derive_features(rows, config)["log_charges"],
                               np.log1p(rows["monthly_charges"]) * (rows["tenure_months"] > 3))


def test_feature_table_holds_ids_sensitive_attributes_features_and_target():
    raw = generate_churn(300, seed=2)
    table = build_feature_table(raw, CHURN)
    assert table.columns[:2].tolist() == ["customer_id", "event_time"]
    assert {"gender", "age_band", "region", "churned", *CHURN.model_features} <= set(table.columns)
    assert table["customer_id"].tolist() == raw["customer_id"].tolist()


def test_training_row_never_comes_after_a_validation_or_test_row():
    table = build_feature_table(generate_churn(2000, seed=5), CHURN)
    split = time_split(table.sample(frac=1, random_state=0), CHURN)  # shuffled input
    train, validation, test = (split_frame(split, s) for s in ("train", "validation", "test"))
    assert train["event_time"].max() <= validation["event_time"].min()
    assert validation["event_time"].max() <= test["event_time"].min()
    assert (len(train), len(validation), len(test)) == (1400, 300, 300)


def test_split_summary_reports_rows_time_range_and_positive_rate():
    table = build_feature_table(generate_churn(1000, seed=5), CHURN)
    summary = split_summary(time_split(table, CHURN), CHURN)
    assert summary["rows"].sum() == 1000
    assert summary.loc["train", "to"] <= summary.loc["test", "from"]
    assert 0 < summary.loc["test", "positive_rate"] < 1


def test_without_event_time_the_split_follows_row_order(tmp_path):
    config = load_dataset_config(write_loans(tmp_path, make_loans(200)) / "loans.yaml")
    raw = load_source(config)
    split = time_split(build_feature_table(raw, config), config)
    assert split_frame(split, "test")["row_id"].min() > split_frame(split, "train")["row_id"].max()
    assert set(binary_target(split, config)) == {0, 1}  # "no"/"yes" -> 0/1


def test_a_source_lacking_declared_columns_is_refused_by_name(tmp_path):
    config = load_dataset_config(write_loans(tmp_path, make_loans(50).drop(columns="purpose")) / "loans.yaml")
    with pytest.raises(Exception, match=r"lacks declared columns \['purpose'\]"):
        load_source(config)


def test_too_few_rows_to_split_is_a_clear_error():
    with pytest.raises(ValueError, match="too few to split"):
        time_split(build_feature_table(generate_churn(5), CHURN), CHURN)
