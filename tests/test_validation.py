"""pandera schemas built from the config reject bad frames and name the offending rows."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_assets.config import load_dataset_config
from mlops_assets.data.churn_generator import generate_churn
from mlops_assets.data.schemas import raw_schema
from mlops_assets.data.validation import DataValidationError, require_valid, validate
from mlops_assets.features.checks import view_schema
from mlops_assets.features.definitions import view_by_name
from mlops_assets.settings import PROJECT_ROOT

CHURN = load_dataset_config(PROJECT_ROOT / "configs" / "churn.yaml")


@pytest.fixture(scope="module")
def churn_rows():
    return generate_churn(500, seed=11)


def test_generated_churn_rows_satisfy_the_raw_schema(churn_rows):
    report = validate(raw_schema(CHURN), churn_rows, "customer_id")
    assert report.passed, report.summary()
    assert report.rows_checked == 500


def test_bad_raw_rows_are_rejected_with_their_entity_ids_and_columns(churn_rows):
    bad = churn_rows.copy()
    bad.loc[5, "monthly_charges"] = -10.0
    bad.loc[9, "contract_type"] = "weekly"
    bad.loc[9, "late_payments_12m"] = 40
    bad.loc[20, "customer_id"] = bad.loc[21, "customer_id"]  # duplicate id
    report = validate(raw_schema(CHURN), bad, "customer_id")
    assert not report.passed
    assert report.failing_columns == ["contract_type", "customer_id", "late_payments_12m", "monthly_charges"]
    ids = set(bad.loc[[5, 9, 20, 21], "customer_id"])
    assert set(report.failing_entities) == ids
    assert set(report.failure_table()["customer_id"].dropna()) == ids
    assert "weekly" in report.summary() and bad.loc[5, "customer_id"] in report.summary()


def test_a_missing_declared_column_is_named(churn_rows):
    report = validate(raw_schema(CHURN), churn_rows.drop(columns="tenure_months"), "customer_id")
    assert not report.passed
    assert "tenure_months" in report.summary()


def test_require_valid_raises_a_message_naming_rows(churn_rows):
    bad = churn_rows.copy()
    bad.loc[3, "age_band"] = "12-17"
    with pytest.raises(DataValidationError, match=bad.loc[3, "customer_id"]):
        require_valid(raw_schema(CHURN), bad, "customer_id", "churn raw rows")


def test_feature_view_rejects_infinite_derived_values(churn_rows):
    billing = view_by_name(CHURN, "billing")
    table = billing.compute(churn_rows).to_pandas()
    assert validate(view_schema(CHURN, billing), table, "customer_id").passed
    table.loc[4, "charges_per_tenure_month"] = np.inf
    report = validate(view_schema(CHURN, billing), table, "customer_id")
    assert report.failing_columns == ["charges_per_tenure_month"]
    assert report.failing_entities == [table.loc[4, "customer_id"]]
