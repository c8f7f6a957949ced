"""The prediction log: every answered request in one SQL table, written in batches off the request path.

One row per scored record (DESIGN.md, "Prediction log"): request id, time, entity id,
experiment id, variant, model name and version, the feature values (JSON), score,
decision, threshold, latency, and later the outcome from ``POST /feedback``. A shadow
prediction is a row of its own (``shadow`` true) with the request id of the answer it
shadowed. A request the model failed on is a row with ``error`` set and no score.

SQLAlchemy Core over one schema, two real backends: SQLite under ``MLOPS_HOME`` by
default (WAL, so several workers and readers share it), PostgreSQL when
``MLOPS_PREDICTION_LOG_URL`` says so. The calling code never branches on the backend.

Writes never wait on the database: a request appends its row to an in-memory queue
and a background thread inserts the queue in one transaction every flush interval
(or as soon as it holds ``batch_size`` rows). ``close()`` stops the thread and writes
what is left, so a server stopped with SIGTERM loses no answered request. While the
database is unreachable, rows stay queued and the thread retries: nothing is dropped
silently.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

logger = logging.getLogger("mlops.prediction_log")

metadata = sa.MetaData()

# BIGINT ids on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("logged_at", sa.DateTime(timezone=True), nullable=False, comment="when the answer was made (UTC)"),
    sa.Column("dataset", sa.String(64), nullable=False),
    sa.Column("entity_id", sa.String(256), index=True),
    sa.Column("experiment_id", sa.String(64)),
    sa.Column("variant", sa.String(16), nullable=False, comment="champion or challenger"),
    sa.Column("shadow", sa.Boolean, nullable=False, comment="scored off the response path; not what the client got"),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("features", sa.Text, nullable=False, comment="the record as scored, JSON"),
    sa.Column("score", sa.Float, comment="probability of the positive class"),
    sa.Column("decision", sa.Integer, comment="1 when score >= threshold"),
    sa.Column("threshold", sa.Float),
    sa.Column("latency_ms", sa.Float, comment="from routing to answer, inside the service"),
    sa.Column("error", sa.Text, comment="why the model could not score this record"),
    sa.Column("outcome", sa.Float, comment="observed outcome from POST /feedback"),
    sa.Column("outcome_at", sa.DateTime(timezone=True)),
    sa.Index("ix_predictions_experiment", "dataset", "experiment_id", "logged_at"),
)

#: Columns a reader gets by default (every column but the surrogate id).
COLUMNS = [c.name for c in predictions.columns if c.name != "id"]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # WAL: readers (GET /experiment, Dagster) never block the writers of several workers.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def connect(url: str) -> sa.Engine:
    """An engine on the prediction log database, its tables created if they do not exist yet.

    Several workers start at once and may race to create the tables: whoever loses
    finds them there.
    """
    if url.startswith("sqlite"):
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=4)
    for attempt in range(5):
        try:
            metadata.create_all(engine)
            break
        except (sa.exc.OperationalError, sa.exc.IntegrityError, sa.exc.ProgrammingError):
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    return engine


class PredictionLogWriter:
    """Queues rows in memory and inserts them from a background thread, in batches.

    ``append`` costs a deque append on the request path. Rows reach the table within
    ``flush_interval`` seconds (sooner when ``batch_size`` rows are waiting).
    """

    def __init__(self, engine: sa.Engine, flush_interval: float = 0.2, batch_size: int = 2000) -> None:
        self.engine = engine
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.written = 0
        self._rows: collections.deque[dict] = collections.deque()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._flushing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return len(self._rows)

    def append(self, row: dict) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.batch_size:
            self._wake.set()

    def flush(self) -> int:
        """Write every queued row now; returns how many. On a database error the rows stay queued."""
        written = 0
        with self._flushing:
            while self._rows:
                batch = [self._rows.popleft() for _ in range(min(len(self._rows), self.batch_size))]
                try:
                    with self.engine.begin() as connection:
                        connection.execute(predictions.insert(), batch)
                except Exception:
                    self._rows.extendleft(reversed(batch))
                    raise
                written += len(batch)
                self.written += len(batch)
        return written

    def _run(self) -> None:
        failures = 0
        while not self._closing.is_set():
            self._wake.wait(self.flush_interval * (2 ** min(failures, 5)))
            self._wake.clear()
            try:
                self.flush()
                failures = 0
            except Exception as exc:  # the database is down or refuses: keep the rows, retry with backoff
                failures += 1
                logger.error("prediction log: %d rows waiting, insert failed (%s); retrying", self.pending, exc)

    def close(self, timeout: float = 30.0) -> None:
        """Stop the background thread and write what is left (retrying for up to ``timeout`` seconds)."""
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.flush()
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    logger.error("prediction log: %d rows could not be written at shutdown: %s", self.pending, exc)
                    raise
                time.sleep(0.5)


@dataclass(frozen=True)
class FeedbackResult:
    """How many logged predictions the outcome was attached to, and how many of them changed."""

    matched: int
    updated: int


def record_outcome(engine: sa.Engine, dataset: str, outcome: float, *, request_id: str | None = None,
                   entity_id: str | None = None) -> FeedbackResult:
    """Attach an observed outcome to a request's predictions (its shadow too) or to an entity's so far.

    Idempotent: sending the same outcome again matches the same rows and changes none;
    a different outcome replaces the earlier one (a correction).
    """
    if (request_id is None) == (entity_id is None):
        raise ValueError("give exactly one of request_id or entity_id")
    match = predictions.c.request_id == request_id if request_id is not None else predictions.c.entity_id == entity_id
    where = sa.and_(predictions.c.dataset == dataset, match)
    with engine.begin() as connection:
        matched = connection.execute(sa.select(sa.func.count()).select_from(predictions).where(where)).scalar_one()
        changed = connection.execute(
            predictions.update()
            .where(where, sa.or_(predictions.c.outcome.is_(None), predictions.c.outcome != outcome))
            .values(outcome=outcome, outcome_at=utc_now())
        ).rowcount
    return FeedbackResult(matched=int(matched), updated=int(changed))


def read_predictions(engine: sa.Engine, dataset: str, experiment_id: str | None = None,
                     since: dt.datetime | None = None, until: dt.datetime | None = None,
                     columns: list[str] | None = None) -> pd.DataFrame:
    """Logged rows of a dataset (optionally one experiment, a time window), oldest first."""
    chosen = [predictions.c[name] for name in (columns or COLUMNS)]
    query = sa.select(*chosen).where(predictions.c.dataset == dataset)
    if experiment_id is not None:
        query = query.where(predictions.c.experiment_id == experiment_id)
    if since is not None:
        query = query.where(predictions.c.logged_at >= since)
    if until is not None:
        query = query.where(predictions.c.logged_at <= until)
    with engine.connect() as connection:
        return pd.read_sql(query.order_by(predictions.c.id), connection)


@dataclass(frozen=True)
class LogSummary:
    """What the Dagster observation sensor reports about one dataset's log."""

    rows: int
    with_outcome: int
    last_logged_at: dt.datetime | None
    by_variant: dict[str, int]


def summarize(engine: sa.Engine, dataset: str) -> LogSummary:
    p = predictions.c
    with engine.connect() as connection:
        rows, with_outcome, last = connection.execute(
            sa.select(sa.func.count(), sa.func.count(p.outcome), sa.func.max(p.logged_at)).where(p.dataset == dataset)
        ).one()
        by_variant = dict(connection.execute(
            sa.select(p.variant, sa.func.count()).where(p.dataset == dataset).group_by(p.variant)
        ).all())
    return LogSummary(int(rows), int(with_outcome), last, {str(k): int(v) for k, v in by_variant.items()})
