"""The feature store a user calls: one object per dataset over the offline store, the registry and the online store.

    store = FeatureStore(config)                      # MLOPS_HOME from the environment
    store.materialize("usage", raw_rows)              # compute, validate, append what changed
    store.get_historical_features(labels, ["usage:data_usage_gb", "monthly_charges"])
    store.get_historical_features(labels, features, as_of=manifest_or_time_or_versions)
    store.publish_online()                            # latest validated version of every view
    store.get_online_features(["C0000042"], features) # TTL enforced here too
    store.online_features_one("C0000042")             # the serving fast path: {feature: value}

What training reads and what the service serves is the newest table version of each
view that passed its checks (recorded in the registry), never merely the newest one.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from mlops_assets.config import DatasetConfig
from mlops_assets.data.validation import DataValidationError, ValidationReport, validate
from mlops_assets.features.checks import DistributionReport, compare_distributions, snapshot_stats, view_schema
from mlops_assets.features.definitions import FeatureView, feature_views, view_by_name
from mlops_assets.features.offline_store import INGESTED_AT, DeltaOfflineStore, WriteResult
from mlops_assets.features.online_store import OnlineStore, open_online_store
from mlops_assets.features.registry import FeatureRegistry
from mlops_assets.features.retrieval import (
    RetrievalError,
    ViewRead,
    checked_entity_frame,
    point_in_time_join,
    resolve_features,
)
from mlops_assets.settings import Settings

PUBLISH_CHUNK = 50_000


@dataclass
class Materialization:
    view: FeatureView
    write: WriteResult
    stats: dict
    distribution: DistributionReport
    validated: bool
    seconds: float


def content_hash(frame: pd.DataFrame) -> str:
    """sha256 of the frame's Arrow IPC bytes: equal hashes, byte-identical data (columns, types, values, order)."""
    bare = frame.copy(deep=False)
    bare.attrs = {}  # pandas writes attrs (our manifest, which holds this hash) into the Arrow metadata
    table = pa.Table.from_pandas(bare, preserve_index=False)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue()).hexdigest()


