"""The service's own API document (OpenAPI 3.1) and the page at ``/`` that shows it.

BentoML's generated document names internal classes (``...RequestIODescriptor``),
documents ``detail`` as a string where it is a list, has no GET routes and no
examples, and its page is BentoML's README. This one is built from the same pydantic
types the service validates with (``bento/schemas.py``), so it describes exactly what
the service accepts and answers; schemathesis checks that in ``tests/test_serving_fuzz.py``.
"""

from __future__ import annotations

from copy import deepcopy
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bento import schemas
from mlops_assets.config import DatasetConfig

TITLE = "mlops-assets prediction service"
REF = "#/components/schemas/{model}"

ERROR_EXAMPLES = {
    400: {"error": "1 validation error for PredictRequest", "detail": [
        {"type": "literal_error", "loc": ["record", "contract_type"],
         "msg": "Input should be 'month_to_month', 'one_year' or 'two_year'",
         "url": "https://errors.pydantic.dev/2.14/v/literal_error"}]},
    401: {"error": "admin endpoints need 'Authorization: Bearer <MLOPS_ADMIN_TOKEN>'", "detail": []},
    404: {"error": "dataset 'loans' has no 'champion' model in sqlite:///...: materialize its graph first", "detail": []},
    "404-entity": {"error": "dataset 'churn', customer_id 'C9999999': no value for ['tenure_months', ...]: the online "
                            "store holds no features for it (unknown entity, or not materialized yet); send them inline",
                   "detail": [{"type": "unknown_entity", "loc": ["record", "tenure_months"],
                               "msg": "no value for entity_id 'C9999999': the online store holds no features for it; "
                                      "send it inline"}]},
    422: {"error": "dataset 'churn', customer_id 'C0000042': no value for ['data_usage_gb']: its stored values are "
                   "missing or older than their view's TTL; send them inline",
          "detail": [{"type": "missing_values", "loc": ["record", "data_usage_gb"],
                      "msg": "no value for entity_id 'C0000042': missing or older than its view's TTL; send it inline"}]},
    503: {"error": "online store redis://127.0.0.1:6379/0: Redis went away while reading features (...); the previous "
                   "publication is still what is served; send every feature inline meanwhile", "detail": []},
    409: {"error": "dataset 'churn' has no running experiment to stop", "detail": []},
    413: {"error": "request body of 5242880 bytes is over the limit of 1048576 (MLOPS_MAX_BODY_BYTES)", "detail": []},
    415: {"error": "send the body as application/json, not 'multipart/form-data'", "detail": []},
    500: {"error": "the model could not score this record: ValueError: ...", "detail": []},
}
ERROR_MEANINGS = {
    400: "The body (or a query parameter) does not match the schema; `detail` names each offending field.",
    401: "Missing or wrong bearer token (admin endpoints only). Nothing was changed.",
    404: "The dataset is not served, or no prediction matches the id.",
    "404-entity": "The dataset is not served, or the online feature store holds nothing for the record's `entity_id` "
                  "and the record leaves features out (`detail` names them).",
    422: "The record leaves out features that the online store has no fresh value for (missing, or older than "
         "their view's TTL); `detail` names each. Send them inline.",
    503: "The online feature store cannot be reached; records that carry every feature are still scored.",
    409: "The change conflicts with the experiment's state. Nothing was changed.",
    413: "The body is larger than MLOPS_MAX_BODY_BYTES (1 MB by default).",
    415: "The body is declared as something other than application/json.",
    500: "The model raised on this record; the service keeps serving the others.",
}


def package_version() -> str:
    try:
        return version("mlops-assets")
    except PackageNotFoundError:  # running from a Bento without the package metadata
        return "0+unknown"


def description(configs: list[DatasetConfig]) -> str:
    datasets = "\n".join(f"- **{c.name}**: {c.description.strip() or 'no description'} "
                         f"(model `{c.registered_model_name}`, entity id `{c.entity_column}`)" for c in configs)
    return f"""Scores records with each dataset's **champion** model from the MLflow registry, routes a
share of traffic to a **challenger** when an experiment runs (A/B by a sticky hash of the
entity id, or shadow), logs every answer to the prediction log and takes outcomes back on
`POST /feedback`. Every answer names the model version and variant that made it.

Datasets served:

{datasets}

**Types are strict JSON**: numbers are JSON numbers (`"804"` is refused), booleans are
`true`/`false`. Unknown fields are refused. Free-text columns only take values the
champion saw in training.

**Admin endpoints** (`/admin/...`) need `Authorization: Bearer <MLOPS_ADMIN_TOKEN>`;
prediction endpoints are open: put them behind your gateway's authentication
(docs/serving.md, "Security").

Experiments, statistics and the Dagster report: docs/ab-testing.md."""


