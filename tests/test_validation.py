"""pandera schemas built from the config reject bad frames and name the offending rows."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_assets.config import load_dataset_config
from mlops_assets.data.churn_generator import generate_churn
from mlops_assets.data.raw_checks import check_raw_rows
from mlops_assets.data.validation import DataValidationError, require_valid, validate
from mlops_assets.features.checks import view_schema
from mlops_assets.features.definitions import view_by_name
from mlops_assets.settings import PROJECT_ROOT

CHURN = load_dataset_config(PROJECT_ROOT / "configs" / "churn.yaml")


@pytest.fixture(scope="module")
def churn_rows():
    return generate_churn(500, seed=11)


def test_generated_churn_rows_satisfy_the_raw_checks_and_keep_their_types(churn_rows):
    verdict = check_raw_rows(CHURN, churn_rows)
    assert verdict.passed, verdict.schema.summary()
    assert verdict.schema.rows_checked == 500
    assert (verdict.valid.dtypes == churn_rows.dtypes).all()


def test_bad_raw_rows_are_rejected_with_their_entity_ids_and_columns(churn_rows):
    bad = churn_rows.copy()
    bad.loc[5, "monthly_charges"] = -10.0
    bad.loc[9, "contract_type"] = "weekly"
    bad.loc[9, "late_payments_12m"] = 40
    bad.loc[20, "customer_id"] = bad.loc[21, "customer_id"]  # duplicate id
    report = check_raw_rows(CHURN, bad).schema
    assert not report.passed
    assert report.failing_columns == ["contract_type", "customer_id", "late_payments_12m", "monthly_charges"]
    ids = set(bad.loc[[5, 9, 20, 21], "customer_id"])
    assert set(report.failing_entities) == ids
    assert set(report.failure_table()["customer_id"].dropna()) == ids
    assert "weekly" in report.summary() and bad.loc[5, "customer_id"] in report.summary()


def test_a_missing_declared_column_is_named(churn_rows):
    report = check_raw_rows(CHURN, churn_rows.drop(columns="tenure_months")).schema
    assert not report.passed
    assert report.summary() == "0 of 500 rows invalid in columns ['tenure_months']: tenure_months: column missing"


def test_require_valid_raises_a_message_naming_rows(churn_rows):
    billing = view_by_name(CHURN, "billing")
    table = billing.compute(churn_rows).to_pandas()
    table.loc[3, "region"] = "mars"
    with pytest.raises(DataValidationError, match=table.loc[3, "customer_id"]):
        require_valid(view_schema(CHURN, billing), table, "customer_id", "churn billing features")


def test_feature_view_rejects_infinite_derived_values(churn_rows):
    billing = view_by_name(CHURN, "billing")
    table = billing.compute(churn_rows).to_pandas()
    assert validate(view_schema(CHURN, billing), table, "customer_id").passed
    table.loc[4, "charges_per_tenure_month"] = np.inf
    report = validate(view_schema(CHURN, billing), table, "customer_id")
    assert report.failing_columns == ["charges_per_tenure_month"]
    assert report.failing_entities == [table.loc[4, "customer_id"]]
