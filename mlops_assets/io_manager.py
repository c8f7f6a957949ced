"""How asset values travel between steps and runs: DataFrames as Parquet, everything else as JSON.

Pickles of our own classes made an old ``.mlops/`` unreadable as soon as a class was
renamed or moved, and cost 3.5 s and 368 MB per 1M-row frame. Here a frame is a
Parquet file (pandas ``attrs`` included) and any other value is JSON with no class
path in it: a dataclass is stored as its fields, and rebuilt on load from the type
the *consumer* declares (its input annotation, else the producer's output
annotation). ``Path``, ``datetime``, nested dataclasses, pydantic models, dicts,
lists and tuples of them round-trip; a value that cannot be JSON is refused when
it is written, naming the asset.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import types
import typing
from datetime import date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import BaseModel

from mlops_assets.errors import PlatformError


class AssetValueError(PlatformError, TypeError):
    """An asset value that cannot be stored as Parquet or JSON, or a stored value that cannot be read back."""


def to_jsonable(value: Any) -> Any:
    """Plain JSON data for ``value`` (no class names: the reader's annotation says what to rebuild)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    raise TypeError(f"a {type(value).__name__} cannot be stored as JSON")


def from_jsonable(data: Any, annotation: Any) -> Any:
    """Rebuild a value of type ``annotation`` from :func:`to_jsonable` output (plain data if no type is known)."""
    if annotation in (None, Any, object) or isinstance(annotation, typing.TypeVar):
        return data
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if data is None:
            return None
        candidates = [a for a in args if a is not type(None)]
        for candidate in candidates:
            try:
                return from_jsonable(data, candidate)
            except (TypeError, ValueError, KeyError):
                continue
        return data
    if data is None:
        return None
    if origin in (dict, typing.Mapping) or annotation is dict:
        value_type = args[1] if len(args) == 2 else Any
        return {k: from_jsonable(v, value_type) for k, v in data.items()}
    if origin in (list, set, frozenset, typing.Sequence) or annotation in (list, set):
        item_type = args[0] if args else Any
        items = [from_jsonable(v, item_type) for v in data]
        return set(items) if origin is set or annotation is set else frozenset(items) if origin is frozenset else items
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_jsonable(v, args[0]) for v in data)
        return tuple(from_jsonable(v, t) for v, t in zip(data, args or [Any] * len(data)))
    if isinstance(annotation, type):
        if dataclasses.is_dataclass(annotation):
            hints = typing.get_type_hints(annotation)
            fields = {f.name: f for f in dataclasses.fields(annotation) if f.init}
            return annotation(**{k: from_jsonable(v, hints.get(k, Any)) for k, v in data.items() if k in fields})
        if issubclass(annotation, BaseModel):
            return annotation.model_validate(data)
        if issubclass(annotation, Path):
            return annotation(data)
        if issubclass(annotation, pd.Timestamp):
            return pd.Timestamp(data)
        if issubclass(annotation, datetime):
            return datetime.fromisoformat(data)
        if issubclass(annotation, date):
            return date.fromisoformat(data)
    return data


def _python_type(dagster_type: dg.DagsterType | None) -> Any:
    if dagster_type is None or dagster_type.is_any or dagster_type.is_nothing:
        return None
    return getattr(dagster_type, "typing_type", None)


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


class ParquetJsonIOManager(dg.ConfigurableIOManager):
    """Asset values under ``base_dir``: ``<asset key path>.parquet`` for frames, ``.json`` for the rest."""

    base_dir: str

    def _base(self, context: dg.OutputContext | dg.InputContext) -> Path:
        if context.has_asset_key:
            return Path(self.base_dir).joinpath(*context.asset_key.path)
        return Path(self.base_dir).joinpath("runs", context.run_id, context.step_key, context.name)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        base = self._base(context)
        parquet, as_json = base.with_suffix(".parquet"), base.with_suffix(".json")
        if isinstance(obj, pd.DataFrame):
            _atomic_write(parquet, lambda p: obj.to_parquet(p, index=False))
            as_json.unlink(missing_ok=True)
            context.add_output_metadata({"stored_as": dg.MetadataValue.path(str(parquet))})
            return
        try:
            encoded = json.dumps(to_jsonable(obj), indent=1)
        except TypeError as exc:
            what = context.asset_key.to_user_string() if context.has_asset_key else context.name
            raise AssetValueError(f"asset {what}: {exc}; return a DataFrame, a dataclass or plain data") from exc
        _atomic_write(as_json, lambda p: Path(p).write_text(encoded))
        parquet.unlink(missing_ok=True)

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        base = self._base(upstream) if upstream is not None and not context.has_asset_key else self._base(context)
        parquet, as_json = base.with_suffix(".parquet"), base.with_suffix(".json")
        if parquet.exists():
            return pd.read_parquet(parquet)
        if not as_json.exists():
            raise AssetValueError(f"no stored value at {base}.parquet or .json: materialize the upstream asset first")
        target = _python_type(context.dagster_type)
        if target is None and upstream is not None:
            try:
                target = _python_type(upstream.dagster_type)
            except Exception:  # noqa: BLE001 - a context built outside a run may not know the producer's type
                target = None
        try:
            return from_jsonable(json.loads(as_json.read_text()), target)
        except (TypeError, ValueError, KeyError) as exc:
            raise AssetValueError(f"{as_json}: cannot rebuild a {getattr(target, '__name__', target)} from it: {exc}") from exc
