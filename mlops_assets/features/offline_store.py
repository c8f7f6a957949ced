"""The offline store: one Delta Lake table per feature-view version, under MLOPS_HOME.

Why Delta (``deltalake``, delta-rs): every commit is a table version that stays
readable (time travel by version number or by time), appends are cheap, and the
tables are open Parquet + a JSON log that DuckDB, Spark or Polars can read. DuckDB
reads them through ``DeltaTable(...).to_pyarrow_dataset()``: its own ``delta``
extension is downloaded at run time, which fails offline (DESIGN.md, pitfalls).

A materialization appends only what changed: rows whose (entity, event time) is new,
or whose values differ from what the table holds for that key (a correction). Each
row carries ``_ingested_at`` (the materialization's clock, strictly increasing per
table), which breaks ties between rows with the same entity and event time, and
``_row_hash`` (of the feature values), which makes "what changed" one anti-join.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from mlops_assets.errors import PlatformError

INGESTED_AT = "_ingested_at"
ROW_HASH = "_row_hash"
INGESTED_TYPE = pa.timestamp("us", tz="UTC")


class OfflineStoreError(PlatformError, RuntimeError):
    """The offline store refused a write or cannot answer a read (schema change, unknown version)."""


@dataclass(frozen=True)
class WriteResult:
    table_version: int
    previous_version: int | None
    rows_in_batch: int
    rows_appended: int
    corrections: int
    duplicate_keys_in_batch: int
    ingested_at: datetime | None


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DeltaOfflineStore:
    """Delta tables under ``root``: ``<view>/<view version>/`` holds every materialization of that definition."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, view: str, view_version: str) -> Path:
        return self.root / view / view_version

    def table(self, view: str, view_version: str, as_of: int | datetime | None = None) -> DeltaTable | None:
        """The table as of a version number or a time; None when nothing was ever written."""
        path = self.path(view, view_version)
        try:
            table = DeltaTable(str(path))
        except TableNotFoundError:
            return None
        if as_of is None:
            return table
        try:
            table.load_as_version(as_of)
        except (DeltaError, ValueError, OSError) as exc:
            raise OfflineStoreError(
                f"view {view!r} (version {view_version}) has no table version {as_of!r}: {exc}; "
                f"its versions are 0..{DeltaTable(str(path)).version()}"
            ) from exc
        return table

    def latest_version(self, view: str, view_version: str) -> int | None:
        table = self.table(view, view_version)
        return None if table is None else table.version()

    def dataset(self, view: str, view_version: str, as_of: int | datetime | None = None) -> pads.Dataset | None:
        table = self.table(view, view_version, as_of)
        return None if table is None else table.to_pyarrow_dataset()

    def write(self, view: str, view_version: str, batch: pa.Table, entity: str, time: str,
              ingested_at: datetime | None = None) -> WriteResult:
        """Append the rows of ``batch`` that are new or changed; nothing is committed when nothing changed.

        A batch whose schema differs from the table's (a type changed without a new view
        version) is refused before anything is written.
        """
        existing = self.table(view, view_version)
        previous = None if existing is None else existing.version()
        if existing is not None:
            stored = pa.schema([f for f in existing.to_pyarrow_dataset().schema if f.name not in (INGESTED_AT, ROW_HASH)])
            _check_schema(view, view_version, stored, batch.schema)
        features = [c for c in batch.column_names if c not in (entity, time)]
        con = duckdb.connect()
        con.register("batch", batch.append_column("_position", pa.array(np.arange(batch.num_rows, dtype=np.int64))))
        keys = f"{_quoted(entity)}, {_quoted(time)}"
        row_hash = f"(hash({', '.join(_quoted(c) for c in features)}) & 9223372036854775807)::BIGINT"
        # Within one batch, the later row of a repeated (entity, event time) is the correction that wins.
        con.execute(f"""CREATE TEMP TABLE incoming AS
            SELECT * EXCLUDE (_position), {row_hash} AS {ROW_HASH} FROM batch
            QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY _position DESC) = 1""")
        unique_rows = con.sql("SELECT count(*) FROM incoming").fetchall()[0][0]
        corrections = 0
        if existing is not None:
            con.register("stored", existing.to_pyarrow_dataset())
            con.execute(f"""CREATE TEMP TABLE latest AS
                SELECT {keys}, arg_max({ROW_HASH}, {INGESTED_AT}) AS {ROW_HASH} FROM stored GROUP BY ALL""")
            corrections = con.sql(f"""SELECT count(*) FROM incoming i JOIN latest l USING ({keys})
                WHERE i.{ROW_HASH} <> l.{ROW_HASH}""").fetchall()[0][0]
            changed = con.sql(f"""SELECT i.* FROM incoming i LEFT JOIN latest l USING ({keys})
                WHERE l.{ROW_HASH} IS NULL OR i.{ROW_HASH} <> l.{ROW_HASH}""").to_arrow_table()
        else:
            changed = con.sql("SELECT * FROM incoming").to_arrow_table()
        con.close()
        result = dict(rows_in_batch=batch.num_rows, duplicate_keys_in_batch=batch.num_rows - unique_rows,
                      corrections=int(corrections), previous_version=previous)
        if changed.num_rows == 0:
            return WriteResult(table_version=previous, rows_appended=0, ingested_at=None, **result)  # type: ignore[arg-type]
        stamp = self._next_ingestion_time(existing, ingested_at)
        changed = changed.append_column(INGESTED_AT, pa.array([stamp] * changed.num_rows, INGESTED_TYPE))
        ordered = pa.schema([*batch.schema, pa.field(ROW_HASH, pa.int64()), pa.field(INGESTED_AT, INGESTED_TYPE)])
        changed = changed.select(ordered.names).cast(ordered)
        metadata = {"view": view, "view_version": view_version, "rows_appended": str(changed.num_rows),
                    "corrections": str(corrections), "ingested_at": stamp.isoformat()}
        path = self.path(view, view_version)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_deltalake(str(path), changed, mode="append", commit_properties=CommitProperties(custom_metadata=metadata))
        return WriteResult(table_version=DeltaTable(str(path)).version(), rows_appended=changed.num_rows,
                           ingested_at=stamp, **result)

    @staticmethod
    def _next_ingestion_time(existing: DeltaTable | None, requested: datetime | None) -> datetime:
        """Now (or ``requested``), but always later than anything the table holds: ties must break one way."""
        stamp = (requested or datetime.now(timezone.utc)).astimezone(timezone.utc)
        if existing is not None:
            con = duckdb.connect()
            con.register("stored", existing.to_pyarrow_dataset())
            ((last,),) = con.sql(f"SELECT max({INGESTED_AT}) FROM stored").fetchall()
            con.close()
            if last is not None:
                last = last.astimezone(timezone.utc)
                if stamp <= last:
                    stamp = last + timedelta(microseconds=1)
        return stamp

    def history(self, view: str, view_version: str) -> list[dict]:
        """One entry per table version: version, commit time, rows appended, corrections."""
        table = self.table(view, view_version)
        if table is None:
            return []
        return sorted(
            ({"table_version": h["version"], "committed_at": datetime.fromtimestamp(h["timestamp"] / 1000, timezone.utc),
              "rows_appended": int(h.get("rows_appended", h.get("operationMetrics", {}).get("num_added_rows", 0))),
              "corrections": int(h.get("corrections", 0))} for h in table.history()),
            key=lambda h: h["table_version"],
        )

    def disk_bytes(self, view: str | None = None) -> int:
        folder = self.root if view is None else self.root / view
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _check_schema(view: str, view_version: str, stored: pa.Schema, incoming: pa.Schema) -> None:
    if stored.names != incoming.names:
        raise OfflineStoreError(
            f"view {view!r} version {view_version}: columns changed from {stored.names} to {incoming.names} "
            "without a new view version; change the view's definition so it gets a new version"
        )
    for old, new in zip(stored, incoming):
        # Delta has no naive/aware distinction beyond timestamp_ntz vs timestamp(UTC): compare what it stores.
        if not old.type.equals(new.type):
            raise OfflineStoreError(
                f"view {view!r} version {view_version}: feature {new.name!r} changed type from {old.type} to "
                f"{new.type} without a new view version; nothing was written. Declare the new type in the "
                "view's definition (which makes a new version) instead"
            )
