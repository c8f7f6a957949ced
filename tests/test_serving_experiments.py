"""A/B serving against a real `bentoml serve`: routing, prediction log, feedback, statistics, admin, hot swap.

One server for the module, on a home of its own: churn with versions 1 (champion), 2
(challenger) and 3 (a version that raises on a region it never saw), declared with an
A/B experiment at 70/30; and the loans dataset, whose free-text column is checked
against what its model learned. The tests run in file order: they change the
experiment and the aliases the way an operator would.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlops_assets.serving import running_server
from mlops_assets.serving.experiment_stats import VariantSample, sequential_test, welch_test
from mlops_assets.serving.prediction_log import connect, read_predictions
from mlops_assets.serving.routing import assign
from mlops_assets.training.registry import set_alias
from tests.serving_support import ADMIN_TOKEN, churn_record, steady_load

pytestmark = pytest.mark.slow

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def served(serving_home):
    with serving_home.entered(MLOPS_ADMIN_TOKEN=ADMIN_TOKEN, MLOPS_RELOAD_INTERVAL_S="1") as (settings, configs):
        with running_server(settings, list(configs.values())) as server:
            yield Served(server.url, settings, configs, serving_home.versions, connect(settings.prediction_log_url))


class Served:
    def __init__(self, url, settings, configs, versions, engine):
        self.url, self.settings, self.configs, self.versions, self.engine = url, settings, configs, versions, engine
        self.client = httpx.Client(base_url=url, timeout=30)

    def predict(self, record: dict, entity: str | None = None, dataset: str = "churn") -> httpx.Response:
        body = {"dataset": dataset, "record": {**record, **({"entity_id": entity} if entity else {})}}
        return self.client.post("/predict", json=body)

    def logged(self, request_ids: list[str], timeout: float = 10) -> pd.DataFrame:
        """The log rows of these requests, once every one is written (the writer flushes every 0.2 s)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = read_predictions(self.engine, "churn")
            rows = rows[rows["request_id"].isin(set(request_ids))]
            if rows["request_id"].nunique() == len(set(request_ids)) or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)


def send_many(served: Served, count: int, entities: int, start: int = 0, clients: int = 4) -> list[dict]:
    """``count`` requests over ``entities`` entity ids, from a few threads; every answer must be a 200."""
    answers: list[dict] = []
    lock = threading.Lock()

    def run(offset: int) -> None:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            for i in range(offset, count, clients):
                entity = f"C{(start + i) % entities:05d}"
                body = {"dataset": "churn", "record": {**churn_record(start + i), "entity_id": entity}}
                response = client.post("/predict", json=body)
                assert response.status_code == 200, response.text
                with lock:
                    answers.append(response.json())

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == count
    return answers


def test_the_declared_ab_experiment_splits_by_a_sticky_hash_of_the_entity(served):
    answers = send_many(served, 300, entities=100)
    by_entity: dict[str, set[str]] = {}
    for answer in answers:
        by_entity.setdefault(answer["entity_id"], set()).add(answer["variant"])
        assert answer["experiment_id"] == "churn-ab-test"
        expected_version = served.versions["challenger" if answer["variant"] == "challenger" else "champion"]
        assert answer["model_version"] == expected_version
    assert all(len(variants) == 1 for variants in by_entity.values()), "an entity changed variant"
    for entity, (variant,) in by_entity.items():
        assert variant == assign("churn-ab-test", entity, 0.3)
    assert {a["variant"] for a in answers} == {"champion", "challenger"}


def test_n_answered_requests_are_exactly_n_rows_in_the_prediction_log(served):
    answers = send_many(served, 200, entities=200, start=1000)
    rows = served.logged([a["request_id"] for a in answers])
    assert len(rows) == 200 and rows["request_id"].is_unique
    merged = rows.set_index("request_id").loc[[a["request_id"] for a in answers]]
    assert list(merged["model_version"]) == [a["model_version"] for a in answers]
    assert np.allclose(merged["score"], [a["score"] for a in answers])
    assert (merged["experiment_id"] == "churn-ab-test").all() and (~merged["shadow"].astype(bool)).all()
    assert merged["features"].str.contains('"monthly_charges"').all() and (merged["latency_ms"] > 0).all()


