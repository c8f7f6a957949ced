"""Governance through the real service (`bentoml serve`): explanations on request, approvals with a personal token.

The churn home is a copy of the session's materialized one (its registry, reports and
Dagster instance), so decisions, tags and re-rendered cards stay in this module; the
configs beside it name a roles file, and the ledger is this module's own.
"""

from __future__ import annotations

import shutil
import sqlite3

import dagster as dg
import httpx
import mlflow
import pytest
import yaml

from mlops_assets.config import load_dataset_configs
from mlops_assets.governance.approvals import PromotionRefused, require_promotion_allowed, version_approval_state
from mlops_assets.governance.ledger import DecisionLedger, ledger_url
from mlops_assets.serving import running_server
from mlops_assets.settings import use_home
from tests.conftest import copy_home
from tests.test_governance_approvals import TOKENS, roles_document

pytestmark = pytest.mark.slow


def governed_configs(source_configs, folder):
    """The churn config and its card text, with ``governance.roles_file`` naming the tests' roles file."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load((source_configs / "churn.yaml").read_text())
    raw.setdefault("governance", {})["roles_file"] = "governance/roles.yaml"
    (folder / "churn.yaml").write_text(yaml.safe_dump(raw))
    shutil.copy(source_configs / "churn.card.md", folder)
    (folder / "governance").mkdir(exist_ok=True)
    (folder / "governance" / "roles.yaml").write_text(yaml.safe_dump(roles_document()))
    return folder


@pytest.fixture(scope="module")
def governed_home(materialized_churn, tmp_path_factory):
    settings, _ = materialized_churn
    folder = tmp_path_factory.mktemp("governance-http")
    home = copy_home(settings.home, folder / "home")
    return home, governed_configs(settings.configs, folder / "configs")


@pytest.fixture(scope="module")
def server(governed_home):
    home, configs = governed_home
    with use_home(home, configs) as settings:
        config = load_dataset_configs(settings.configs)[0]
        with running_server(settings, [config]) as running:
            yield running, settings, config


def post(server, route: str, body=None, token: str | None = None, content: bytes | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if content is not None:
        headers["content-type"] = "application/json"
        return httpx.post(f"{server[0].url}{route}", content=content, headers=headers, timeout=60)
    return httpx.post(f"{server[0].url}{route}", json=body, headers=headers, timeout=60)


def get(server, route: str) -> httpx.Response:
    return httpx.get(f"{server[0].url}{route}", timeout=60)


def recorded(settings) -> int:
    ledger = DecisionLedger(ledger_url(settings))
    try:
        return len(ledger.records())
    finally:
        ledger.close()


def newest_row(settings, config):
    """The row `mlops explain churn --entity ID` explains: an entity's newest row in the newest training set."""
    from mlops_assets.governance.commands import entity_row
    from mlops_assets.pipeline.runs import load_definitions

    frame = load_definitions(settings).load_asset_value([config.name, "training_set"], instance=dg.DagsterInstance.get())
    entity = str(frame.sort_values(config.time_column)[config.entity_column].iloc[-1])
    return entity, entity_row(settings, config, entity)


# Explanations ---------------------------------------------------------------------------------

