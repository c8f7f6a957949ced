"""Metadata values worth opening in the Dagster UI: row counts, column schemas, previews, rounded metrics."""

from __future__ import annotations

import math

import dagster as dg
import pandas as pd

from mlops_assets.config import LOAD_TIME_COLUMN, ROW_ID_COLUMN, DatasetConfig
from mlops_assets.markdown import markdown_table

_PANDAS_TO_TYPE = {"i": "integer", "u": "integer", "f": "float", "b": "boolean", "M": "datetime", "O": "string"}

#: Figures after the decimal point in metadata: enough to compare versions, few enough to read.
DIGITS = 4

#: What each test metric says, for the person reading the evaluation's table.
METRIC_MEANINGS = {
    "roc_auc": "ranking quality: 0.5 is random, 1 perfect",
    "pr_auc": "average precision over recall; compare with the positive rate",
    "log_loss": "probability quality: lower is better",
    "brier": "mean squared error of the probability: lower is better",
    "accuracy": "share of correct decisions at the threshold",
    "precision": "share of predicted positives that are positive",
    "recall": "share of positives found",
    "f1": "harmonic mean of precision and recall",
    "threshold": "decision cut-off on the probability",
    "positive_rate": "share of positive rows",
    "rows": "rows scored",
}

#: Columns the platform adds to a frame, described once here.
_ADDED_COLUMNS = {
    "split": "train, validation or test: the time-ordered split this row belongs to",
    ROW_ID_COLUMN: "added by the platform: the row's position in the source (no entity_id configured)",
    LOAD_TIME_COLUMN: "added by the platform: when the rows were loaded (no event_time configured)",
}


#: Metrics that are counts, shown as integers.
_COUNTS = {"rows"}


def rounded(value: float | int) -> dg.MetadataValue:
    """One figure for the UI: integers stay integers, floats keep DIGITS decimals (NaN stays NaN)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return dg.MetadataValue.int(value)
    value = float(value)
    return dg.MetadataValue.float(round(value, DIGITS) if math.isfinite(value) else value)


def metric_metadata(metrics: dict[str, float], prefix: str = "") -> dict[str, dg.MetadataValue]:
    """One rounded figure per metric (Dagster plots them across materializations) plus a readable table."""
    table = pd.DataFrame(
        {"metric": list(metrics), "value": [round(v, DIGITS) for v in metrics.values()],
         "meaning": [METRIC_MEANINGS.get(m, "") for m in metrics]}
    )
    return {
        **{f"{prefix}{name}": rounded(int(value) if name in _COUNTS else value) for name, value in metrics.items()},
        f"{prefix}metrics": dg.MetadataValue.md(markdown_table(table)),
    }


def column_descriptions(config: DatasetConfig) -> dict[str, str]:
    """What each column of a frame asset means: the config's ``description``, derived expressions, added columns."""
    described = {name: spec.description or "" for name, spec in config.columns.items()}
    described.update({name: f"derived: {expression}" for name, expression in config.derived_features.items()})
    return {**_ADDED_COLUMNS, **described}


def _column_roles(config: DatasetConfig) -> dict[str, list[str]]:
    roles: dict[str, list[str]] = {}
    for role, column in (("entity id", config.entity_column), ("event time", config.time_column),
                         ("target", config.target)):
        roles.setdefault(column, []).append(role)
    for column in config.model_features:
        roles.setdefault(column, []).append("feature")
    for column in config.sensitive_attributes:
        roles.setdefault(column, []).append("sensitive attribute")
    return roles


def _constraints(config: DatasetConfig, column: str) -> dg.TableColumnConstraints | None:
    spec = config.columns.get(column)
    if spec is None:
        return None
    other = [f"min {spec.min:g}"] if spec.min is not None else []
    other += [f"max {spec.max:g}"] if spec.max is not None else []
    other += [f"one of {', '.join(map(str, spec.values))}"] if spec.values is not None else []
    return dg.TableColumnConstraints(nullable=spec.nullable, unique=spec.unique, other=other)


def column_schema(frame: pd.DataFrame, config: DatasetConfig | None = None) -> dg.TableSchema:
    """The frame's columns and types; with ``config``, each column's description, role and constraints."""
    descriptions = column_descriptions(config) if config is not None else {}
    roles = _column_roles(config) if config is not None else {}
    columns = []
    for name, dtype in frame.dtypes.items():
        name = str(name)
        role = ", ".join(roles.get(name, []))
        description = " ".join(part for part in (descriptions.get(name), f"({role})" if role else "") if part)
        columns.append(dg.TableColumn(
            name=name,
            type=_PANDAS_TO_TYPE.get(dtype.kind, str(dtype)),
            description=description or None,
            constraints=_constraints(config, name) if config is not None else None,
        ))
    return dg.TableSchema(columns=columns)


def table_metadata(frame: pd.DataFrame, preview_rows: int = 10, config: DatasetConfig | None = None) -> dict[str, dg.MetadataValue]:
    """Row count, column schema (described from ``config``) and a Markdown preview of the first rows."""
    return {
        "dagster/row_count": dg.MetadataValue.int(len(frame)),
        "dagster/column_schema": dg.MetadataValue.table_schema(column_schema(frame, config)),
        "preview": dg.MetadataValue.md(markdown_table(frame.head(preview_rows))),
    }