def test_feedback_is_idempotent_and_an_unknown_id_is_a_404_with_a_message(served):
    answer = served.predict(churn_record(5), entity="C-feedback").json()
    first = served.client.post("/feedback", json={"dataset": "churn", "request_id": answer["request_id"], "outcome": 1})
    assert first.status_code == 200, first.text
    assert first.json() == {"dataset": "churn", "matched": 1, "updated": 1}
    again = served.client.post("/feedback", json={"dataset": "churn", "request_id": answer["request_id"], "outcome": True})
    assert again.json() == {"dataset": "churn", "matched": 1, "updated": 0}
    unknown = served.client.post("/feedback", json={"dataset": "churn", "request_id": "f" * 32, "outcome": 0})
    assert unknown.status_code == 404 and "no prediction of dataset 'churn' has request_id" in unknown.json()["error"]
    both = served.client.post("/feedback", json={"dataset": "churn", "request_id": "x", "entity_id": "y", "outcome": 0})
    assert both.status_code == 400
    by_entity = served.client.post("/feedback", json={"dataset": "churn", "entity_id": "C-feedback", "outcome": 0})
    assert by_entity.json()["matched"] == 1 and by_entity.json()["updated"] == 1  # a correction


def test_experiment_statistics_are_computed_from_the_log_and_feedback(served):
    rng = np.random.default_rng(0)
    answers = send_many(served, 400, entities=400, start=5000)
    for answer in answers:  # outcomes drawn from the champion-like score: the log has to carry them through
        outcome = int(rng.random() < answer["score"])
        response = served.client.post("/feedback", json={"dataset": "churn", "request_id": answer["request_id"],
                                                          "outcome": outcome})
        assert response.status_code == 200
    report = served.client.get("/experiment", params={"dataset": "churn"}).json()
    assert report["experiment_id"] == "churn-ab-test" and report["mode"] == "ab" and report["split"] == "70/30"
    variants = {v["variant"]: v for v in report["variants"]}
    rows = read_predictions(served.engine, "churn", "churn-ab-test")
    rows = rows[rows["logged_at"] >= pd.Timestamp(report["phase_started_at"]).tz_localize(None)]
    for name, figures in variants.items():
        mine = rows[rows["variant"] == name]
        assert figures["requests"] == len(mine)
        assert figures["outcomes"] == int(mine["outcome"].notna().sum())
        assert figures["units"] == mine["entity_id"].nunique()
    # Recompute the primary metric (brier per entity, CUPED on monthly_charges) from the raw rows.
    scored = rows[rows["outcome"].notna()].copy()
    scored["brier"] = (scored["score"] - scored["outcome"]) ** 2
    scored["charges"] = scored["features"].map(lambda features: json.loads(features)["monthly_charges"])
    per_unit = scored.groupby(["variant", "entity_id"])[["brier", "charges"]].mean().reset_index()
    samples = {v: VariantSample.from_values(g["brier"], g["charges"]) for v, g in per_unit.groupby("variant")}
    expected = welch_test(samples["champion"], samples["challenger"], "relative")
    primary = report["primary"]
    assert primary["metric"] == "brier" and primary["higher_is_better"] is False
    assert primary["cuped_covariate"] == "monthly_charges" and primary["cuped_theta"] != 0
    assert primary["relative"]["estimate"] == pytest.approx(expected.estimate, rel=1e-9)
    assert primary["relative"]["p_value"] == pytest.approx(expected.p_value, rel=1e-9)
    sequential = sequential_test(samples["champion"], samples["challenger"], "relative")
    assert primary["sequential_relative"]["ci_low"] == pytest.approx(sequential.ci[0], rel=1e-9)
    assert 0 <= report["sample_ratio"]["p_value"] <= 1
    assert report["verdict"]["decision"] in ("keep_collecting", "challenger_wins", "champion_wins")
    assert report["verdict"]["summary"]