def _example_request(config: DatasetConfig, record: dict | None) -> dict:
    example = dict(record) if record is not None else synthetic_record(config)
    return {"dataset": config.name, "record": {**example, "entity_id": "example-1"}}


def _by_entity_examples(config: DatasetConfig, record: dict) -> dict[str, dict]:
    """The same dataset by entity id alone, and with one feature overriding the stored value."""
    first = next(iter(k for k in record if k != "entity_id"), None)
    examples = {f"{config.name}: by entity id": {"dataset": config.name, "record": {"entity_id": "example-1"}}}
    if first is not None:
        examples[f"{config.name}: by entity id, {first} sent inline"] = {
            "dataset": config.name, "record": {"entity_id": "example-1", first: record[first]}}
    return examples


def synthetic_record(config: DatasetConfig) -> dict:
    """A record that satisfies the config's types and bounds, for datasets whose version logged no example."""
    record: dict[str, Any] = {}
    for name in config.features:
        if name in config.derived_features:
            continue
        spec = config.columns[name]
        if spec.values:
            record[name] = str(spec.values[0])
        elif spec.type in ("integer", "float"):
            low = spec.min if spec.min is not None else 0
            high = spec.max if spec.max is not None else low + 10
            middle = (low + high) / 2
            record[name] = int(middle) if spec.type == "integer" else round(middle, 2)
        elif spec.type == "boolean":
            record[name] = False
        else:
            record[name] = None if spec.nullable else "unknown"
    return record


def _error_responses(*codes: int | str) -> dict:
    """Documented errors; ``"404-entity"`` is the 404 of the prediction endpoints (dataset or entity unknown)."""
    return {str(code).split("-")[0]: {"description": ERROR_MEANINGS[code], "content": {"application/json": {
        "schema": {"$ref": REF.format(model="ErrorResponse")}, "example": ERROR_EXAMPLES[code]}}} for code in codes}


def _ok(model: str, text: str, example: Any = None) -> dict:
    content: dict[str, Any] = {"schema": {"$ref": REF.format(model=model)}}
    if example is not None:
        content["example"] = example
    return {"200": {"description": text, "content": {"application/json": content}}}


def _body(model: str, examples: dict[str, Any] | None = None) -> dict:
    content: dict[str, Any] = {"schema": {"$ref": REF.format(model=model)}}
    if examples:
        content["examples"] = {name: {"summary": name, "value": value} for name, value in examples.items()}
    return {"required": True, "content": {"application/json": content}}


