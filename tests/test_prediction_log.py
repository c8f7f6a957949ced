"""The prediction log and the experiment state, on SQLite (the default) and PostgreSQL, without a server."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlops_assets.config import load_dataset_config
from mlops_assets.serving.experiments import ExperimentError, ExperimentStore
from mlops_assets.serving.prediction_log import (
    PredictionLogWriter,
    connect,
    predictions,
    read_predictions,
    record_outcome,
    summarize,
    utc_now,
)
from mlops_assets.settings import PROJECT_ROOT


def row(request_id: str, entity: str | None = "E1", variant: str = "champion", shadow: bool = False) -> dict:
    return {"request_id": request_id, "logged_at": utc_now(), "dataset": "churn", "entity_id": entity,
            "experiment_id": "exp-1", "variant": variant, "shadow": shadow, "model_name": "churn_model",
            "model_version": "1", "features": json.dumps({"tenure_months": 3}), "score": 0.4, "decision": 1,
            "threshold": 0.3, "latency_ms": 1.5, "error": None, "outcome": None, "outcome_at": None}


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path: Path):
    if request.param == "sqlite":
        engine = connect(f"sqlite:///{tmp_path / 'log' / 'prediction_log.db'}")
        yield engine
        engine.dispose()
        return
    from tests.test_postgres import scratch_database

    with scratch_database("mlops_predlog") as url:
        engine = connect(url)
        yield engine
        engine.dispose()


def count(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(predictions)).scalar_one()


def test_rows_appended_from_many_threads_are_all_written_exactly_once(engine):
    writer = PredictionLogWriter(engine, flush_interval=0.05, batch_size=50)
    threads = [threading.Thread(target=lambda t=t: [writer.append(row(f"{t}-{i}")) for i in range(250)]) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    assert count(engine) == 1000
    ids = read_predictions(engine, "churn", columns=["request_id"])["request_id"]
    assert ids.is_unique


def test_rows_wait_in_memory_while_the_table_is_missing_and_are_written_when_it_is_back(engine):
    writer = PredictionLogWriter(engine, flush_interval=0.05)
    predictions.drop(engine)
    writer.append(row("r1"))
    writer.append(row("r2"))
    with pytest.raises(sa.exc.DBAPIError):
        writer.flush()
    assert writer.pending == 2
    predictions.create(engine)
    writer.close()
    assert count(engine) == 2 and writer.pending == 0


def test_feedback_by_request_id_is_idempotent_and_reaches_the_shadow_row(engine):
    writer = PredictionLogWriter(engine)
    writer.append(row("r1"))
    writer.append(row("r1", variant="challenger", shadow=True))
    writer.append(row("r2"))
    writer.close()
    first = record_outcome(engine, "churn", 1.0, request_id="r1")
    again = record_outcome(engine, "churn", 1.0, request_id="r1")
    assert (first.matched, first.updated) == (2, 2)
    assert (again.matched, again.updated) == (2, 0)
    corrected = record_outcome(engine, "churn", 0.0, request_id="r1")
    assert corrected.updated == 2
    logged = read_predictions(engine, "churn").set_index(["request_id", "variant"])["outcome"]
    assert logged[("r1", "champion")] == 0.0 and logged[("r1", "challenger")] == 0.0
    assert logged[("r2", "champion")] != logged[("r2", "champion")]  # still NaN


def test_feedback_by_entity_reaches_every_prediction_of_that_entity_and_unknown_ids_match_nothing(engine):
    writer = PredictionLogWriter(engine)
    for i, entity in enumerate(["A", "A", "B"]):
        writer.append(row(f"r{i}", entity=entity))
    writer.close()
    assert record_outcome(engine, "churn", 1.0, entity_id="A").matched == 2
    assert record_outcome(engine, "churn", 1.0, entity_id="nobody").matched == 0
    assert record_outcome(engine, "loans", 1.0, entity_id="A").matched == 0  # another dataset's entity
    summary = summarize(engine, "churn")
    assert (summary.rows, summary.with_outcome, summary.by_variant) == (3, 2, {"champion": 3})
    assert summary.last_logged_at is not None


@pytest.fixture
def churn_config():
    return load_dataset_config(PROJECT_ROOT / "configs" / "churn.yaml")


def test_the_declared_experiment_seeds_the_state_once_and_run_time_changes_survive(engine, churn_config):
    from mlops_assets.config import ExperimentConfig

    config = churn_config.model_copy(update={"experiment": ExperimentConfig(id="churn-exp", split="90/10")})
    store = ExperimentStore(engine)
    seeded = store.declare(config)
    assert seeded is not None and seeded.mode == "ab" and seeded.challenger_share == pytest.approx(0.1)
    changed = store.start(config, split="80/20", by="test")
    assert changed.challenger_share == pytest.approx(0.2)
    assert changed.phase_started_at > seeded.phase_started_at  # a new split is a new phase
    assert store.declare(config) is None  # a restart does not undo the change
    assert store.active("churn").challenger_share == pytest.approx(0.2)
    same = store.start(config, split="80/20", by="test")
    assert same.phase_started_at == changed.phase_started_at  # nothing changed, same phase
    stopped = store.stop("churn", by="test", note="done")
    assert stopped.status == "stopped" and not stopped.splits_traffic
    with pytest.raises(ExperimentError, match="no running experiment"):
        store.stop("churn", by="test")
    assert store.active("churn").status == "stopped"


def test_starting_without_an_id_or_a_declaration_says_what_to_do(engine, churn_config):
    config = churn_config.model_copy(update={"experiment": None})
    with pytest.raises(ExperimentError, match="--id"):
        ExperimentStore(engine).start(config, by="test")
    with pytest.raises(ExperimentError, match="add up to 100"):
        ExperimentStore(engine).start(config, experiment_id="x", split="50/60", by="test")


def test_a_reload_request_is_seen_by_every_poller(engine):
    store = ExperimentStore(engine)
    assert store.state() == {}
    assert store.request_reload("churn") == 1
    assert store.request_reload("churn") == 2
    state = store.state()["churn"]
    assert state.reload_generation == 2 and state.experiment is None


def test_serving_refuses_to_start_on_a_prediction_log_it_cannot_open(tmp_path):
    from mlops_assets.serving import ServerError, check_prediction_log
    from mlops_assets.serving.server import free_port
    from mlops_assets.settings import use_home

    unused = free_port()
    with use_home(tmp_path / "home", PROJECT_ROOT / "configs",
                  MLOPS_PREDICTION_LOG_URL=f"postgresql://postgres:secret@127.0.0.1:{unused}/log") as settings:
        with pytest.raises(ServerError, match=f"postgresql://postgres:\\*\\*\\*@127.0.0.1:{unused}/log cannot be used"):
            check_prediction_log(settings)