def test_admin_endpoints_refuse_a_missing_or_wrong_token_and_change_nothing(served):
    before = served.client.get("/models").json()["datasets"]["churn"]["experiment"]
    attempts = [("/admin/experiment/stop", {"dataset": "churn"}),
                ("/admin/experiment/start", {"dataset": "churn", "challenger_percent": 90}),
                ("/admin/reload", {"dataset": "churn"})]
    for path, body in attempts:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": ADMIN_TOKEN}):
            response = served.client.post(path, json=body, headers=headers)
            assert response.status_code == 401, (path, headers, response.text)
            assert "MLOPS_ADMIN_TOKEN" in response.json()["error"]
    time.sleep(1.5)  # a change would have reached the worker's next poll
    assert served.client.get("/models").json()["datasets"]["churn"]["experiment"] == before


def test_shadow_mode_answers_with_the_champion_and_logs_the_challenger_off_the_response_path(served):
    started = served.client.post("/admin/experiment/start", json={"dataset": "churn", "mode": "shadow"}, headers=ADMIN)
    assert started.status_code == 200, started.text
    assert started.json()["mode"] == "shadow"
    answers = send_many(served, 60, entities=60, start=20000)
    assert {a["variant"] for a in answers} == {"champion"}
    assert {a["model_version"] for a in answers} == {served.versions["champion"]}
    ids = [a["request_id"] for a in answers]
    deadline = time.monotonic() + 10
    while True:
        rows = read_predictions(served.engine, "churn", "churn-ab-test")
        rows = rows[rows["request_id"].isin(ids)]
        if len(rows) == 120 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    shadows = rows[rows["shadow"].astype(bool)]
    assert len(rows) == 120 and len(shadows) == 60
    assert set(shadows["request_id"]) == set(ids)
    assert set(shadows["variant"]) == {"challenger"} and set(shadows["model_version"]) == {served.versions["challenger"]}
    report = served.client.get("/experiment", params={"dataset": "churn"}).json()
    assert report["mode"] == "shadow" and report["sample_ratio"]["applicable"] is False


def test_metrics_count_predictions_by_dataset_variant_and_version(served):
    text = served.client.get("/metrics").text
    champion = served.versions["champion"]
    challenger = served.versions["challenger"]
    assert f'mlops_predictions_total{{dataset="churn",model_version="{champion}",shadow="false",variant="champion"}}' in text
    assert f'mlops_predictions_total{{dataset="churn",model_version="{challenger}",shadow="true",variant="challenger"}}' in text
    assert "mlops_prediction_latency_seconds_bucket{" in text and "mlops_prediction_score_bucket{" in text


def test_a_free_text_value_the_model_never_saw_is_refused_naming_the_column(served):
    record = {"income": 52000.0, "debt_ratio": 0.3, "years_employed": 4, "employment_type": "salaried", "purpose": "car"}
    assert served.predict(record, dataset="loans").status_code == 200
    refused = served.predict({**record, "purpose": "yacht"}, dataset="loans")
    assert refused.status_code == 400
    (detail,) = refused.json()["detail"]
    assert detail["loc"] == ["loans", "record", "purpose"] and detail["type"] == "unknown_value"
    assert "'car'" in detail["msg"] and "'debt consolidation'" in detail["msg"]
    batch = served.client.post("/predict_batch", json={"dataset": "loans", "records": [record, {**record, "purpose": "x"}]})
    assert batch.status_code == 400 and batch.json()["detail"][0]["loc"] == ["loans", "records", 1, "purpose"]


def test_a_body_over_the_limit_gets_413_and_overlong_strings_400(served):
    huge = {"dataset": "churn", "record": {**churn_record(1), "entity_id": "x" * 5_000_000}}
    response = served.client.post("/predict", json=huge)
    assert response.status_code == 413 and "over the limit of 1048576" in response.json()["error"]
    long_id = served.predict(churn_record(1), entity="x" * 129)
    assert long_id.status_code == 400 and long_id.json()["detail"][0]["type"] == "string_too_long"
    form = served.client.post("/predict", content=b"a=1", headers={"content-type": "multipart/form-data"})
    assert form.status_code == 415
    assert served.predict(churn_record(1), entity="x" * 128).status_code == 200