def _plain(text: str, extra: dict | None = None) -> dict:
    return {"responses": {"200": {"description": text, "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **(extra or {})}, "tags": ["operations"]}


def build_document(configs: list[DatasetConfig], examples: dict[str, dict | None],
                   learned: dict[str, dict[str, list[str]]]) -> dict:
    """The OpenAPI document for these datasets; ``examples`` and ``learned`` come from the loaded champions."""
    types = schemas.request_types(configs, learned)
    models: list[tuple[type[BaseModel], str]] = [
        (types["predict"], "validation"), (types["batch"], "validation"), (types["feedback"], "validation"),
        (schemas.StartExperiment, "validation"), (schemas.StopExperiment, "validation"),
        (schemas.ReloadRequest, "validation"),
        (schemas.Prediction, "serialization"), (schemas.BatchPrediction, "serialization"),
        (schemas.FeedbackResult, "serialization"), (schemas.ErrorResponse, "serialization"),
        (schemas.ModelsResponse, "serialization"), (schemas.ExperimentReport, "serialization"),
        (schemas.ExperimentState, "serialization"), (schemas.DatasetModels, "serialization"),
    ]
    models += governance_models(types)
    _, definitions = models_json_schema(models, ref_template=REF)
    components = definitions["$defs"]

    full_examples = {c.name: _example_request(c, examples.get(c.name)) for c in configs}
    predict_examples = dict(full_examples)
    for c in configs:
        predict_examples.update(_by_entity_examples(c, full_examples[c.name]["record"]))
    batch_examples = {c.name: {"dataset": c.name, "records": [p["record"], {"entity_id": "example-2"}]} for c, p in
                      ((c, full_examples[c.name]) for c in configs)}
    first = configs[0]
    feedback_examples = {
        "by request id": {"dataset": first.name, "request_id": "7ae5bb2709d741c9be7597ee2c1b3ac1", "outcome": 1},
        "by entity id": {"dataset": first.name, "entity_id": "C0020000", "outcome": True},
    }
    dataset_parameter = {
        "name": "dataset", "in": "query", "required": len(configs) > 1,
        "description": "the dataset" + ("" if len(configs) > 1 else f" (default: {first.name})"),
        "schema": {"type": "string", "enum": [c.name for c in configs]},
    }
    admin = {"security": [{"adminToken": []}], "tags": ["admin"]}
    paths = {
        "/predict": {"post": {
            "operationId": "predict", "tags": ["predictions"], "summary": "Score one record",
            "description": "Routes the record (experiment split by `entity_id`), scores it, logs it and answers. "
                           "**Predicting by entity id**: a record may leave out any feature when it names an "
                           "`entity_id`; what it leaves out is read from the online feature store (the latest "
                           "value per entity, null once older than its view's TTL). Features sent inline win, "
                           "a null included. The log holds the record as scored.",
            "requestBody": _body("PredictRequest", predict_examples),
            "responses": {**_ok("Prediction", "The score, the decision and who made it.", {
                "request_id": "7ae5bb2709d741c9be7597ee2c1b3ac1", "dataset": first.name, "entity_id": "example-1",
                "score": 0.566, "label": 1, "threshold": 0.284, "model_version": "1", "variant": "champion",
                "experiment_id": first.experiment.id if first.experiment else None}),
                          **_error_responses(400, "404-entity", 413, 415, 422, 500, 503)}}},
        "/predict_batch": {"post": {
            "operationId": "predict_batch", "tags": ["predictions"], "summary": f"Score 1 to {schemas.MAX_BATCH} records",
            "description": "Each record is routed and logged on its own (its own request_id). A record the model "
                           "fails on gets `error` and a null score; the others are answered. Records may be given "
                           "by `entity_id` alone (see `/predict`): the batch is read from the online store in one "
                           "call, and a record that cannot be completed refuses the batch, naming each one.",
            "requestBody": _body("BatchRequest", batch_examples),
            "responses": {**_ok("BatchPrediction", "One prediction per record, in order."),
                          **_error_responses(400, "404-entity", 413, 415, 422, 503)}}},
        "/feedback": {"post": {
            "operationId": "feedback", "tags": ["experiments"], "summary": "Record an observed outcome",
            "description": "Attaches the outcome to a request's predictions (its shadow prediction too) or to every "
                           "prediction of an entity so far. Idempotent; a different outcome replaces the earlier one.",
            "requestBody": _body("FeedbackRequest", feedback_examples),
            "responses": {**_ok("FeedbackResult", "How many logged predictions it applies to.",
                                {"dataset": first.name, "matched": 1, "updated": 1}),
                          **_error_responses(400, 404, 413, 415)}}},
        "/models": {"get": {
            "operationId": "models", "tags": ["experiments"], "summary": "Which versions serve each dataset",
            "responses": _ok("ModelsResponse", "Champion, challenger and experiment per dataset (this worker's view).")}},
        "/experiment": {"get": {
            "operationId": "experiment", "tags": ["experiments"], "summary": "Experiment statistics and verdict",
            "description": "Per variant figures, sample-ratio check, lift of the challenger (Welch, confidence "
                           "sequence, Bayesian chance to win, CUPED) and a verdict, for the current phase.",
            "parameters": [dataset_parameter],
            "responses": {**_ok("ExperimentReport", "The report."), **_error_responses(400, 404)}}},
        "/admin/experiment/start": {"post": {
            "operationId": "start_experiment", **admin, "summary": "Start or change an experiment",
            "description": "Unset fields keep the current experiment's values (else the config's declaration). "
                           "Changing the split or the mode starts a new phase.",
            "requestBody": _body("StartExperiment", {"ab 80/20": {"dataset": first.name, "mode": "ab",
                                                                "challenger_percent": 20}}),
            "responses": {**_ok("ExperimentState", "The experiment as it now runs."),
                          **_error_responses(400, 401, 404, 409, 413, 415)}}},
        "/admin/experiment/stop": {"post": {
            "operationId": "stop_experiment", **admin, "summary": "Stop the experiment: the champion answers all",
            "requestBody": _body("StopExperiment", {"stop": {"dataset": first.name, "note": "challenger won"}}),
            "responses": {**_ok("ExperimentState", "The stopped experiment."),
                          **_error_responses(400, 401, 404, 409, 413, 415)}}},
        "/admin/reload": {"post": {
            "operationId": "reload", **admin, "summary": "Re-read the registry aliases now",
            "description": "This worker loads any version whose alias moved, in the background, and swaps it in "
                           "atomically; the other workers follow within a second.",
            "requestBody": _body("ReloadRequest", {"reload": {"dataset": first.name}}),
            "responses": {**_ok("DatasetModels", "What this worker serves after the reload."),
                          **_error_responses(400, 401, 404, 413, 415)}}},
        "/livez": {"get": {"operationId": "livez", "summary": "Liveness probe (BentoML)", **_plain("Alive.")}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "Readiness probe (BentoML)", **_plain(
            "Ready: the service has started.", {"503": {"description": "Not ready yet.",
                                                        "content": {"text/plain": {"schema": {"type": "string"}}}}})}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                             "description": "BentoML's request metrics and ours: `mlops_predictions_total`, "
                                            "`mlops_prediction_errors_total`, `mlops_prediction_latency_seconds`, "
                                            "`mlops_prediction_score`, labelled by dataset, variant and model version.",
                             **_plain("Prometheus text format.")}},
    }
    paths.update(governance_paths(configs, predict_examples))
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": package_version(), "description": description(configs),
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "tags": [
            {"name": "predictions", "description": "Score records with the served models."},
            {"name": "experiments", "description": "Outcomes, served versions and experiment statistics."},
            {"name": "admin", "description": "Change experiments and reload models (bearer token)."},
            {"name": "governance", "description": "Explanations in plain words; approvals with roles "
                                                  "(personal token). docs/governance.md."},
            {"name": "operations", "description": "Probes and metrics."},
        ],
        "paths": paths,
        "components": {"schemas": deepcopy(components), "securitySchemes": {"adminToken": {
            "type": "http", "scheme": "bearer", "description": "the value of MLOPS_ADMIN_TOKEN on the server"},
            **GOVERNANCE_SECURITY}},
    }


