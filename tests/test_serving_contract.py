"""The HTTP contract without a server: the API document, strict types, and `mlops experiment` on a home."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from bento import openapi, schemas
from mlops_assets.cli import main
from mlops_assets.config import load_dataset_config
from mlops_assets.settings import PROJECT_ROOT, use_home


@pytest.fixture(scope="module")
def churn():
    return load_dataset_config(PROJECT_ROOT / "configs" / "churn.yaml")


@pytest.fixture(scope="module")
def document(churn):
    return openapi.build_document([churn], {"churn": None}, {})


def test_the_document_is_ours_with_clean_schema_names_and_real_error_bodies(document):
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "mlops-assets prediction service" and document["info"]["version"] != "None"
    assert "churn" in document["info"]["description"] and "BentoML" not in document["info"]["title"]
    names = set(document["components"]["schemas"])
    assert {"PredictRequest", "ChurnRecord", "Prediction", "ErrorResponse", "ErrorDetail", "ExperimentReport"} <= names
    assert not [n for n in names if "IODescriptor" in n or n.startswith("models__")]
    error = document["components"]["schemas"]["ErrorResponse"]
    assert error["properties"]["detail"]["type"] == "array"
    bad = document["paths"]["/predict"]["post"]["responses"]["400"]["content"]["application/json"]
    assert bad["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert set(document["paths"]) >= {"/predict", "/predict_batch", "/feedback", "/models", "/experiment",
                                      "/admin/experiment/start", "/admin/experiment/stop", "/admin/reload"}
    assert "get" in document["paths"]["/models"] and "get" in document["paths"]["/experiment"]
    for path in ("/admin/experiment/start", "/admin/experiment/stop", "/admin/reload"):
        assert document["paths"][path]["post"]["security"] == [{"adminToken": []}]


def test_every_request_example_on_the_page_is_accepted_by_the_service_types(document, churn):
    types = schemas.request_types([churn])
    for path, kind in (("/predict", "predict"), ("/predict_batch", "batch"), ("/feedback", "feedback")):
        examples = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]
        for example in examples.values():
            types[kind].model_validate_json(json.dumps(example["value"]))


def test_the_dataset_is_an_enum_in_the_document_and_column_descriptions_reach_the_fields(churn):
    described = churn.model_copy(update={"columns": {
        **churn.columns, "tenure_months": churn.columns["tenure_months"].model_copy(
            update={"description": "months since the customer signed up"})}})
    document = openapi.build_document([described], {"churn": None}, {})
    record = document["components"]["schemas"]["ChurnRecord"]["properties"]
    assert record["tenure_months"]["description"] == "months since the customer signed up"
    assert record["tenure_months"]["minimum"] == 0 and record["tenure_months"]["maximum"] == 120
    request = document["components"]["schemas"]["ChurnPredictRequest"]["properties"]
    assert request["dataset"]["const"] == "churn"


@pytest.mark.parametrize(("field", "value"), [
    ("tenure_months", "804"), ("tenure_months", True), ("tenure_months", 3.5), ("monthly_charges", "58.5"),
    ("monthly_charges", float("inf")), ("has_autopay", "yes"), ("has_autopay", 0), ("region", None),
])
def test_numbers_and_booleans_must_be_typed_json(churn, field, value):
    record = schemas.record_model(churn)
    valid = {"tenure_months": 5, "monthly_charges": 58.59, "total_charges": 281.36, "data_usage_gb": 13.4,
             "avg_session_minutes": 14.4, "logins_last_30d": 14, "support_calls_90d": 2, "late_payments_12m": 1,
             "has_autopay": False, "contract_type": "month_to_month", "payment_method": "card", "region": "north"}
    assert record.model_validate(valid).tenure_months == 5
    assert record.model_validate({**valid, "tenure_months": 5.0}).tenure_months == 5
    with pytest.raises(ValidationError) as refused:
        record.model_validate_json(json.dumps({**valid, field: value}).replace("Infinity", "1e999"))
    assert refused.value.errors()[0]["loc"] == (field,)


def test_mlops_experiment_starts_changes_reports_and_stops_the_declared_experiment(tmp_path):
    runner = CliRunner()
    with use_home(tmp_path / "home", PROJECT_ROOT / "configs"):
        status = runner.invoke(main, ["experiment", "status", "churn"])
        assert status.exit_code == 0, status.output
        assert "experiment churn-challenger-1 on churn: running, mode ab, split 90/10" in status.output
        changed = runner.invoke(main, ["experiment", "start", "churn", "--split", "80/20", "--note", "more data"])
        assert changed.exit_code == 0, changed.output
        assert "split 80/20" in changed.output and "no version of churn_model holds the alias 'challenger'" in changed.output
        report = json.loads(runner.invoke(main, ["experiment", "status", "churn", "--json"]).output)
        assert report["split"] == "80/20" and report["verdict"]["decision"] == "keep_collecting"
        stopped = runner.invoke(main, ["experiment", "stop", "churn"])
        assert stopped.exit_code == 0 and "stopped" in stopped.output
        again = runner.invoke(main, ["experiment", "stop", "churn"])
        assert again.exit_code == 1 and "has no running experiment to stop" in again.output
        assert "Traceback" not in again.output
        unknown = runner.invoke(main, ["experiment", "status", "loans"])
        assert unknown.exit_code == 1 and "no dataset 'loans'" in unknown.output
        bad_split = runner.invoke(main, ["experiment", "start", "churn", "--split", "70/20"])
        assert bad_split.exit_code == 1 and "add up to 100" in bad_split.output
