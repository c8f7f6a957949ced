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
SCATTER_BATCH = 1_000_000


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
    """The entity frame plus the requested features, point-in-time correct (see the module docstring).

    How, for speed at 10M rows: entity ids become integer codes once (a hash join), so
    each view's ASOF JOIN sorts fixed-width integers instead of strings; the join returns
    only the matched rows, and one Arrow ``take`` per view puts their values back in the
    entity frame's order, with nulls for rows without a match or past the TTL. The entity
    frame's own columns are never copied through DuckDB.
    """
    clash = [f for r in reads for f in r.features if f in entity_df.columns]
    if clash:
        raise RetrievalError(f"entity_df already has column(s) {clash}, which are also requested features; "
                             "drop or rename them")
    n = len(entity_df)
    columns: dict[str, pa.Array] = {}
    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = false")
        keys = entity_df[[entity_column, timestamp_column]]
        con.register("entity_df", keys.assign(**{ROW: np.arange(n, dtype=np.int64)}))
        entity_type = con.sql(f"SELECT {_q(entity_column)} FROM entity_df LIMIT 0").types[0]
        live = [(i, r) for i, r in enumerate(reads) if r.dataset is not None]
        for i, read in live:
            con.register(f"ds{i}", read.dataset)
            store_type = con.sql(f"SELECT {_q(read.view.entity_column)} FROM ds{i} LIMIT 0").types[0]
            if str(store_type) != str(entity_type):
                raise RetrievalError(f"entity_df[{entity_column!r}] holds {entity_type} values but view "
                                     f"{read.view.name!r} keys its entities by {store_type}; convert the column")
        if live:
            distinct = " UNION ".join(f"SELECT DISTINCT {_q(r.view.entity_column)} AS entity FROM ds{i}" for i, r in live)
            con.execute(f"CREATE TEMP TABLE codes AS SELECT entity, (row_number() OVER ())::INTEGER AS code "
                        f"FROM ({distinct})")
            # Entities no view knows get no code: they match nothing and keep their nulls.
            con.execute(f"CREATE TEMP TABLE labels AS SELECT l.{ROW} AS row, c.code, "
                        f"epoch_us(l.{_q(timestamp_column)}) AS t FROM entity_df l "
                        f"JOIN codes c ON l.{_q(entity_column)} = c.entity")
        for i, read in enumerate(reads):
            view = read.view
            if read.dataset is None:
                columns.update({f: _gather(pa.chunked_array([], _arrow_type(view, f)), np.full(n, -1))
                                for f in read.features})
                continue
            values = ", ".join(f"v.{_q(f)}" for f in read.features)
            source = (f"SELECT c.code, epoch_us(v.{_q(view.time_column)}) AS t, {values} FROM ds{i} v "
                      f"JOIN codes c ON v.{_q(view.entity_column)} = c.entity")
            if read.has_duplicate_keys:  # a correction: the row ingested last wins
                source += (f" QUALIFY row_number() OVER (PARTITION BY c.code, v.{_q(view.time_column)} "
                           f"ORDER BY v.{INGESTED_AT} DESC) = 1")
            con.execute(f"CREATE OR REPLACE TEMP TABLE view_rows AS SELECT *, row_number() OVER () - 1 AS vrow "
                        f"FROM ({source})")
            # The join moves only row numbers; values are gathered from the view's rows afterwards.
            position = np.full(n, -1, dtype=np.int64)
            ttl_us = None if view.ttl is None else int(view.ttl.total_seconds() * 1_000_000)
            joined = con.sql("SELECT l.row, l.t - r.t AS age, r.vrow FROM labels l "
                             "ASOF JOIN (SELECT code, t, vrow FROM view_rows) r ON l.code = r.code AND l.t >= r.t")
            for batch in joined.to_arrow_reader(SCATTER_BATCH):
                rows, vrows = batch.column(0).to_numpy(), batch.column(2).to_numpy()
                if ttl_us is not None:
                    fresh = batch.column(1).to_numpy() <= ttl_us
                    rows, vrows = rows[fresh], vrows[fresh]
                position[rows] = vrows
            features = con.sql(f"SELECT {', '.join(_q(f) for f in read.features)} FROM view_rows "
                               "ORDER BY vrow").to_arrow_table()
            for f in read.features:
                columns[f] = _gather(features.column(f), position)
            del features, position
    except duckdb.Error as exc:
        raise RetrievalError(f"point-in-time join failed: {exc}") from exc
    finally:
        con.close()
    ordered = [f for r in reads for f in r.features]
    if output == "arrow":
        table = pa.Table.from_pandas(entity_df, preserve_index=False)
        for name in ordered:
            values = columns.pop(name)
            table = table.append_column(name, values if isinstance(values, pa.Array) else pa.array(values, from_pandas=True))
        return table
    # Each column is set into a shallow copy: pandas makes no block of all features (a 2x peak at 10M rows).
    frame = entity_df.copy(deep=False)
    for name in ordered:
        values = columns.pop(name)
        frame[name] = values.to_pandas().to_numpy() if isinstance(values, pa.Array) else values
    return frame


def _gather(values: pa.ChunkedArray, position: np.ndarray) -> np.ndarray | pa.Array:
    """``values[position]``, null where position is -1 (no match, or past the TTL).

    Numbers go through numpy (NaN for null, the pandas convention; integers stay integers
    when every row got a value); other types through an Arrow take.
    """
    kind = values.type
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        source = values.to_numpy() if values.null_count == 0 else values.to_numpy(zero_copy_only=False).astype(float)
        found = position >= 0
        if pa.types.is_integer(kind) and values.null_count == 0 and found.all():
            return source[position]
        out = np.full(len(position), np.nan)
        out[found] = source[position[found]]
        return out
    return values.take(pa.array(position, mask=position < 0)).combine_chunks()


def _arrow_type(view: FeatureView, feature: str) -> pa.DataType:
    return next(f.arrow_type for f in view.features if f.name == feature)