def test_an_explanation_over_http_is_the_cli_explanation_of_the_champion_and_its_score_is_the_prediction(server):
    import pandas as pd

    from mlops_assets.governance.assessment import load_background
    from mlops_assets.governance.explanations import explain_record, raw_inputs
    from mlops_assets.training.registry import load_champion

    _, settings, config = server
    entity, row = newest_row(settings, config)
    record = {c: (v.item() if hasattr(v, "item") else v) for c, v in row[raw_inputs(config)].items()}
    answer = post(server, "/explain", {"dataset": "churn", "record": {**record, "entity_id": entity}})
    assert answer.status_code == 200, answer.text
    explained = answer.json()
    champion = load_champion(settings, config)
    cli = explain_record(champion.pipeline, config, champion.decision_threshold, row,
                         load_background(settings, config, champion.version), entity)
    assert (explained["model_version"], explained["alias"], explained["entity_id"]) == ("1", "champion", entity)
    assert explained["sentence"] == cli.sentence
    assert {c["feature"]: c["contribution"] for c in explained["contributions"]} == pytest.approx(cli.contributions,
                                                                                                   abs=1e-12)
    assert [c["feature"] for c in explained["contributions"]] == sorted(
        cli.contributions, key=lambda c: -abs(cli.contributions[c]))  # largest effect first
    assert {c["feature"]: c["value"] for c in explained["contributions"]} == record
    assert explained["baseline"] + sum(cli.contributions.values()) == pytest.approx(explained["score"], abs=1e-9)
    assert explained["score"] == pytest.approx(float(champion.score(pd.DataFrame([record]))[0]), abs=1e-9)
    predicted = post(server, "/predict", {"dataset": "churn", "record": {**record, "entity_id": entity}}).json()
    assert predicted["score"] == pytest.approx(explained["score"], abs=1e-9)
    assert explained["label"] == predicted["label"] and explained["threshold"] == predicted["threshold"]
    assert explained["sentence"].startswith(f"The score is {'high' if explained['label'] else 'low'}: "
                                            f"{explained['score']:.2f} against the decision threshold")


@pytest.mark.parametrize(("change", "where"), [
    (lambda body: body["record"].pop("tenure_months"), "record.tenure_months"),
    (lambda body: body["record"].update(contract_type="weekly"), "record.contract_type"),
    (lambda body: body["record"].update(monthly_charges="lots"), "record.monthly_charges"),
    (lambda body: body.update(dataset="loans"), "dataset"),
    (lambda body: body.pop("record"), "record"),
], ids=["missing-field", "unknown-category", "wrong-type", "unknown-dataset", "no-record"])
def test_a_bad_record_to_explain_gets_400_naming_the_field(server, change, where):
    from tests.test_serving_http import CHURN_RECORD

    body = {"dataset": "churn", "record": dict(CHURN_RECORD)}
    change(body)
    answer = post(server, "/explain", body)
    assert answer.status_code == 400, answer.text
    assert where in [".".join(map(str, d["loc"])) for d in answer.json()["detail"]]


def test_broken_bodies_to_explain_get_400_not_500(server):
    for content in (b"{not json", b"[]", b""):
        assert post(server, "/explain", content=content).status_code == 400


def test_a_version_without_an_explanation_background_is_refused_with_what_to_materialize(server, tmp_path):
    from mlops_assets.governance.explanations import ExplanationError
    from mlops_assets.governance.online import Explainer, refusal_status
    from mlops_assets.settings import Settings
    from mlops_assets.training.registry import load_champion
    from tests.test_serving_http import CHURN_RECORD

    _, settings, config = server
    elsewhere = Settings(**{**settings.__dict__, "home": tmp_path})  # a home whose reports hold no background
    with pytest.raises(ExplanationError, match="has no explanation background yet: materialize churn/explanations") \
            as refused:
        Explainer(elsewhere).explain(load_champion(settings, config), CHURN_RECORD)
    assert refusal_status(refused.value) == 404


# Approvals ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("token", "body", "status", "message"), [
    (None, {"decision": "approve", "comment": "ok"}, 401, "send your personal token as 'Authorization: Bearer <token>'"),
    ("forged-token", {"decision": "approve", "comment": "ok"}, 401, "the token matches no one in"),
    (TOKENS["alice"], {"decision": "approve", "comment": "ok"}, 403,
     "alice holds ['data_scientist'], and decisions need one of ['reviewer', 'risk_officer']"),
    (TOKENS["bob"], {"decision": "approve", "comment": "ok", "role": "risk_officer"}, 403,
     "bob does not hold the role 'risk_officer'"),
    (TOKENS["dave"], {"decision": "approve", "comment": "ok", "role": "reviewer"}, 403, "dave trained this version (as"),
], ids=["missing-token", "forged-token", "no-deciding-role", "role-not-held", "own-model"])
def test_unauthenticated_and_unauthorized_decisions_are_refused_and_nothing_is_recorded(server, token, body, status,
                                                                                          message):
    _, settings, _ = server
    answer = post(server, "/approvals/churn_model/1", body, token=token)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"] and answer.json()["error"].endswith("nothing recorded")
    if status == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert recorded(settings) == 0


