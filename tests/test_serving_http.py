"""The real BentoML server (`bentoml serve`) on a free loopback port, spoken to over HTTP."""

from __future__ import annotations

import dagster as dg
import httpx
import pytest

from bento.schemas import MAX_BATCH
from mlops_assets.config import load_dataset_configs
from mlops_assets.demo import sample_requests
from mlops_assets.pipeline.runs import load_definitions
from mlops_assets.serving import ServerError, running_server
from mlops_assets.settings import use_home
from mlops_assets.training.registry import load_champion

pytestmark = pytest.mark.slow

CHURN_RECORD = {"tenure_months": 5, "monthly_charges": 58.59, "total_charges": 281.36, "data_usage_gb": 13.4,
                "avg_session_minutes": 14.4, "logins_last_30d": 14, "support_calls_90d": 2, "late_payments_12m": 1,
                "has_autopay": False, "contract_type": "month_to_month", "payment_method": "mailed_check",
                "region": "north"}


@pytest.fixture(scope="module")
def server(materialized_churn):
    settings, _ = materialized_churn
    with use_home(settings.home, settings.configs) as entered:
        config = load_dataset_configs(entered.configs)[0]
        training_set = load_definitions(entered).load_asset_value(["churn", "training_set"], instance=dg.DagsterInstance.get())
        with running_server(entered, [config]) as running:
            yield running, entered, config, sample_requests(config, training_set, 5)


def post(server, route: str, body) -> httpx.Response:
    running = server[0]
    if isinstance(body, (bytes, str)):
        return httpx.post(f"{running.url}{route}", content=body, headers={"content-type": "application/json"}, timeout=30)
    return httpx.post(f"{running.url}{route}", json=body, timeout=30)


def error_locations(response: httpx.Response) -> list[str]:
    return [".".join(map(str, d["loc"])) for d in response.json()["detail"]]


def test_one_record_is_scored_by_the_champion_as_in_process(server):
    _, settings, config, samples = server
    record = samples[0]["record"]
    response = post(server, "/predict", {"dataset": "churn", "record": record})
    assert response.status_code == 200, response.text
    answer = response.json()
    champion = load_champion(settings, config)
    import pandas as pd

    expected = champion.score(pd.DataFrame([{k: v for k, v in record.items() if k != "entity_id"}]))[0]
    assert answer["score"] == pytest.approx(float(expected), abs=1e-9)
    assert answer["label"] == int(answer["score"] >= answer["threshold"])
    assert answer["model_version"] == "1"
    assert answer["entity_id"] == record["entity_id"]
    assert len(answer["request_id"]) == 32


def test_a_batch_is_scored_in_order(server):
    _, _, _, samples = server
    records = [s["record"] for s in samples]
    batch = post(server, "/predict_batch", {"dataset": "churn", "records": records})
    assert batch.status_code == 200, batch.text
    predictions = batch.json()["predictions"]
    assert [p["entity_id"] for p in predictions] == [r["entity_id"] for r in records]
    single = post(server, "/predict", {"dataset": "churn", "record": records[2]}).json()
    assert predictions[2]["score"] == pytest.approx(single["score"], abs=1e-12)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: (r.pop("tenure_months"), r.pop("entity_id")), "record.tenure_months"),
        (lambda r: r.update(monthly_charges="lots"), "record.monthly_charges"),
        (lambda r: r.update(contract_type="weekly"), "record.contract_type"),
        (lambda r: r.update(tenure_months=-3), "record.tenure_months"),
        (lambda r: r.update(favourite_colour="blue"), "record.favourite_colour"),
    ],
    ids=["missing-field", "wrong-type", "unknown-category", "out-of-range", "unknown-field"],
)
def test_a_bad_record_gets_400_naming_the_field(server, change, field):
    record = dict(server[3][0]["record"])
    change(record)
    response = post(server, "/predict", {"dataset": "churn", "record": record})
    assert response.status_code == 400
    assert error_locations(response) == [field]


def test_a_record_by_entity_id_alone_is_scored_with_the_features_the_graph_published(server):
    """The default online store (SQLite under MLOPS_HOME), as the main job's online_features asset left it."""
    import pandas as pd

    from mlops_assets.features.store import FeatureStore

    _, settings, config, samples = server
    entity = samples[-1]["record"]["entity_id"]
    response = post(server, "/predict", {"dataset": "churn", "record": {"entity_id": entity}})
    assert response.status_code == 200, response.text
    stored = FeatureStore(config, home=settings.home).online_features_one(
        entity, [f for f in config.features if f not in config.derived_features])
    assert None not in stored.values()
    expected = load_champion(settings, config).score(pd.DataFrame([stored]))[0]
    assert response.json()["score"] == pytest.approx(float(expected), abs=1e-9)
    unknown = post(server, "/predict", {"dataset": "churn", "record": {"entity_id": "C9999999"}})
    assert unknown.status_code == 404 and "'C9999999'" in unknown.json()["error"]