# Governance: POST /explain, GET and POST /approvals/{model}/{version} ---------------------------

GOVERNANCE_SECURITY = {"personalToken": {
    "type": "http", "scheme": "bearer",
    "description": "your personal token from `mlops governance new-token NAME` (the roles file holds its hash)"}}

GOVERNANCE_ERRORS = {
    400: ("The body does not match the schema (`detail` names each field), or it is ambiguous (you hold several "
          "deciding roles: give `role`). Nothing was recorded.",
          {"error": "1 validation error for ApprovalRequest", "detail": [
              {"type": "literal_error", "loc": ["decision"], "msg": "Input should be 'approve' or 'reject'",
               "url": "https://errors.pydantic.dev/2.14/v/literal_error"}]}),
    401: ("No personal token, or one that matches no one in the roles file. Nothing was recorded.",
          {"error": "cannot approve churn_model v1: the token matches no one in configs/governance/roles.yaml; "
                    "nothing recorded", "detail": []}),
    403: ("The person may not make this decision: no deciding role, a role they do not hold, or a version they "
          "trained when the roles file forbids approving one's own model. Nothing was recorded.",
          {"error": "cannot approve churn_model v1: dave trained this version (as 'dave') and the roles file forbids "
                    "approving one's own model (allow_self_approval: false); nothing recorded", "detail": []}),
    404: ("No such model (dataset or registered model name) or version.",
          {"error": "churn_model has no version '9' (versions: 1, 2); nothing recorded", "detail": []}),
    409: ("The dataset has no roles file, so no one decides on its versions. Nothing was recorded.",
          {"error": "cannot approve churn_model v1: dataset 'churn' has no roles file (governance.roles_file in its "
                    "config), so no one can approve; nothing recorded", "detail": []}),
    503: ("The approval ledger has been tampered with, cannot be reached, or the roles file cannot be read. "
          "Nothing was recorded.",
          {"error": "the approval ledger sqlite:///.../approvals.db has been tampered with: record #2 (carol approves "
                    "churn_model v1) was altered after it was written. Nothing is recorded or promoted until it is "
                    "restored from a backup", "detail": []}),
}
EXPLAIN_ERRORS = {
    404: ("The dataset is not served, or its champion has no explanation background yet (materialize "
          "`<dataset>/explanations`).",
          {"error": "churn_model v2 has no explanation background yet: materialize churn/explanations for it "
                    "(`mlops materialize`)", "detail": []}),
}


def _governance_errors(*codes: int, table: dict | None = None) -> dict:
    table = table or GOVERNANCE_ERRORS
    return {str(code): {"description": table[code][0], "content": {"application/json": {
        "schema": {"$ref": REF.format(model="ErrorResponse")}, "example": table[code][1]}}} for code in codes}