@pytest.mark.parametrize(("route", "body", "status", "message"), [
    ("/approvals/churn_model/9", {"decision": "approve", "comment": "ok"}, 404,
     "churn_model has no version '9' (versions: 1); nothing recorded"),
    ("/approvals/fraud_model/1", {"decision": "approve", "comment": "ok"}, 404, "no served dataset or model is named"),
    ("/approvals/churn/1", {"decision": "maybe", "comment": "ok"}, 400, "1 validation error for ApprovalRequest"),
    ("/approvals/churn/1", {"decision": "approve"}, 400, "1 validation error for ApprovalRequest"),
    ("/approvals/churn/1", {"decision": "approve", "comment": "   "}, 400, "1 validation error for ApprovalRequest"),
    ("/approvals/churn/1", {"decision": "approve", "comment": "ok", "by": "carol"}, 400, "validation error"),
], ids=["unknown-version", "unknown-model", "unknown-decision", "no-comment", "blank-comment", "unknown-field"])
def test_decisions_on_what_does_not_exist_or_with_a_bad_body_are_refused_and_nothing_is_recorded(server, route, body,
                                                                                                  status, message):
    _, settings, _ = server
    answer = post(server, route, body, token=TOKENS["bob"])
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]
    assert recorded(settings) == 0
    assert post(server, route, content=b"{broken", token=TOKENS["bob"]).status_code in (400, 404)


def test_decisions_over_http_reach_the_ledger_mlflow_the_card_and_the_dagster_ui_and_a_rejection_blocks(server):
    _, settings, config = server
    pending = get(server, "/approvals/churn_model/1")
    assert pending.status_code == 200, pending.text
    assert pending.json()["decisions"] == [] and pending.json()["status"] == "pending"
    assert pending.json()["missing"] == ["reviewer", "risk_officer"] and pending.json()["ledger_intact"]

    approved = post(server, "/approvals/churn_model/1", {"decision": "approve", "comment": "metrics reviewed"},
                    token=TOKENS["bob"])
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert (body["recorded"]["person"], body["recorded"]["role"], body["recorded"]["decision"]) == \
        ("bob", "reviewer", "approve")
    assert body["state"]["summary"] == "pending; approved by bob (reviewer); missing: risk_officer"
    assert body["warnings"] == []  # shown in the Dagster UI and on the re-rendered card

    rejected = post(server, "/approvals/churn/1", {"decision": "reject", "comment": "age bands need a second look"},
                    token=TOKENS["carol"])
    assert rejected.status_code == 200, rejected.text
    state = get(server, "/approvals/churn/1").json()
    assert state["status"] == "rejected" and state["approvals"] == {"reviewer": ["bob"]}
    assert [(d["person"], d["comment"]) for d in state["rejections"]] == [("carol", "age bands need a second look")]
    assert [d["seq"] for d in state["decisions"]] == [1, 2]
    with use_home(settings.home, settings.configs):  # what the CLI and promotion read: the same ledger, the same state
        assert state["summary"] == version_approval_state(settings, config, "1").summary()
        with pytest.raises(PromotionRefused, match=r"rejected by carol \(risk_officer\)"):
            require_promotion_allowed(settings, config, "1")
        tags = mlflow.MlflowClient(settings.mlflow_tracking_uri).get_model_version("churn_model", "1").tags
        assert tags["approval.carol"].startswith("reject as risk_officer at ")
        card = (settings.reports / "churn" / "v1" / "model_card.md").read_text()
        assert "| carol | risk_officer | reject | age bands need a second look |" in card
        event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey(["churn", "approvals"]))
        assert event.asset_materialization.metadata["person"].value == "carol"