class FeatureStore:
    def __init__(self, config: DatasetConfig, home: Path | None = None, online: OnlineStore | None = None):
        self.config = config
        self.home = Path(home) if home is not None else Settings.from_env().home
        self.root = self.home / "feature_store" / config.name
        self.offline = DeltaOfflineStore(self.root / "offline")
        self.registry = FeatureRegistry(self.root / "registry")
        self._online = online
        self._plans: dict[tuple | None, Any] = {}

    # Definitions ------------------------------------------------------------------------------
    @property
    def views(self) -> list[FeatureView]:
        return feature_views(self.config)

    def view(self, name: str) -> FeatureView:
        return view_by_name(self.config, name)

    @property
    def online(self) -> OnlineStore:
        if self._online is None:
            self._online = open_online_store(self.home)
        return self._online

    def close(self) -> None:
        """Close the online store's connection (if one was opened)."""
        if self._online is not None:
            self._online.close()

    # Materialization ---------------------------------------------------------------------------
    def compute_view(self, name: str, rows: pd.DataFrame) -> pa.Table:
        return self.view(name).compute(rows)

    def validate_view(self, name: str, batch: pa.Table) -> ValidationReport:
        """The view's pandera schema on computed rows (lazy: every failure, never raises)."""
        view = self.view(name)
        frame = batch.to_pandas(integer_object_nulls=False)
        return validate(view_schema(self.config, view), frame, view.entity_column)

    def write_view(self, name: str, batch: pa.Table, ingested_at: datetime | None = None) -> Materialization:
        """Append what changed, then compare the new snapshot with the validated one before it.

        The new table version is recorded as validated only when the distribution checks pass;
        until then training and serving keep reading the previous validated version.
        """
        started = time.perf_counter()
        view = self.view(name)
        self.registry.record_definition(view)
        write = self.offline.write(view.name, view.version, batch, view.entity_column, view.time_column, ingested_at)
        previous_validated = self.registry.latest_validated(view.name, view.version)
        recorded = self.registry.materialization(view.name, view.version, write.table_version)
        if write.rows_appended == 0 and recorded is not None:
            report = DistributionReport(compared_with=write.table_version)
            return Materialization(view, write, recorded["stats"], report, bool(recorded.get("validated")),
                                   time.perf_counter() - started)
        dataset = self.offline.dataset(view.name, view.version, write.table_version)
        stats = snapshot_stats(view, dataset)
        previous_stats = None
        if previous_validated is not None and previous_validated != write.table_version:
            previous_stats = self.registry.materialization(view.name, view.version, previous_validated)["stats"]
        report = compare_distributions(view, previous_stats, stats, dataset,
                                       previous_validated if previous_stats is not None else None)
        history = {h["table_version"]: h for h in self.offline.history(view.name, view.version)}
        committed = history.get(write.table_version, {}).get("committed_at")
        self.registry.record_materialization(view.name, view.version, write.table_version, {
            "committed_at": str(committed), "rows_appended": write.rows_appended, "corrections": write.corrections,
            "stats": stats, "validated": report.passed, "distribution_failures": report.failures,
            "compared_with": report.compared_with,
        })
        return Materialization(view, write, stats, report, report.passed, time.perf_counter() - started)

    def materialize(self, name: str, rows: pd.DataFrame, ingested_at: datetime | None = None) -> Materialization:
        """Compute, validate (refusing invalid rows before anything is written) and write one view."""
        batch = self.compute_view(name, rows)
        report = self.validate_view(name, batch)
        if not report.passed:
            raise DataValidationError(report, f"feature view {name!r}")
        return self.write_view(name, batch, ingested_at)

    # Versions ---------------------------------------------------------------------------------
    def _view_at(self, name: str, version: str) -> FeatureView:
        current = {v.name: v for v in self.views}
        if name in current and current[name].version == version:
            return current[name]
        entry = self.registry.entry(name, version)
        if entry is None:
            raise RetrievalError(f"view {name!r} has no registered version {version!r}")
        return FeatureView.from_registry(entry)

    def resolve_as_of(self, view_names: list[str], as_of: Any = None) -> dict[str, tuple[FeatureView, int | None]]:
        """Which (view definition, table version) each view is read at.

        ``as_of``: None (newest validated), a time (newest validated committed by then), a
        ``{view: table_version}`` mapping, or a training-set manifest (exact view versions too).
        """
        if isinstance(as_of, dict) and "views" in as_of:
            recorded = as_of["views"]
            missing = [v for v in view_names if v not in recorded]
            if missing:
                raise RetrievalError(f"the manifest records no version of view(s) {missing}")
            return {v: (self._view_at(v, recorded[v]["view_version"]), recorded[v]["table_version"]) for v in view_names}
        resolved = {}
        moment = None
        if as_of is not None and not isinstance(as_of, (dict, int)):
            moment = pd.Timestamp(as_of)
            moment = moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
        for name in view_names:
            view = self.view(name)
            if isinstance(as_of, dict) and as_of:
                if name not in as_of:
                    raise RetrievalError(f"as_of gives no table version for view {name!r}")
                version = int(as_of[name])
                if self.offline.table(view.name, view.version) is None or version > self.offline.latest_version(view.name, view.version):
                    raise RetrievalError(f"view {name!r} (version {view.version}) has no table version {version}; "
                                         f"newest is {self.offline.latest_version(view.name, view.version)}")
            elif isinstance(as_of, int):
                raise RetrievalError("as_of=<int> is ambiguous across views: give {view: table_version}, a time or a manifest")
            else:
                version = self._validated_at(view, moment)
            resolved[name] = (view, version)
        return resolved

    def _validated_at(self, view: FeatureView, moment: pd.Timestamp | None) -> int:
        entry = self.registry.entry(view.name, view.version) or {"materializations": {}}
        candidates = [
            int(v) for v, m in entry["materializations"].items()
            if m.get("validated") and (moment is None or pd.Timestamp(m["committed_at"]) <= moment)
        ]
        if not candidates:
            when = "" if moment is None else f" committed by {moment}"
            raise RetrievalError(f"view {view.name!r} (version {view.version}) has no validated materialization{when}; "
                                 "materialize the features first (`mlops materialize`)")
        return max(candidates)

    def _has_duplicate_keys(self, view: FeatureView, table_version: int) -> bool:
        return any(h["corrections"] > 0 for h in self.offline.history(view.name, view.version)
                   if h["table_version"] <= table_version)

    # Retrieval ---------------------------------------------------------------------------------
    def get_historical_features(self, entity_df: pd.DataFrame, features: list[str], as_of: Any = None,
                                entity_column: str | None = None, timestamp_column: str | None = None,
                                output: str = "pandas") -> pd.DataFrame | pa.Table:
        """For each row of ``entity_df``: the features' values as they were at its timestamp (see retrieval.py)."""
        requested = resolve_features(self._views_for(as_of), features)
        entity_column = entity_column or self.config.entity_column
        timestamp_column = timestamp_column or self.config.time_column
        versions = self.resolve_as_of(list(requested), as_of)
        reads = []
        aware = None
        for name, names in requested.items():
            view, table_version = versions[name]
            dataset = self.offline.dataset(view.name, view.version, table_version)
            if dataset is not None:
                aware = getattr(dataset.schema.field(view.time_column).type, "tz", None) is not None
            reads.append(ViewRead(view, names, dataset, self._has_duplicate_keys(view, table_version)))
        frame = checked_entity_frame(entity_df, entity_column, timestamp_column, aware)
        return point_in_time_join(frame, reads, entity_column, timestamp_column, output)

    def _views_for(self, as_of: Any) -> list[FeatureView]:
        """The definitions a read resolves feature names against: a manifest's recorded ones, else the config's."""
        if isinstance(as_of, dict) and "views" in as_of:
            return [self._view_at(name, v["view_version"]) for name, v in as_of["views"].items()]
        return self.views

    def feature_versions(self, features: list[str], as_of: Any = None) -> dict[str, dict]:
        requested = resolve_features(self._views_for(as_of), features)
        resolved = self.resolve_as_of(list(requested), as_of)
        return {name: {"view_version": view.version, "table_version": table_version,
                       "ttl": None if view.ttl is None else str(view.ttl), "features": requested[name]}
                for name, (view, table_version) in resolved.items()}

    # Label events -------------------------------------------------------------------------------
    def write_labels(self, labels: pd.DataFrame) -> tuple[int, str]:
        """Store the label events as a new version of the labels table, unless identical to its newest.

        Returns (table version, content hash). Every row is kept, duplicates too: labels are events.
        """
        digest = content_hash(labels)
        path = self.root / "labels"
        try:
            table = DeltaTable(str(path))
            newest = table.history(1)[0]
            if newest.get("content_hash") == digest:
                return table.version(), digest
        except TableNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        write_deltalake(str(path), pa.Table.from_pandas(labels, preserve_index=False), mode="overwrite",
                        schema_mode="overwrite", commit_properties=CommitProperties(custom_metadata={"content_hash": digest}))
        return DeltaTable(str(path)).version(), digest

    def read_labels(self, table_version: int) -> pd.DataFrame:
        try:
            return DeltaTable(str(self.root / "labels"), version=table_version).to_pandas()
        except Exception as exc:  # noqa: BLE001 - delta-rs raises several kinds for a missing version
            raise RetrievalError(f"dataset {self.config.name!r}: the labels table has no version {table_version}: {exc}") from exc

    # Online --------------------------------------------------------------------------------------
    def publish_online(self, views: list[str] | None = None, on_chunk=None,
                       chunk_rows: int = PUBLISH_CHUNK) -> dict[str, dict]:
        """Write each view's latest values (of its newest validated table version) to the online store.

        A view whose published version is already that one is left alone.
        """
        outcome = {}
        current = self.online.publications(self.config.name)
        for view in self.views if views is None else [self.view(v) for v in views]:
            table_version = self._validated_at(view, None)
            published = current.get(view.name)
            if published and published.view_version == view.version and published.table_version == table_version:
                outcome[view.name] = {"table_version": table_version, "entities": published.entities, "published": False}
                continue
            started = time.perf_counter()
            dataset = self.offline.dataset(view.name, view.version, table_version)
            rows = _latest_payloads(view, dataset, chunk_rows)
            publication = self.online.publish(self.config.name, view.name, view.feature_names, rows, view.version,
                                              table_version, None if view.ttl is None else view.ttl.total_seconds(),
                                              on_chunk)
            outcome[view.name] = {"table_version": table_version, "entities": publication.entities, "published": True,
                                  "seconds": round(time.perf_counter() - started, 3)}
        self._plans.clear()
        return outcome

    def _plan(self, features: tuple[str, ...] | None) -> _ReadPlan:
        """Which views a feature list reads and where each feature sits, cached per feature list."""
        plan = self._plans.get(features)
        if plan is None:
            wanted = list(features) if features else [f.reference for v in self.views for f in v.features]
            requested = resolve_features(self.views, wanted)
            names = list(requested)
            plan = _ReadPlan(names, [(f, i) for i, n in enumerate(names) for f in requested[n]])
            self._plans[features] = plan
        return plan

    def online_features_one(self, entity_id: Any, features: list[str] | None = None,
                            now: datetime | None = None) -> dict[str, Any]:
        """{feature: value} for one entity: None for an unknown entity, a never-published view or an expired value."""
        plan = self._plan(tuple(features) if features else None)
        return plan.row(self.online.read(self.config.name, plan.views, str(entity_id)), _now_us(now))

    def online_features_many(self, entity_ids: list[Any], features: list[str] | None = None,
                             now: datetime | None = None) -> list[dict[str, Any]]:
        """:meth:`online_features_one` for several entities in one read (one round trip on Redis)."""
        plan = self._plan(tuple(features) if features else None)
        now_us = _now_us(now)
        found = self.online.read_many(self.config.name, plan.views, [str(e) for e in entity_ids])
        return [plan.row(f, now_us) for f in found]

    def get_online_features(self, entity_ids: list[Any], features: list[str] | None = None,
                            now: datetime | None = None) -> pd.DataFrame:
        """One row per entity id (in order), the entity column first; nulls where there is no fresh value."""
        positions = self._plan(tuple(features) if features else None).positions
        rows = self.online_features_many(entity_ids, features, now)
        frame = pd.DataFrame(rows, columns=[p[0] for p in positions])
        frame.insert(0, self.config.entity_column, list(entity_ids))
        return frame