def governance_models(types: dict[str, Any]) -> list[tuple[type[BaseModel], str]]:
    return [(schemas.explain_request_type(types["predict"]), "validation"), (schemas.ApprovalRequest, "validation"),
            (schemas.Explanation, "serialization"), (schemas.ApprovalRecorded, "serialization"),
            (schemas.ApprovalStatus, "serialization")]


def governance_paths(configs: list[DatasetConfig], predict_examples: dict[str, dict]) -> dict:
    first = configs[0]
    model_parameter = {"name": "model", "in": "path", "required": True,
                       "description": "the registered model (`churn_model`) or its dataset (`churn`)",
                       "schema": {"type": "string", "enum": sorted(
                           {n for c in configs for n in (c.name, c.registered_model_name)})}}
    version_parameter = {"name": "version", "in": "path", "required": True,
                         "description": "the registry version", "schema": {"type": "string", "pattern": "^[0-9]{1,9}$"},
                         "example": "1"}
    decision_examples = {
        "approve": {"decision": "approve", "comment": "metrics and card reviewed"},
        "reject": {"decision": "reject", "comment": "age bands need a second look"},
        "in one of several roles": {"decision": "approve", "comment": "fairness within limits", "role": "risk_officer"},
    }
    explain = {
        "operationId": "explain", "tags": ["governance"], "summary": "Explain one record in plain words",
        "description": "The champion's score for the record, taken apart into what each raw input added to the "
                       "average training score (sampled Shapley values; they add up to score - baseline), and a "
                       "sentence a non-technical reader follows. Same body and checks as `POST /predict`; nothing is "
                       "written to the prediction log. About 0.3 s per record; one at a time per worker.",
        "requestBody": _body("ExplainRequest", predict_examples),
        "responses": {**_ok("Explanation", "Score, contributions and the sentence.", {
            "dataset": first.name, "entity_id": "example-1", "model_version": "1", "alias": "champion",
            "score": 0.566, "label": 1, "threshold": 0.284, "baseline": 0.221,
            "contributions": [{"feature": "tenure_months", "value": 5, "contribution": 0.18},
                              {"feature": "contract_type", "value": "month_to_month", "contribution": 0.11}],
            "sentence": "The score is high: 0.57 against the decision threshold 0.28 (the average over training rows "
                        "is 0.22). It is higher than average mainly because tenure_months is 5 (+0.18) and "
                        "contract_type is month_to_month (+0.11).",
            "method": "Shapley values of the raw input columns, sampled: 16 feature orderings against up to 64 "
                      "training rows (docs/governance.md, Explanations)"}),
            **_error_responses(400, 413, 415), **_governance_errors(404, table=EXPLAIN_ERRORS)}}
    return {
        "/explain": {"post": explain},
        "/approvals/{model}/{version}": {
            "parameters": [model_parameter, version_parameter],
            "get": {
                "operationId": "approval_state", "tags": ["governance"], "summary": "A version's approval state",
                "description": "Required roles, who approved (each person's latest decision on the version's current "
                               "content), what is missing, who rejected, every decision, and whether the ledger is "
                               "intact. Open, like `/models`.",
                "responses": {**_ok("ApprovalStatus", "The state."), **_governance_errors(404, 503)}},
            "post": {
                "operationId": "decide", "tags": ["governance"], "security": [{"personalToken": []}],
                "summary": "Approve or reject a version as yourself",
                "description": "What `mlops approve|reject MODEL VERSION --comment ...` does: the same checks, then "
                               "one append to the hash-chained ledger (committed before the answer), the MLflow tags, "
                               "the Dagster event and the model card. Any refusal records nothing.",
                "requestBody": _body("ApprovalRequest", decision_examples),
                "responses": {**_ok("ApprovalRecorded", "Recorded; the version's state after it."),
                              **_governance_errors(400, 401, 403, 404, 409, 503),
                              **_error_responses(413, 415)}}},
    }


PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>{title}</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
    <link rel="icon" type="image/png" href="./static_content/favicon-light-32x32.png" sizes="32x32" />
    <style>body {{ margin: 0; }} .swagger-ui .topbar {{ display: none; }}</style>
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script>
      window.onload = function () {{
        window.ui = SwaggerUIBundle({{
          url: "./docs.json", dom_id: "#swagger-ui", deepLinking: true,
          presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout",
          defaultModelsExpandDepth: 0, displayRequestDuration: true,
        }});
      }};
    </script>
  </body>
</html>
"""


def page() -> str:
    return PAGE.format(title=TITLE)
