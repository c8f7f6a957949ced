"""Strict typing of raw columns, before the pandera schema sees them.

pandera's ``coerce=True`` reads a ``bool`` column with Python truthiness (the string
"no" becomes True) and truncates 1169.7 in an ``int`` column to 1169 (DESIGN.md,
pitfalls). Here every declared column is brought to its type by explicit rules. A
value that does not fit is a finding (column, problem, the value as the source spelled
it, the row) and a missing value in the typed frame, so the check fails with the row
named and nothing is guessed. The schema then checks ranges, allowed values,
uniqueness and missing values on properly typed columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.api import types

from mlops_assets.config import ColumnSpec, DatasetConfig

#: The spellings a boolean column accepts, compared case-insensitively after stripping spaces.
#: Real booleans and the numbers 0/1 (also 0.0/1.0 from a numeric column) are accepted too.
BOOLEAN_SPELLINGS: dict[str, bool] = {
    "true": True, "false": False, "yes": True, "no": False, "y": True, "n": False, "1": True, "0": False,
}
BOOLEAN_HINT = "true/false, yes/no, y/n, 1/0"

#: Columns of one finding; the same shape as pandera's failure cases, so both are read alike.
FINDING_COLUMNS = ["column", "check", "failure_case", "index"]

_INT64_LIMIT = 2.0**63


@dataclass(frozen=True)
class TypedRows:
    """The frame with every declared column in its type, and what could not be read."""

    frame: pd.DataFrame
    findings: pd.DataFrame  # FINDING_COLUMNS; failure_case is the source's value, quoted


def strict_types(frame: pd.DataFrame, config: DatasetConfig) -> TypedRows:
    """Each declared column in its declared type; values that do not fit become findings and missing."""
    columns = {name: frame[name] for name in frame.columns}
    findings = []
    for name, spec in config.columns.items():
        if name not in frame.columns:
            findings.append(pd.DataFrame([{"column": name, "check": "column missing", "failure_case": repr(name),
                                           "index": None}]))
            continue
        columns[name], problems = coerce_column(frame[name], spec)
        for problem, bad in problems:
            findings.append(pd.DataFrame({
                "column": name,
                "check": problem,
                "failure_case": [quote(v) for v in frame[name][bad]],
                "index": frame.index[bad],
            }))
    typed = pd.DataFrame(columns, index=frame.index)  # built once: assigning column by column re-blocks the frame
    if not findings:
        return TypedRows(typed, pd.DataFrame(columns=FINDING_COLUMNS))
    return TypedRows(typed, pd.concat(findings, ignore_index=True)[FINDING_COLUMNS])


#: A reader's problems: (what is wrong, mask of the values it applies to); empty when every value fits.
Problems = list[tuple[str, np.ndarray]]


def coerce_column(values: pd.Series, spec: ColumnSpec) -> tuple[pd.Series, Problems]:
    """(typed values, the values that do not fit and why) for one column."""
    readers = {"boolean": _booleans, "integer": _integers, "float": _floats, "datetime": _datetimes}
    return readers.get(spec.type, _strings)(values)


def finalize_types(frame: pd.DataFrame, config: DatasetConfig) -> pd.DataFrame:
    """Valid rows with plain numpy dtypes where missing values are not allowed (int64, bool)."""
    plain = {
        name: frame[name].astype("int64" if spec.type == "integer" else bool)
        for name, spec in config.columns.items()
        if not spec.nullable and spec.type in {"integer", "boolean"}
    }
    return frame.assign(**plain) if plain else frame


def quote(value: object) -> str:
    """A source value as a person reads it in a message: strings quoted, numbers bare."""
    if isinstance(value, (str, pd.Timestamp)):
        return repr(str(value))
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


# One reader per column type: (typed values, problems) ----------------------------------------

def _problems(*pairs: tuple[str, np.ndarray]) -> Problems:
    return [(problem, np.asarray(mask, dtype=bool)) for problem, mask in pairs if np.any(mask)]


def _booleans(values: pd.Series) -> tuple[pd.Series, Problems]:
    if types.is_bool_dtype(values.dtype):
        return values.astype("boolean"), []
    present = values.notna().to_numpy()
    mapping = {v: _boolean_of(v) for v in pd.unique(values[present])}
    mapped = values.map(mapping)
    readable = mapped.notna().to_numpy()
    out = pd.Series(pd.array([None] * len(values), dtype="boolean"), index=values.index)
    out[readable] = mapped[readable].astype(bool)
    return out, _problems((f"not a boolean ({BOOLEAN_HINT})", present & ~readable))


def _boolean_of(value: object) -> bool | None:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return {0: False, 1: True}.get(value)  # 1.0 == 1; NaN and 2 are not booleans
    if isinstance(value, str):
        return BOOLEAN_SPELLINGS.get(value.strip().lower())
    return None


def _numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Float values, and the mask of present values that are not numbers at all."""
    if types.is_numeric_dtype(values.dtype) and not types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=float, na_value=np.nan, copy=True), np.zeros(len(values), dtype=bool)
    # Only numbers and numeric text count: True is not the number 1 here.
    text = values.map(lambda v: v.strip() if isinstance(v, str) else None if isinstance(v, (bool, np.bool_)) else v)
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return numbers, values.notna().to_numpy() & np.isnan(numbers)


def _floats(values: pd.Series) -> tuple[pd.Series, Problems]:
    numbers, not_number = _numbers(values)
    infinite = np.isinf(numbers)
    numbers[infinite] = np.nan
    return pd.Series(numbers, index=values.index), _problems(("not a number", not_number),
                                                             ("not a finite number", infinite))


def _integers(values: pd.Series) -> tuple[pd.Series, Problems]:
    if types.is_integer_dtype(values.dtype):
        return values.astype("Int64"), []
    numbers, not_number = _numbers(values)
    with np.errstate(invalid="ignore"):
        not_whole = ~np.isnan(numbers) & ((numbers != np.round(numbers)) | (np.abs(numbers) >= _INT64_LIMIT))
    numbers[not_whole | not_number] = np.nan
    typed = pd.Series(pd.array(numbers, dtype="Float64"), index=values.index).astype("Int64")
    return typed, _problems(("not a number", not_number), ("not a whole number", not_whole))


def _datetimes(values: pd.Series) -> tuple[pd.Series, Problems]:
    if types.is_datetime64_any_dtype(values.dtype):
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return values.astype("datetime64[ns]"), []
    # Only text and timestamps count: a bare number is not a date (pandas would read 5 as 5 ns after 1970).
    candidates = values.where(values.map(lambda v: isinstance(v, (str, pd.Timestamp, np.datetime64))))
    try:  # one inferred format, vectorised: the usual case
        parsed = pd.to_datetime(candidates, errors="raise", utc=True)
    except (ValueError, TypeError, OverflowError):  # mixed formats, or some values are not dates
        parsed = pd.to_datetime(candidates, errors="coerce", utc=True, format="mixed")
    parsed = parsed.dt.tz_localize(None).astype("datetime64[ns]")
    return parsed, _problems(("not a date/time", (values.notna() & parsed.isna()).to_numpy()))


def _strings(values: pd.Series) -> tuple[pd.Series, Problems]:
    if types.infer_dtype(values, skipna=True) in {"string", "empty"}:
        return values, []  # text already (missing values stay missing)
    present = values.notna()
    out = values.astype(object).where(present, np.nan)
    out[present] = values[present].map(str)
    return out, []
