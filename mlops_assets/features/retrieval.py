"""Point-in-time correct retrieval: one DuckDB query with an ASOF LEFT JOIN per feature view.

For each row (entity E, timestamp T) of the entity frame, each view contributes the
values of its latest row for E with event time <= T, when that row is no older than
the view's TTL, and explicit nulls otherwise. No row is ever dropped or repeated: the
result has exactly the entity frame's rows, in its order, duplicates included.
Among rows with the same entity and event time, the one ingested last wins.

The Delta tables are read as Arrow datasets (zero copy); DuckDB's own ``delta``
extension is not used (it is downloaded at run time).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from mlops_assets.errors import PlatformError
from mlops_assets.features.definitions import FeatureView
from mlops_assets.features.offline_store import INGESTED_AT

ROW = "__mlops_row"


class RetrievalError(PlatformError, ValueError):
    """An entity frame or feature request that cannot be answered as asked."""


@dataclass(frozen=True)
class ViewRead:
    """One view's part of a retrieval: which features, from which table version."""

    view: FeatureView
    features: list[str]
    dataset: pads.Dataset | None  # None: nothing materialized at that version -> all nulls
    has_duplicate_keys: bool = True


def resolve_features(views: list[FeatureView], requested: list[str]) -> dict[str, list[str]]:
    """``["feature", "view:feature", ...]`` -> {view: [features]} in request order; unknown names are errors."""
    by_view = {v.name: v for v in views}
    owner = {f: v.name for v in views for f in v.feature_names}
    resolved: dict[str, list[str]] = {}
    if isinstance(requested, str):
        requested = [requested]
    if not requested:
        raise RetrievalError("no features requested")
    for reference in requested:
        view_name, _, name = reference.rpartition(":")
        if view_name:
            if view_name not in by_view:
                raise RetrievalError(f"unknown feature view {view_name!r} in {reference!r}; views: {sorted(by_view)}")
            if name not in by_view[view_name].feature_names:
                raise RetrievalError(f"view {view_name!r} has no feature {name!r}; it has {by_view[view_name].feature_names}")
        elif name in owner:
            view_name = owner[name]
        else:
            close = difflib.get_close_matches(name, list(owner), n=3)
            hint = f"; did you mean {close}?" if close else f"; known features: {sorted(owner)}"
            raise RetrievalError(f"unknown feature {name!r}{hint}")
        if name not in resolved.setdefault(view_name, []):
            resolved[view_name].append(name)
    return resolved


