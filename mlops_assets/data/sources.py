"""Reading a dataset's rows from where its config says they are.

A file source (CSV or Parquet) or the seeded generator gives the same frame shape, so
every asset downstream is source-agnostic. When the config names no entity id or no
event time, the row number and the load time stand in for them.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from mlops_assets.config import LOAD_TIME_COLUMN, ROW_ID_COLUMN, DatasetConfig
from mlops_assets.data.churn_generator import generate_churn
from mlops_assets.errors import PlatformError

#: pandas' name for a CSV column whose header is empty (an R-style row-number column, for example).
UNNAMED_COLUMN = re.compile(r"^Unnamed: \d+$")


class SourceError(PlatformError, RuntimeError):
    """The configured source cannot be read."""


def load_source(config: DatasetConfig) -> pd.DataFrame:
    """The raw rows of a dataset: declared columns only, with entity id and event time present."""
    frame = _read(config)
    missing = [c for c in config.columns if c not in frame.columns]
    if missing:
        unnamed = [str(c) for c in frame.columns if UNNAMED_COLUMN.match(str(c))]
        hint = (
            f". Its header has {len(unnamed)} empty name(s), which pandas reads as {unnamed} (the number is the "
            f"column's position from 0): name the column in the file, or declare it under that name "
            f"(a row-number column as the entity id: entity_id: \"{unnamed[0]}\")"
            if unnamed else ""
        )
        raise SourceError(
            f"dataset {config.name!r}: source lacks declared columns {missing}; "
            f"it has {list(frame.columns)}{hint}"
        )
    frame = frame[list(config.columns)].copy()
    return with_identity_columns(frame, config)


def with_identity_columns(frame: pd.DataFrame, config: DatasetConfig, load_time: datetime | None = None) -> pd.DataFrame:
    """Add the row number / load time stand-ins the config asks for (a no-op when it names both)."""
    if config.entity_id is None and ROW_ID_COLUMN not in frame.columns:
        frame.insert(0, ROW_ID_COLUMN, range(len(frame)))
    if config.event_time is None and LOAD_TIME_COLUMN not in frame.columns:
        stamp = pd.Timestamp(load_time or datetime.now(timezone.utc)).tz_localize(None)
        frame.insert(1, LOAD_TIME_COLUMN, stamp)
    return frame


def _read(config: DatasetConfig) -> pd.DataFrame:
    source = config.source
    if source.generator == "churn":
        return generate_churn(rows=source.rows, seed=source.seed, start=source.start, end=source.end)
    path = config.resolve_source_path()
    if not path.exists():
        raise SourceError(f"dataset {config.name!r}: source file {path} does not exist")
    try:
        if path.suffix.lower() == ".csv":
            # Text and date columns are read as text: the strict typing (data/coercion.py) parses dates, and
            # codes such as "007" keep their zeros.
            text = {c: str for c, spec in config.columns.items() if spec.type in {"string", "categorical", "datetime"}}
            return pd.read_csv(path, dtype=text)
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError as exc:
        raise SourceError(f"dataset {config.name!r}: source file {path} is empty (not even a header)") from exc
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise SourceError(f"dataset {config.name!r}: cannot read source file {path}: {exc}") from exc


def row_locator(config: DatasetConfig) -> Callable[[Sequence[int]], list[str]] | None:
    """How a person finds rows of the source, by their positions in the frame read from it.

    A CSV row is named by its line in the file (the header is line 1; blank lines and quoted line
    breaks counted as an editor counts them); a Parquet row by its position from 0, as pandas and
    ``row_id`` count. Generated rows have no place but their entity id: None.
    """
    if config.source.path is None:
        return None
    path = config.resolve_source_path()
    if path.suffix.lower() != ".csv":
        if config.entity_id is None:
            return None  # row_id is the position already
        return lambda positions: [f"row {p}" for p in positions]

    def lines(positions: Sequence[int]) -> list[str]:
        starts = _csv_record_lines(path)
        return [f"line {starts[p] if p < len(starts) else p + 2}" for p in positions]

    return lines


def _csv_record_lines(path: Path) -> list[int]:
    """The line each data record starts on, skipping blank lines as pandas does (only read when a check fails)."""
    starts = []
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        start = 1
        for record in reader:
            if record and not (len(record) == 1 and not record[0].strip()):
                starts.append(start)
            start = reader.line_num + 1
    return starts[1:]  # the header is not a row


def generate_current_batch(config: DatasetConfig) -> pd.DataFrame | None:
    """A fresh batch from the period after the training data, with the drift the config asks for.

    Only a generated dataset has a future to draw from; for a file dataset this returns
    None and monitoring compares the newest (test) rows with the training rows instead.
    """
    source, drift = config.source, config.drift
    if source.generator != "churn":
        return None
    start = pd.Timestamp(source.end) + pd.Timedelta(days=1)
    frame = generate_churn(
        rows=drift.current_rows,
        seed=source.seed + 1,
        start=str(start.date()),
        end=str((start + pd.Timedelta(days=30)).date()),
        covariate_drift=drift.covariate_drift,
        concept_drift=drift.concept_drift,
    )
    return with_identity_columns(frame[list(config.columns)].copy(), config)
