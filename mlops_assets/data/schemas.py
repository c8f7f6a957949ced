"""pandera models built from a dataset config: what a valid raw row is.

The config's ``columns`` section is the single description of the raw data; the
model is generated from it so that a new dataset needs no Python. The raw model checks
frames that :func:`mlops_assets.data.coercion.strict_types` has already typed (its
own coercion is truthiness for booleans and truncation for integers): integers and
booleans arrive in pandas' nullable dtypes, so a value that could not be read is a
missing value there, not a second finding.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from mlops_assets.config import (
    LOAD_TIME_COLUMN,
    ROW_ID_COLUMN,
    ColumnSpec,
    DatasetConfig,
)

_DTYPES: dict[tuple[str, bool], Any] = {
    ("integer", False): int,
    ("integer", True): pd.Int64Dtype,
    ("float", False): float,
    ("float", True): float,
    ("boolean", False): bool,
    ("boolean", True): pd.BooleanDtype,
    ("string", False): str,
    ("string", True): str,
    ("categorical", False): str,
    ("categorical", True): str,
    ("datetime", False): pd.Timestamp,
    ("datetime", True): pd.Timestamp,
}


#: The dtype of each column type in a strictly typed raw frame (nullable integers and booleans).
_TYPED_DTYPES: dict[str, Any] = {
    "integer": pd.Int64Dtype, "float": float, "boolean": pd.BooleanDtype, "string": str, "categorical": str,
    "datetime": pd.Timestamp,
}


def column_field(spec: ColumnSpec, typed: bool = False) -> tuple[Any, Any]:
    """The annotation and ``pa.Field`` that express one column spec (``typed``: for strictly typed raw rows)."""
    checks: dict[str, Any] = {}
    if spec.min is not None:
        checks["ge"] = spec.min
    if spec.max is not None:
        checks["le"] = spec.max
    if spec.values is not None:
        # Text columns hold text: `values: [1, 2]` on a categorical column means "1" and "2".
        checks["isin"] = [str(v) for v in spec.values] if spec.type in {"string", "categorical"} else spec.values
    dtype = _TYPED_DTYPES[spec.type] if typed else _DTYPES[(spec.type, spec.nullable)]
    return Series[dtype], pa.Field(nullable=spec.nullable, unique=spec.unique, **checks)


def build_model(name: str, fields: dict[str, tuple[Any, Any]]) -> type[pa.DataFrameModel]:
    """A DataFrameModel class from (annotation, field) pairs; extra columns are allowed."""
    config = type("Config", (), {"coerce": True, "strict": False, "name": name})
    attrs: dict[str, Any] = {"__annotations__": {k: a for k, (a, _) in fields.items()}, "Config": config}
    attrs.update({k: f for k, (_, f) in fields.items()})
    return type(name, (pa.DataFrameModel,), attrs)


def identity_fields(config: DatasetConfig) -> dict[str, tuple[Any, Any]]:
    """Fields for the row-number / load-time stand-ins when the config names none."""
    fields: dict[str, tuple[Any, Any]] = {}
    if config.entity_id is None:
        fields[ROW_ID_COLUMN] = (Series[int], pa.Field(unique=True, ge=0))
    if config.event_time is None:
        fields[LOAD_TIME_COLUMN] = (Series[pd.Timestamp], pa.Field())
    return fields


def raw_schema(config: DatasetConfig) -> type[pa.DataFrameModel]:
    """What every raw row of this dataset must satisfy, once :func:`strict_types` has typed it."""
    fields = identity_fields(config)
    fields.update({name: column_field(spec, typed=True) for name, spec in config.columns.items()})
    return build_model(f"{_camel(config.name)}RawSchema", fields)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))
