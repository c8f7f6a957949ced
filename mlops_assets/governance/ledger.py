"""The approval ledger: decisions on model versions, append-only, in SQL, chained by hashes.

SQLite under ``MLOPS_HOME/governance/`` by default; PostgreSQL (or any SQLAlchemy URL)
when ``MLOPS_APPROVALS_DB`` says so. Calling code sees one small interface,
:class:`DecisionLedger`: ``append``, ``records``, ``verify``.

- **Append-only.** The interface has no update or delete, and the database refuses
  them too: a trigger aborts every UPDATE and DELETE (and TRUNCATE on PostgreSQL).
- **Tamper-evident.** Each record stores the hash of the one before it and its own
  hash over all its fields. Someone who drops the trigger and edits, deletes or
  inserts a row breaks the chain, and :meth:`DecisionLedger.verify` says where. The
  newest records are also anchored outside the table (a tag on the model version in
  MLflow, see ``approvals.py``), so cutting off the tail is detected too.
- **No forks.** ``prev_hash`` is unique: two decisions racing for the same place in
  the chain cannot both be written; the loser re-reads the head and retries. On
  PostgreSQL writers also queue on an advisory lock, so they rarely race at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from mlops_assets.errors import PlatformError
from mlops_assets.settings import Settings

GENESIS = "0" * 64
_CHAIN_LOCK = 7_340_512  # PostgreSQL advisory-lock key of the chain head
TABLE = "governance_decisions"
DECISIONS = ("approve", "reject")

_metadata = sa.MetaData()
_decisions = sa.Table(
    TABLE, _metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(200), nullable=False, index=True),
    sa.Column("version", sa.String(40), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("person", sa.String(200), nullable=False),
    sa.Column("role", sa.String(200), nullable=False),
    sa.Column("decision", sa.String(10), nullable=False),
    sa.Column("comment", sa.Text, nullable=False),
    sa.Column("decided_at", sa.String(40), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("record_hash", sa.String(64), nullable=False, unique=True),
    sqlite_autoincrement=True,
)

_SQLITE_GUARDS = [
    f"CREATE TRIGGER IF NOT EXISTS {TABLE}_no_update BEFORE UPDATE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END",
    f"CREATE TRIGGER IF NOT EXISTS {TABLE}_no_delete BEFORE DELETE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END",
]
_POSTGRES_GUARDS = [
    f"CREATE OR REPLACE FUNCTION {TABLE}_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{TABLE} is append-only'; END $$",
    f"CREATE OR REPLACE TRIGGER {TABLE}_no_change BEFORE UPDATE OR DELETE ON {TABLE} "
    f"FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()",
    f"CREATE OR REPLACE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
    f"FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_append_only()",
]


class LedgerError(PlatformError, RuntimeError):
    """The ledger cannot be trusted (its chain is broken) or cannot be reached."""


@dataclass(frozen=True)
class Decision:
    seq: int
    model: str
    version: str
    content_hash: str
    person: str
    role: str
    decision: str
    comment: str
    decided_at: str
    prev_hash: str
    record_hash: str

    def to_dict(self) -> dict:
        return asdict(self)


def record_hash(fields: dict) -> str:
    """Hash over every field but ``seq`` (assigned by the database) and the hash itself."""
    payload = {k: fields[k] for k in ("model", "version", "content_hash", "person", "role", "decision", "comment",
                                      "decided_at", "prev_hash")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def ledger_url(settings: Settings) -> str:
    """``MLOPS_APPROVALS_DB``, or a SQLite file under the platform home."""
    configured = os.environ.get("MLOPS_APPROVALS_DB")
    if configured:
        return configured
    folder = settings.home / "governance"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'approvals.db'}"


class DecisionLedger:
    """Append-only, hash-chained decisions in one SQL table (SQLite or PostgreSQL)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = sa.create_engine(url, future=True)
        try:
            _metadata.create_all(self.engine)
            guards = _POSTGRES_GUARDS if self.engine.dialect.name == "postgresql" else _SQLITE_GUARDS
            with self.engine.begin() as connection:
                for statement in guards:
                    connection.exec_driver_sql(statement)
        except sa.exc.OperationalError as exc:
            self.engine.dispose()
            raise LedgerError(f"approval ledger {self._shown_url()} cannot be opened: "
                              f"{str(exc.orig).strip().splitlines()[0]}") from exc

    def _shown_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    def append(self, model: str, version: str, content_hash: str, person: str, role: str, decision: str,
               comment: str) -> Decision:
        """Write one decision at the head of the chain; retried when another writer got there first."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
        for attempt in range(50):
            try:
                with self.engine.begin() as connection:
                    if self.engine.dialect.name == "postgresql":
                        # Writers queue here for the head of the chain instead of racing for it.
                        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_CHAIN_LOCK})")
                    head = connection.execute(
                        sa.select(_decisions.c.record_hash).order_by(_decisions.c.seq.desc()).limit(1)).scalar()
                    fields = {"model": model, "version": str(version), "content_hash": content_hash,
                              "person": person, "role": role, "decision": decision, "comment": comment,
                              "decided_at": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
                              "prev_hash": head or GENESIS}
                    fields["record_hash"] = record_hash(fields)
                    seq = connection.execute(_decisions.insert().values(**fields)).inserted_primary_key[0]
            except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
                if isinstance(exc, sa.exc.OperationalError) and "locked" not in str(exc.orig):
                    raise LedgerError(f"approval ledger {self._shown_url()} cannot be written: "
                                      f"{str(exc.orig).strip().splitlines()[0]}; nothing recorded") from exc
                # Another writer extended the chain from the same head (or holds SQLite's write lock): again.
                time.sleep(random.uniform(0.005, 0.05) * (1 + attempt / 10))
                continue
            return Decision(seq=int(seq), **fields)
        raise LedgerError(f"approval ledger {self._shown_url()}: too many concurrent writers; try again")

    def records(self, model: str | None = None, version: str | None = None) -> list[Decision]:
        query = sa.select(_decisions).order_by(_decisions.c.seq)
        if model is not None:
            query = query.where(_decisions.c.model == model)
        if version is not None:
            query = query.where(_decisions.c.version == str(version))
        with self.engine.connect() as connection:
            return [Decision(**row._mapping) for row in connection.execute(query)]

    def verify(self) -> list[str]:
        """Every break in the chain, as a sentence; empty when the ledger is intact."""
        problems = []
        expected_prev = GENESIS
        for record in self.records():
            fields = record.to_dict()
            if record.prev_hash != expected_prev:
                problems.append(f"record #{record.seq} does not follow the record before it "
                                "(a record was deleted, inserted or reordered)")
            if record_hash(fields) != record.record_hash:
                problems.append(f"record #{record.seq} ({record.person} {record.decision}s {record.model} "
                                f"v{record.version}) was altered after it was written")
            expected_prev = record.record_hash
        return problems

    def require_intact(self) -> None:
        problems = self.verify()
        if problems:
            raise LedgerError(f"the approval ledger {self._shown_url()} has been tampered with: {'; '.join(problems)}. "
                              "Nothing is recorded or promoted until it is restored from a backup")