@dataclass
class _ReadPlan:
    """The views a feature list reads and, per set of publications read, where each feature's value sits."""

    views: list[str]
    positions: list[tuple[str, int]]  # (feature, index of its view)
    layouts: dict[tuple, list[tuple[str, int, int | None]]] = field(default_factory=dict)

    def row(self, found: list, now_us: int) -> dict[str, Any]:
        """{feature: value} from one entity's payloads (see OnlineStore.read): the hot path of a lookup."""
        keys = tuple([None if hit is None else hit[0].key for hit in found])
        layout = self.layouts.get(keys)
        if layout is None:
            layout = self.layouts[keys] = self._layout(found)
        decoded = [_decode(hit, now_us) for hit in found]
        return {f: None if p is None or (values := decoded[i]) is None else values[p] for f, i, p in layout}

    def _layout(self, found: list) -> list[tuple[str, int, int | None]]:
        """(feature, view index, position in the payload): None where the view is unpublished or predates the feature."""
        if len(self.layouts) > 64:  # publications replaced over a long life: keep only current ones
            self.layouts.clear()
        indexes = [None if hit is None else {c: p + 1 for p, c in enumerate(hit[0].columns)} for hit in found]
        return [(f, i, None if indexes[i] is None else indexes[i].get(f)) for f, i in self.positions]