def test_an_unknown_dataset_gets_400_naming_the_dataset_field(server):
    response = post(server, "/predict", {"dataset": "loans", "record": server[3][0]["record"]})
    assert response.status_code == 400
    assert error_locations(response) == ["dataset"]
    assert "churn" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"dataset": "churn"}', b""], ids=["broken", "list", "no-record", "empty"])
def test_malformed_bodies_get_400_not_500(server, body):
    assert post(server, "/predict", body).status_code == 400


def test_batches_must_hold_between_one_and_the_maximum_records(server):
    record = server[3][0]["record"]
    assert post(server, "/predict_batch", {"dataset": "churn", "records": []}).status_code == 400
    too_many = post(server, "/predict_batch", {"dataset": "churn", "records": [record] * (MAX_BATCH + 1)})
    assert too_many.status_code == 400
    assert error_locations(too_many) == ["records"]


def test_health_readiness_and_metrics_endpoints_answer(server):
    running = server[0]
    for probe in ("/healthz", "/livez", "/readyz"):
        assert httpx.get(f"{running.url}{probe}", timeout=10).status_code == 200
    metrics = httpx.get(f"{running.url}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert "bentoml_service_request_total" in metrics.text
    served = httpx.get(f"{running.url}/models", timeout=10).json()
    champion = served["datasets"]["churn"]["champion"]
    assert champion["version"] == "1"
    # The churn champion (histogram boosting) is served compiled, verified on its test split at load.
    assert champion["inference_path"] == "compiled", champion["inference_check"]
    assert champion["inference_runtime"].startswith("treelite") and "matches sklearn" in champion["inference_check"]


def test_serving_without_a_champion_fails_fast_with_a_message(tmp_path, churn_config_dir):
    with use_home(tmp_path / "empty-home", churn_config_dir) as settings:
        config = load_dataset_configs(settings.configs)[0]
        with pytest.raises(ServerError, match="nothing to serve: churn has no champion: no version of churn_model is "
                                              "registered in sqlite:///.*; run `mlops materialize`"):
            with running_server(settings, [config]):
                pass


def test_a_dataset_without_a_champion_is_listed_and_answered_404_while_others_serve(materialized_churn, tmp_path):
    import shutil

    from tests.datasets import LOANS_CONFIG, make_loans, write_loans

    settings, _ = materialized_churn
    configs = write_loans(tmp_path / "configs", make_loans(50))
    shutil.copy(settings.configs / "churn.yaml", configs / "churn.yaml")
    with use_home(settings.home, configs) as entered:
        with running_server(entered, load_dataset_configs(entered.configs)) as running:
            served = httpx.get(f"{running.url}/models", timeout=30).json()["datasets"]
            assert served["churn"]["champion"]["version"] == "1"
            assert served["loans"]["champion"] is None and "materialize" in served["loans"]["problem"]
            record = {"income": 52000.0, "debt_ratio": 0.3, "years_employed": 4,
                      "employment_type": "salaried", "purpose": "car"}
            assert set(record) == set(LOANS_CONFIG["features"])
            answer = httpx.post(f"{running.url}/predict", json={"dataset": "loans", "record": record}, timeout=30)
            assert answer.status_code == 404
            assert "loans has no champion: no version of loans_model is registered" in answer.text
            churn = httpx.post(f"{running.url}/predict", json={"dataset": "churn", "record": CHURN_RECORD}, timeout=30)
            assert churn.status_code == 200


def test_mlops_serve_stops_its_server_when_it_is_terminated(materialized_churn):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from mlops_assets.serving import free_port

    settings, _ = materialized_churn
    port = free_port()
    with use_home(settings.home, settings.configs):
        process = subprocess.Popen([str(Path(sys.executable).with_name("mlops")), "serve", "--port", str(port)],
                                   env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        assert httpx.post(f"{url}/predict", json={"dataset": "churn", "record": CHURN_RECORD}, timeout=10).status_code == 200
        process.send_signal(signal.SIGTERM)  # to `mlops serve` only, not its process group
        process.wait(30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/livez", timeout=1)
                time.sleep(0.5)
            except httpx.TransportError:
                break
        else:
            pytest.fail("the BentoML server outlived `mlops serve`")
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left of the group
        except ProcessLookupError:
            pass
