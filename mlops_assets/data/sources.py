"""Reading a dataset's rows from where its config says they are.

A file source (CSV or Parquet) or the seeded generator gives the same frame shape, so
every asset downstream is source-agnostic. When the config names no entity id or no
event time, the row number and the load time stand in for them.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd

from mlops_assets.config import LOAD_TIME_COLUMN, ROW_ID_COLUMN, DatasetConfig
from mlops_assets.data.churn_generator import generate_churn
from mlops_assets.errors import PlatformError


class SourceError(PlatformError, RuntimeError):
    """The configured source cannot be read."""


def load_source(config: DatasetConfig) -> pd.DataFrame:
    """The raw rows of a dataset: declared columns only, with entity id and event time present."""
    frame = _read(config)
    missing = [c for c in config.columns if c not in frame.columns]
    if missing:
        raise SourceError(
            f"dataset {config.name!r}: source lacks declared columns {missing}; "
            f"it has {list(frame.columns)}"
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
    if path.suffix.lower() == ".csv":
        dates = [c for c, spec in config.columns.items() if spec.type == "datetime"]
        return pd.read_csv(path, parse_dates=dates)
    return pd.read_parquet(path)


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
