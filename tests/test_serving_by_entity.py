"""Predicting by entity id over HTTP: the service fetches what a record leaves out from the online store.

A real BentoML server per backend (SQLite file, Redis at 127.0.0.1:6379 with a key
prefix of this test's own), pointed at the store by ``MLOPS_ONLINE_STORE`` as in
production. The store holds publications made through the store's own interface with
the churn views' real definitions: one customer with fresh values, one whose usage
view is older than its TTL.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from mlops_assets.features.definitions import feature_views
from mlops_assets.features.online_store import OnlineStore, SQLiteOnlineStore
from mlops_assets.serving import running_server
from mlops_assets.serving.prediction_log import connect, read_predictions
from tests.serving_support import churn_record
from tests.test_online_store import redis_store

pytestmark = pytest.mark.slow

FRESH, STALE, NOBODY = "C-fresh", "C-stale-usage", "C-nobody"
USAGE = ["data_usage_gb", "avg_session_minutes", "logins_last_30d", "support_calls_90d"]


def publish(online: OnlineStore, config, entities: dict[str, dict], stale_usage: set[str]) -> None:
    """Each view of churn, as the online_features asset would publish it; usage 800 days old for ``stale_usage``."""
    now = datetime.now(timezone.utc)
    for view in feature_views(config):
        rows = []
        for entity, values in entities.items():
            when = now - (timedelta(days=800) if view.name == "usage" and entity in stale_usage else timedelta(days=1))
            payload = [int(when.timestamp() * 1_000_000), *[values.get(f) for f in view.feature_names]]
            rows.append((entity, json.dumps(payload)))
        online.publish(config.name, view.name, view.feature_names, [rows], view.version, 0,
                       None if view.ttl is None else view.ttl.total_seconds())


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def served(request, serving_home, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"by-entity-{request.param}")
    if request.param == "sqlite":
        online = SQLiteOnlineStore(folder / "online.db")
        url = f"sqlite:///{folder / 'online.db'}"
    else:
        online = redis_store()
        url = f"redis://127.0.0.1:6379/0?prefix={online.prefix}"
    log_url = f"sqlite:///{folder / 'log.db'}"
    with serving_home.entered(MLOPS_ONLINE_STORE=url, MLOPS_PREDICTION_LOG_URL=log_url) as (settings, configs):
        publish(online, configs["churn"], {FRESH: churn_record(7), STALE: churn_record(8)}, stale_usage={STALE})
        try:
            with running_server(settings, list(configs.values()), timeout=600) as server:  # a busy CI machine
                yield server, log_url
        finally:
            online.remove_dataset("churn")
            online.close()


def predict(served, record: dict) -> httpx.Response:
    return httpx.post(f"{served[0].url}/predict", json={"dataset": "churn", "record": record}, timeout=30)


def predict_batch(served, records: list[dict]) -> httpx.Response:
    return httpx.post(f"{served[0].url}/predict_batch", json={"dataset": "churn", "records": records}, timeout=30)


def logged_features(served, request_id: str) -> dict:
    """The features the log holds for a request (written within the flush interval)."""
    engine = connect(served[1])
    deadline = time.monotonic() + 10
    while True:
        rows = read_predictions(engine, "churn", columns=["request_id", "features"])
        found = rows[rows["request_id"] == request_id]
        if len(found) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    engine.dispose()
    assert len(found) == 1, f"request {request_id} is not in the prediction log"
    return json.loads(found["features"].iloc[0])


def locations(response: httpx.Response) -> list[str]:
    # Two datasets are served, so pydantic-style locations start with the dataset.
    return [".".join(map(str, d["loc"])) for d in response.json()["detail"]]


def test_a_record_with_only_an_entity_id_is_scored_with_its_stored_features_and_logged_complete(served):
    by_id = predict(served, {"entity_id": FRESH})
    assert by_id.status_code == 200, by_id.text
    inline = predict(served, {**churn_record(7), "entity_id": FRESH})
    assert by_id.json()["score"] == pytest.approx(inline.json()["score"], abs=1e-12)
    assert by_id.json()["entity_id"] == FRESH
    assert logged_features(served, by_id.json()["request_id"]) == churn_record(7)


def test_features_sent_inline_win_over_the_stored_ones(served):
    mixed = predict(served, {"entity_id": FRESH, "tenure_months": 99, "contract_type": "two_year"})
    assert mixed.status_code == 200, mixed.text
    expected = {**churn_record(7), "tenure_months": 99, "contract_type": "two_year"}
    inline = predict(served, {**expected, "entity_id": FRESH})
    assert mixed.json()["score"] == pytest.approx(inline.json()["score"], abs=1e-12)
    assert mixed.json()["score"] != pytest.approx(predict(served, {"entity_id": FRESH}).json()["score"], abs=1e-9)
    assert logged_features(served, mixed.json()["request_id"]) == expected


def test_an_unknown_entity_gets_404_naming_it_and_every_missing_feature(served):
    response = predict(served, {"entity_id": NOBODY, "region": "north"})
    assert response.status_code == 404, response.text
    body = response.json()
    assert f"'{NOBODY}'" in body["error"] and "holds no features for it" in body["error"]
    missing = [f for f in churn_record(0) if f != "region"]
    assert locations(response) == [f"churn.record.{f}" for f in missing]
    assert {d["type"] for d in body["detail"]} == {"unknown_entity"}


def test_values_older_than_the_ttl_get_422_naming_them_and_scoring_resumes_when_they_are_sent(served):
    response = predict(served, {"entity_id": STALE})
    assert response.status_code == 422, response.text
    assert locations(response) == [f"churn.record.{f}" for f in USAGE]
    assert "older than their view's TTL" in response.json()["error"]
    completed = predict(served, {"entity_id": STALE, **{f: churn_record(8)[f] for f in USAGE}})
    assert completed.status_code == 200, completed.text
    assert logged_features(served, completed.json()["request_id"]) == churn_record(8)


def test_a_partial_record_without_an_entity_id_gets_400_naming_each_missing_field(served):
    record = churn_record(3)
    del record["tenure_months"], record["region"]
    response = predict(served, record)
    assert response.status_code == 400, response.text
    assert locations(response) == ["churn.record.tenure_months", "churn.record.region"]
    assert {d["type"] for d in response.json()["detail"]} == {"missing"}


def test_a_batch_mixes_records_by_entity_id_and_inline_and_names_each_record_it_cannot_complete(served):
    records = [{"entity_id": FRESH}, {**churn_record(11), "entity_id": "inline-11"},
               {"entity_id": STALE, **{f: churn_record(8)[f] for f in USAGE}}]
    batch = predict_batch(served, records)
    assert batch.status_code == 200, batch.text
    singles = [predict(served, r).json()["score"] for r in records]
    assert [p["score"] for p in batch.json()["predictions"]] == pytest.approx(singles, abs=1e-12)
    assert [p["entity_id"] for p in batch.json()["predictions"]] == [FRESH, "inline-11", STALE]

    refused = predict_batch(served, [{"entity_id": FRESH}, {"entity_id": NOBODY}, {"entity_id": STALE}])
    assert refused.status_code == 422, refused.text  # one unknown entity and one with expired values
    where = locations(refused)
    assert [w for w in where if w.startswith("churn.records.1.")] == [f"churn.records.1.{f}" for f in churn_record(0)]
    assert [w for w in where if w.startswith("churn.records.2.")] == [f"churn.records.2.{f}" for f in USAGE]
    assert not [w for w in where if w.startswith("churn.records.0.")]
    only_unknown = predict_batch(served, [{"entity_id": FRESH}, {"entity_id": NOBODY}])
    assert only_unknown.status_code == 404 and NOBODY in only_unknown.json()["error"]


def test_a_large_batch_by_entity_id_scores_like_single_requests_and_names_a_late_record_it_cannot_complete(served):
    # Small batches read a local store on the event loop, large ones in a thread: both must answer alike.
    records = [{"entity_id": FRESH} if i % 2 else {"entity_id": STALE, **{f: churn_record(8)[f] for f in USAGE}}
               for i in range(40)]
    batch = predict_batch(served, records)
    assert batch.status_code == 200, batch.text
    fresh, stale = predict(served, records[1]).json()["score"], predict(served, records[0]).json()["score"]
    assert [p["score"] for p in batch.json()["predictions"]] == pytest.approx([stale, fresh] * 20, abs=1e-12)

    refused = predict_batch(served, records[:37] + [{"entity_id": NOBODY}])
    assert refused.status_code == 404, refused.text
    assert {w.split(".")[2] for w in locations(refused)} == {"37"}


def test_the_api_page_documents_predicting_by_entity_id(served):
    document = httpx.get(f"{served[0].url}/docs.json", timeout=30).json()
    predict_doc = document["paths"]["/predict"]["post"]
    assert "Predicting by entity id" in predict_doc["description"]
    assert {"404", "422", "503"} <= set(predict_doc["responses"])
    examples = predict_doc["requestBody"]["content"]["application/json"]["examples"]
    assert {"dataset": "churn", "record": {"entity_id": "example-1"}} in [e["value"] for e in examples.values()]
    record = document["components"]["schemas"]["ChurnRecord"]
    assert "required" not in record
    assert {"required": ["entity_id"], "properties": {"entity_id": {"type": "string"}}} in record["anyOf"]
