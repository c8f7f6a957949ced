"""MLflow as the platform writes it: the experiment's look in the UI, run names, and cheap trial runs.

Three things a plain ``mlflow.start_run`` does not give:

- **The UI opens on runs.** MLflow 3's UI shows an experiment's GenAI overview (traces,
  token usage) unless the experiment's ``mlflow.experimentKind`` tag says it is model
  training (read by the UI's JavaScript; value ``custom_model_development``). MLflow 3.17
  also has a global GenAI / Model training switch that wins over the tag; every link the
  platform prints selects model training (``experiment_url``).
- **Names and descriptions a person can read** (``mlflow.runName``, ``mlflow.note.content``).
- **Trials that cost little.** Each Optuna trial becomes a nested run, written after the
  trial ends by a background thread; the optimization loop only enqueues. On a SQL
  tracking store the finished run (row, tags, params, metrics, latest metrics) is one
  transaction of five bulk inserts into MLflow's own tables: MLflow's ``create_run`` +
  ``log_batch`` + ``set_terminated`` issue ~35 queries in 14 sessions for the same rows
  (re-reading the experiment, the run and its inputs each time), 3-4x the time. A tracking
  server over HTTP gets the three client calls. SQLite gets WAL mode with
  ``synchronous=NORMAL``: without it every commit waits for ~3 fsyncs (~10 ms here).
"""

from __future__ import annotations

import math
import queue
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa
from mlflow.entities import Metric, Param
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

#: MLflow 3.17's UI has a global "GenAI | Model training" switch, kept in the browser and defaulting
#: to GenAI, that wins over the experiment tag; this query parameter selects model training.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
DESCRIPTION_TAG = "mlflow.note.content"

_FLOAT_MAX = 1.7976931348623157e308  # MLflow stores +-inf as the largest double
_TRIAL_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
_tuned_engines: weakref.WeakSet = weakref.WeakSet()  # by object: ids are reused after a home's engine is gone


def experiment_url(ui: str, experiment_id: str, run_id: str | None = None) -> str:
    """A link into the MLflow UI that opens on runs (model training), not on the GenAI overview."""
    run = f"/runs/{run_id}" if run_id else ""
    return f"{ui}/#/experiments/{experiment_id}{run}?{MODEL_TRAINING_VIEW}"