@pytest.mark.parametrize(("field", "value", "accepted"), [
    ("tenure_months", "12", False), ("tenure_months", True, False), ("tenure_months", 12.0, True),
    ("tenure_months", 12.5, False), ("monthly_charges", "58.5", False), ("monthly_charges", 58, True),
    ("has_autopay", "true", False), ("has_autopay", 1, False), ("region", "North", False),
])
def test_types_are_strict_json(served, field, value, accepted):
    response = served.predict({**churn_record(3), field: value})
    assert (response.status_code == 200) is accepted, response.text
    if not accepted:
        # With several datasets served, pydantic puts the dataset first in the path.
        assert response.status_code == 400 and response.json()["detail"][0]["loc"] == ["churn", "record", field]


def test_an_alias_move_is_swapped_in_under_load_without_a_failed_request(served):
    served.client.post("/admin/experiment/stop", json={"dataset": "churn"}, headers=ADMIN).raise_for_status()
    stop = threading.Event()

    def send(client: httpx.Client, i: int) -> httpx.Response:
        return client.post(f"{served.url}/predict", json={"dataset": "churn", "record": {**churn_record(i), "entity_id": f"S{i}"}})

    threads, load = steady_load(send, clients=4, stop=stop)
    time.sleep(1.0)
    config = served.configs["churn"]
    set_alias(served.settings, config, "champion", served.versions["challenger"])  # the admin call path
    reloaded = served.client.post("/admin/reload", json={"dataset": "churn"}, headers=ADMIN)
    assert reloaded.json()["champion"]["version"] == served.versions["challenger"], reloaded.json()
    time.sleep(1.0)
    set_alias(served.settings, config, "champion", served.versions["champion"])  # the polling path (every 1 s here)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if load.answers and load.answers[-1]["model_version"] == served.versions["champion"]:
            break
        time.sleep(0.2)
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    assert load.failures == []
    versions = [a["model_version"] for a in load.answers]
    assert served.versions["challenger"] in versions and versions[-1] == served.versions["champion"]
    rows = served.logged([a["request_id"] for a in load.answers]).set_index("request_id")
    assert len(rows) == len(load.answers)
    assert all(rows.loc[a["request_id"], "model_version"] == a["model_version"] for a in load.answers)


def test_a_model_that_raises_on_a_row_fails_that_request_with_a_message_and_serves_the_rest(served):
    config = served.configs["churn"]
    set_alias(served.settings, config, "champion", served.versions["faulty"])
    served.client.post("/admin/reload", json={"dataset": "churn"}, headers=ADMIN).raise_for_status()
    try:
        west = {**churn_record(1), "region": "west"}
        failed = served.predict(west, entity="W1")
        assert failed.status_code == 500
        assert "the model could not score this record" in failed.json()["error"]
        assert "west" in failed.json()["error"]
        batch = served.client.post("/predict_batch", json={"dataset": "churn", "records": [churn_record(2), west]})
        assert batch.status_code == 200
        first, second = batch.json()["predictions"]
        assert first["score"] is not None and first["error"] is None
        assert second["score"] is None and "west" in second["error"]
        assert served.predict(churn_record(4), entity="W2").status_code == 200
        rows = served.logged([failed.json().get("request_id", "")], timeout=0.5)  # no id in an error answer
        assert rows.empty
        with served.engine.connect() as connection:
            errors = connection.execute(sa.text("select count(*) from predictions where error like '%west%'")).scalar()
        assert errors >= 2
    finally:
        set_alias(served.settings, config, "champion", served.versions["champion"])
        served.client.post("/admin/reload", json={"dataset": "churn"}, headers=ADMIN).raise_for_status()