def _now_us(now: datetime | None) -> int:
    if now is None:
        return time.time_ns() // 1000
    moment = now
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1_000_000)


def _decode(hit, now_us: int) -> list | None:
    """The payload's values, or None when missing or older than the publication's TTL."""
    if hit is None or hit[1] is None:
        return None
    publication, payload = hit
    values = json.loads(payload)
    if publication.ttl_seconds is not None and now_us - values[0] > publication.ttl_seconds * 1_000_000:
        return None
    return values


def _latest_payloads(view: FeatureView, dataset, chunk_rows: int) -> Any:
    """Chunks of (entity id, JSON ``[event_time_us, values...]``) of the latest row per entity.

    DuckDB builds the JSON (its json functions are built in, and doubles round-trip
    exactly), so Python only moves finished strings: 1M entities x 20 features in seconds.
    """
    con = duckdb.connect()
    con.register("ds", dataset)
    q = lambda c: '"' + c.replace('"', '""') + '"'  # noqa: E731
    values = ", ".join(q(c) for c in view.feature_names)
    reader = con.sql(
        f"SELECT {q(view.entity_column)}::VARCHAR, json_array(epoch_us({q(view.time_column)}), {values})::VARCHAR "
        f"FROM ds QUALIFY row_number() OVER (PARTITION BY {q(view.entity_column)} ORDER BY {q(view.time_column)} DESC, "
        f"{INGESTED_AT} DESC) = 1").to_arrow_reader(chunk_rows)
    try:
        for batch in reader:
            yield list(zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()))
    finally:
        con.close()