def now_label() -> str:
    """The date part of a run name: minutes are enough to tell runs apart by eye."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M")


def speed_up_sqlite(client: MlflowClient) -> None:
    """WAL journal and ``synchronous=NORMAL`` on MLflow's SQLite store (no-op for other stores).

    WAL is a property of the file (set once, read by every later process); ``synchronous``
    is per connection, so new connections of this process get it. A crash can lose the
    last commits, never corrupt the file; PostgreSQL is the production store.
    """
    store = client._tracking_client.store  # noqa: SLF001 - the engine is only reachable here
    engine = getattr(store, "engine", None)
    if engine is None or engine.dialect.name != "sqlite" or engine in _tuned_engines:
        return
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA journal_mode=WAL")

    @sa.event.listens_for(engine, "connect")
    def _normal_sync(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    engine.dispose()  # pooled connections predate the listener
    _tuned_engines.add(engine)


def describe_experiment(client: MlflowClient, experiment_id: str, description: str) -> None:
    """Mark the experiment as model training (the UI then opens on its runs) and describe it."""
    experiment = client.get_experiment(experiment_id)
    wanted = {EXPERIMENT_KIND_TAG: MODEL_TRAINING_KIND, DESCRIPTION_TAG: description}
    for key, value in wanted.items():
        if experiment.tags.get(key) != value:
            client.set_experiment_tag(experiment_id, key, value)


@dataclass
class TrialRecord:
    """One finished Optuna trial, as its nested MLflow run will show it."""

    number: int
    state: str  # COMPLETE | PRUNED | FAIL
    params: dict[str, object]
    metric: str
    intermediate: dict[int, float]
    value: float | None
    start_ms: int
    end_ms: int
    worker: int
    error: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


class TrialRecorder:
    """Writes trial runs under one parent run from a background thread; ``close`` waits for all."""

    def __init__(self, client: MlflowClient, experiment_id: str, parent_run_id: str, run_prefix: str):
        self._client, self._experiment_id = client, experiment_id
        self._parent, self._prefix = parent_run_id, run_prefix
        self._queue: queue.Queue[TrialRecord | None] = queue.Queue()
        self._errors: list[BaseException] = []
        self.enqueue_seconds = 0.0
        self.written = 0
        speed_up_sqlite(client)
        store = client._tracking_client.store  # noqa: SLF001 - a SQL store takes the one-transaction path
        self._sql_store = store if isinstance(store, SqlAlchemyStore) else None
        self._artifact_location = client.get_experiment(experiment_id).artifact_location
        self._thread = threading.Thread(target=self._drain, name="mlflow-trial-writer", daemon=True)
        self._thread.start()

    def record(self, trial: TrialRecord) -> None:
        start = time.perf_counter()
        self._queue.put(trial)
        self.enqueue_seconds += time.perf_counter() - start

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._errors:
            raise self._errors[0]

    def _drain(self) -> None:
        while (trial := self._queue.get()) is not None:
            try:
                self.write(trial)
            except Exception as exc:  # noqa: BLE001 - surfaced by close()
                self._errors.append(exc)

    def write(self, trial: TrialRecord) -> str:
        """The trial's finished run: one SQL transaction on a SQL store, else three client calls."""
        tags = {
            MLFLOW_PARENT_RUN_ID: self._parent,
            MLFLOW_RUN_NAME: f"{self._prefix}-trial-{trial.number:03d}",
            "optuna.trial": str(trial.number),
            "optuna.state": trial.state,
            "optuna.worker": str(trial.worker),
            **trial.tags,
            "optuna.value": str(trial.value),
        }
        if trial.error:
            tags["error"] = trial.error[:5000]
        metrics = [Metric(f"validation_{trial.metric}", v, trial.end_ms, step) for step, v in sorted(trial.intermediate.items())]
        if trial.value is not None and not trial.intermediate:
            metrics.append(Metric(f"validation_{trial.metric}", trial.value, trial.end_ms, 0))
        metrics.append(Metric("duration_seconds", (trial.end_ms - trial.start_ms) / 1000, trial.end_ms, 0))
        params = {k: str(v) for k, v in trial.params.items()}
        status = _TRIAL_STATUS.get(trial.state, "FAILED")
        if self._sql_store is not None:
            run_id = self._insert_run(trial, tags, params, metrics, status)
        else:
            run_id = self._client.create_run(self._experiment_id, start_time=trial.start_ms, tags=tags).info.run_id
            self._client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
            self._client.set_terminated(run_id, status, end_time=trial.end_ms)
        self.written += 1
        return run_id

    def _insert_run(self, trial: TrialRecord, tags: dict[str, str], params: dict[str, str], metrics: list[Metric],
                    status: str) -> str:
        """The rows ``create_run`` + ``log_batch`` + ``set_terminated`` would leave, in one transaction."""
        run_id = uuid.uuid4().hex
        run = {"run_uuid": run_id, "name": tags[MLFLOW_RUN_NAME], "source_type": "UNKNOWN", "source_name": "",
               "entry_point_name": "", "user_id": "unknown", "status": status, "start_time": trial.start_ms,
               "end_time": trial.end_ms, "deleted_time": None, "source_version": "", "lifecycle_stage": "active",
               "artifact_uri": f"{self._artifact_location.rstrip('/')}/{run_id}/artifacts",
               "experiment_id": int(self._experiment_id)}
        metric_rows = [{"key": m.key, "value": 0.0 if math.isnan(m.value) else max(min(m.value, _FLOAT_MAX), -_FLOAT_MAX),
                        "timestamp": m.timestamp, "step": m.step, "is_nan": math.isnan(m.value), "run_uuid": run_id}
                       for m in metrics]
        latest: dict[str, dict] = {}
        for row in metric_rows:  # MLflow's latest value: highest (step, timestamp, value)
            kept = latest.get(row["key"])
            if kept is None or (row["step"], row["timestamp"], row["value"]) >= (kept["step"], kept["timestamp"], kept["value"]):
                latest[row["key"]] = row
        with self._sql_store.engine.begin() as connection:
            connection.execute(sa.insert(SqlRun.__table__), run)
            connection.execute(sa.insert(SqlTag.__table__), [{"key": k, "value": v, "run_uuid": run_id} for k, v in tags.items()])
            if params:
                connection.execute(sa.insert(SqlParam.__table__), [{"key": k, "value": v, "run_uuid": run_id} for k, v in params.items()])
            connection.execute(sa.insert(SqlMetric.__table__), metric_rows)
            connection.execute(sa.insert(SqlLatestMetric.__table__), list(latest.values()))
        return run_id