def checked_entity_frame(entity_df: pd.DataFrame, entity_column: str, timestamp_column: str,
                         aware: bool | None) -> pd.DataFrame:
    """The entity frame with a proper datetime column, or a RetrievalError saying what is wrong with it.

    ``aware`` is whether the store's event times carry a time zone (None: no view holds data yet).
    """
    if not isinstance(entity_df, pd.DataFrame):
        raise RetrievalError(f"entity_df must be a pandas DataFrame, got {type(entity_df).__name__}")
    missing = [c for c in (entity_column, timestamp_column) if c not in entity_df.columns]
    if missing:
        raise RetrievalError(f"entity_df lacks column(s) {missing} (it has {list(entity_df.columns)}); it needs the "
                             f"entity id {entity_column!r} and the timestamp {timestamp_column!r} of each row")
    times = entity_df[timestamp_column]
    if not pd.api.types.is_datetime64_any_dtype(times):
        values = times.dropna()
        zones = {getattr(v, "tzinfo", None) is not None for v in values if hasattr(v, "tzinfo")}
        if len(zones) > 1:
            raise RetrievalError(f"entity_df[{timestamp_column!r}] mixes timezone-naive and timezone-aware timestamps; "
                                 "make them all one kind (e.g. all UTC)")
        try:
            times = pd.to_datetime(times)
        except (TypeError, ValueError) as exc:
            raise RetrievalError(f"entity_df[{timestamp_column!r}] is not a timestamp column: {exc}") from exc
    if times.isna().any():
        rows = list(np.flatnonzero(times.isna().to_numpy())[:5])
        raise RetrievalError(f"entity_df[{timestamp_column!r}] has {int(times.isna().sum())} missing timestamps "
                             f"(rows {rows}); every row needs the time its features are wanted at")
    frame_aware = getattr(times.dtype, "tz", None) is not None
    if aware is not None and frame_aware != aware:
        kind = {True: "timezone-aware", False: "timezone-naive"}
        fix = ".dt.tz_convert(None)" if frame_aware else '.dt.tz_localize("UTC")'
        raise RetrievalError(
            f"entity_df[{timestamp_column!r}] is {kind[frame_aware]} but the feature store's event times are "
            f"{kind[aware]}; convert it ({fix}) so that times are compared as meant"
        )
    if frame_aware:
        times = times.dt.tz_convert("UTC")
    times = times.dt.floor("us")  # the store's resolution (Delta): compare like with like
    if times.equals(entity_df[timestamp_column]):
        return entity_df
    return entity_df.assign(**{timestamp_column: times})


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def point_in_time_join(entity_df: pd.DataFrame, reads: list[ViewRead], entity_column: str,
                       timestamp_column: str, output: str = "pandas") -> pd.DataFrame | pa.Table:
    """The entity frame plus the requested features, point-in-time correct (see the module docstring)."""
    clash = [f for r in reads for f in r.features if f in entity_df.columns]
    if clash:
        raise RetrievalError(f"entity_df already has column(s) {clash}, which are also requested features; "
                             "drop or rename them")
    con = duckdb.connect()
    try:
        # The row number is taken here, not by a window in SQL: DuckDB scans in parallel.
        con.register("entity_df", entity_df.assign(**{ROW: np.arange(len(entity_df), dtype=np.int64)}))
        entity_type = con.sql(f"SELECT {_q(entity_column)} FROM entity_df LIMIT 0").types[0]
        selects = ["l.* EXCLUDE (" + ROW + ")"]
        joins = []
        for i, read in enumerate(reads):
            view, alias = read.view, f"v{i}"
            if read.dataset is None:
                selects += [f"NULL::{_sql_type(view, f)} AS {_q(f)}" for f in read.features]
                continue
            con.register(f"ds{i}", read.dataset)
            store_type = con.sql(f"SELECT {_q(view.entity_column)} FROM ds{i} LIMIT 0").types[0]
            if str(store_type) != str(entity_type):
                raise RetrievalError(f"entity_df[{entity_column!r}] holds {entity_type} values but view "
                                     f"{view.name!r} keys its entities by {store_type}; convert the column")
            columns = ", ".join(_q(c) for c in [view.entity_column, view.time_column, *read.features])
            source = f"SELECT {columns} FROM ds{i}"
            if read.has_duplicate_keys:  # a correction: the row ingested last wins
                source += (f" QUALIFY row_number() OVER (PARTITION BY {_q(view.entity_column)}, {_q(view.time_column)} "
                           f"ORDER BY {INGESTED_AT} DESC) = 1")
            joins.append(f"ASOF LEFT JOIN ({source}) {alias} ON l.{_q(entity_column)} = {alias}.{_q(view.entity_column)} "
                         f"AND l.{_q(timestamp_column)} >= {alias}.{_q(view.time_column)}")
            fresh = "TRUE" if view.ttl is None else (
                f"epoch_us(l.{_q(timestamp_column)}) - epoch_us({alias}.{_q(view.time_column)}) <= "
                f"{int(view.ttl.total_seconds() * 1_000_000)}")
            selects += [f"CASE WHEN {fresh} THEN {alias}.{_q(f)} END AS {_q(f)}" for f in read.features]
        query = (f"SELECT {', '.join(selects)} FROM entity_df l "
                 f"{' '.join(joins)} ORDER BY l.{ROW}")
        result = con.sql(query).to_arrow_table()
    except duckdb.Error as exc:
        raise RetrievalError(f"point-in-time join failed: {exc}") from exc
    finally:
        con.close()
    if output == "arrow":
        return result
    frame = result.to_pandas()
    frame.index = entity_df.index
    return frame


def _sql_type(view: FeatureView, feature: str) -> str:
    kind = next(f.type for f in view.features if f.name == feature)
    return {"integer": "BIGINT", "float": "DOUBLE", "boolean": "BOOLEAN", "datetime": "TIMESTAMP"}.get(kind, "VARCHAR")