def test_a_doctored_ledger_refuses_every_decision_with_503_and_the_state_says_so(server, governed_home):
    """Last in the module: it breaks this module's ledger on purpose."""
    _, settings, _ = server
    if recorded(settings) == 0:
        post(server, "/approvals/churn/1", {"decision": "approve", "comment": "ok"}, token=TOKENS["bob"])
    path = ledger_url(settings).removeprefix("sqlite:///")
    database = sqlite3.connect(path)
    database.execute("DROP TRIGGER governance_decisions_no_update")
    database.execute("UPDATE governance_decisions SET comment = 'rubber stamp' WHERE seq = 1")
    database.commit()
    database.close()
    before = recorded(settings)
    refused = post(server, "/approvals/churn/1", {"decision": "approve", "comment": "again"}, token=TOKENS["carol"])
    assert refused.status_code == 503, refused.text
    assert "has been tampered with: record #1" in refused.json()["error"]
    assert recorded(settings) == before
    state = get(server, "/approvals/churn/1").json()
    assert not state["ledger_intact"] and "record #1" in state["ledger_problems"][0]


# The document -------------------------------------------------------------------------------

def test_the_api_page_documents_the_governance_endpoints(server):
    document = get(server, "/docs.json").json()
    explain = document["paths"]["/explain"]["post"]
    assert explain["requestBody"]["content"]["application/json"]["examples"]["churn"]["value"]["dataset"] == "churn"
    decide = document["paths"]["/approvals/{model}/{version}"]["post"]
    assert decide["security"] == [{"personalToken": []}]
    assert set(decide["responses"]) >= {"200", "400", "401", "403", "404", "409", "503"}
    assert "ApprovalStatus" in document["components"]["schemas"]
    assert document["components"]["schemas"]["ChurnExplainRequest"]["properties"]["record"]["$ref"].endswith(
        "/ChurnRecord")


# A crash loses nothing recorded, on SQLite and PostgreSQL ---------------------------------------

def crash(process) -> None:
    """SIGKILL the server and every worker (BentoML starts them in sessions of their own): no shutdown hook runs."""
    import psutil

    family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    for member in family:
        member.kill()
    psutil.wait_procs(family, timeout=10)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_decision_answered_over_http_survives_killing_the_server_at_once(materialized_churn, governed_home, tmp_path,
                                                                           backend):
    import contextlib

    from tests.test_postgres import scratch_database

    home = copy_home(materialized_churn[0].home, tmp_path / "home")  # a registry without this module's decisions
    database = scratch_database("mlops_approvals") if backend == "postgresql" else contextlib.nullcontext(
        f"sqlite:///{tmp_path / 'approvals.db'}")
    with database as url, use_home(home, governed_home[1], MLOPS_APPROVALS_DB=url) as settings:
        config = load_dataset_configs(settings.configs)[0]
        with running_server(settings, [config]) as running:
            refused = httpx.post(f"{running.url}/approvals/churn/1", json={"decision": "approve", "comment": "ok"},
                                 headers={"authorization": "Bearer forged"}, timeout=60)
            assert refused.status_code == 401
            answer = httpx.post(f"{running.url}/approvals/churn/1", json={"decision": "approve", "comment": "ok"},
                                headers={"authorization": f"Bearer {TOKENS['bob']}"}, timeout=60)
            assert answer.status_code == 200, answer.text
            crash(running.process)
        ledger = DecisionLedger(url)
        try:
            records = ledger.records()
            assert [(r.person, r.decision, r.record_hash) for r in records] == [
                ("bob", "approve", answer.json()["recorded"]["record_hash"])]
            assert ledger.verify() == []
        finally:
            ledger.close()
