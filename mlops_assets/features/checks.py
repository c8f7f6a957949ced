"""What a view's materialization must pass before training reads it or the service serves it.

Two kinds of check, both plain functions the feature assets turn into Dagster asset checks:

* the view's **pandera schema** (types, the column specs' ranges and allowed values,
  derived features finite), run on the computed rows *before* anything is written;
* **distribution checks** of the view's snapshot (latest value per entity) against the
  snapshot that was served before: a null rate that jumps, a mean or a quantile that
  moves by more than the thresholds (in the previous standard deviations), a category
  never seen before. Each failure names the column and example rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow.dataset as pads
from pandera.typing import Series

from mlops_assets.config import DatasetConfig
from mlops_assets.data.schemas import _camel, build_model, column_field
from mlops_assets.features.definitions import FeatureView
from mlops_assets.features.offline_store import INGESTED_AT

QUANTILES = (0.1, 0.5, 0.9)
MAX_CATEGORIES = 50
EXAMPLES = 5


def view_schema(config: DatasetConfig, view: FeatureView) -> type[pa.DataFrameModel]:
    """pandera model of one view's rows, from the config's column specs and the features' declared types."""
    fields = {}
    for feature in view.features:
        if feature.kind == "column":
            fields[feature.name] = column_field(config.columns[feature.name])
        elif feature.type == "float":
            fields[feature.name] = (Series[float], pa.Field(nullable=True, gt=-np.inf, lt=np.inf))
        elif feature.type == "integer":
            fields[feature.name] = (Series[pd.Int64Dtype], pa.Field(nullable=True))
        elif feature.type == "boolean":
            fields[feature.name] = (Series[pd.BooleanDtype], pa.Field(nullable=True))
        else:
            fields[feature.name] = (Series[str], pa.Field(nullable=True))
    return build_model(f"{_camel(config.name)}{_camel(view.name)}ViewSchema", fields)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _snapshot_sql(view: FeatureView) -> str:
    """Latest row per entity (the row ingested last breaks ties on event time)."""
    return (f"SELECT * FROM ds QUALIFY row_number() OVER (PARTITION BY {_q(view.entity_column)} "
            f"ORDER BY {_q(view.time_column)} DESC, {INGESTED_AT} DESC) = 1")


def snapshot_stats(view: FeatureView, dataset: pads.Dataset) -> dict:
    """Entities, freshness and per-feature statistics of the view's latest values."""
    con = duckdb.connect()
    con.register("ds", dataset)
    con.execute(f"CREATE TEMP TABLE snap AS {_snapshot_sql(view)}")
    entities, newest, oldest = con.sql(
        f"SELECT count(*), max({_q(view.time_column)}), min({_q(view.time_column)}) FROM snap").fetchall()[0]
    features = {}
    for feature in view.features:
        col = _q(feature.name)
        if feature.type in ("integer", "float", "boolean"):
            value = f"{col}::DOUBLE"
            row = con.sql(f"""SELECT avg(({col} IS NULL)::INT), avg({value}), stddev_samp({value}), min({value}),
                {', '.join(f'quantile_cont({value}, {q})' for q in QUANTILES)}, max({value}) FROM snap""").fetchall()[0]
            null_rate, mean, std, low, *quantiles, high = row
            features[feature.name] = {"null_rate": null_rate, "mean": mean, "std": std, "min": low, "max": high,
                                      **{f"p{int(q * 100)}": v for q, v in zip(QUANTILES, quantiles)}}
        else:
            (null_rate,), = con.sql(f"SELECT avg(({col} IS NULL)::INT) FROM snap").fetchall()
            shares = con.sql(f"""SELECT {col}::VARCHAR, count(*) / sum(count(*)) OVER () FROM snap
                WHERE {col} IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT {MAX_CATEGORIES}""").fetchall()
            features[feature.name] = {"null_rate": null_rate, "categories": {str(k): float(v) for k, v in shares}}
    con.close()
    return {"entities": int(entities), "newest_event_time": str(newest), "oldest_event_time": str(oldest),
            "features": features}


@dataclass
class DistributionReport:
    failures: list[dict] = field(default_factory=list)
    compared_with: int | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        if self.compared_with is None:
            return "first materialization of this view version: nothing to compare with"
        if self.passed:
            return f"no distribution change beyond the thresholds against table version {self.compared_with}"
        return "; ".join(f"{f['column']}: {f['check']} ({f['detail']})" for f in self.failures)


def compare_distributions(view: FeatureView, previous: dict | None, current: dict,
                          dataset: pads.Dataset, compared_with: int | None) -> DistributionReport:
    """Failures of ``current`` snapshot stats against ``previous`` (None: first materialization, passes)."""
    report = DistributionReport(compared_with=compared_with)
    if previous is None:
        return report
    limits = view.checks
    for feature in view.features:
        before, after = previous["features"].get(feature.name), current["features"][feature.name]
        if before is None:
            continue
        jump = (after["null_rate"] or 0) - (before["null_rate"] or 0)
        if jump > limits["max_null_rate_increase"]:
            report.failures.append({"column": feature.name, "check": "null rate jump",
                                    "detail": f"{before['null_rate']:.3f} -> {after['null_rate']:.3f}",
                                    "examples": _examples(view, dataset, f"{_q(feature.name)} IS NULL")})
        if "categories" in before:
            new = sorted(set(after["categories"]) - set(before["categories"]))
            if new and not limits["allow_new_categories"]:
                listed = ", ".join(f"'{c}'" for c in new[:10]).replace("''", "'")
                quoted = ", ".join("'" + c.replace("'", "''") + "'" for c in new)
                report.failures.append({"column": feature.name, "check": "new categories", "detail": f"{listed}",
                                        "examples": _examples(view, dataset, f"{_q(feature.name)}::VARCHAR IN ({quoted})")})
            continue
        scale = before.get("std") or 0.0
        if not scale or before.get("mean") is None or after.get("mean") is None:
            continue
        shift = abs(after["mean"] - before["mean"]) / scale
        if shift > limits["max_mean_shift"]:
            report.failures.append({"column": feature.name, "check": "mean shift",
                                    "detail": f"{before['mean']:.4g} -> {after['mean']:.4g} ({shift:.2f} SD)",
                                    "examples": _examples(view, dataset, None, order=f"abs({_q(feature.name)} - {before['mean']}) DESC")})
        moved = {q: abs(after[q] - before[q]) / scale for q in ("p10", "p50", "p90")
                 if after.get(q) is not None and before.get(q) is not None}
        worst = max(moved, key=moved.get) if moved else None
        if worst and moved[worst] > limits["max_quantile_shift"]:
            report.failures.append({"column": feature.name, "check": "quantile shift",
                                    "detail": f"{worst} {before[worst]:.4g} -> {after[worst]:.4g} ({moved[worst]:.2f} SD)",
                                    "examples": _examples(view, dataset, None, order=f"abs({_q(feature.name)} - {before[worst]}) DESC")})
    return report


def _examples(view: FeatureView, dataset: pads.Dataset, where: str | None, order: str | None = None) -> list[dict]:
    """A few snapshot rows showing the problem: entity, event time and the view's features."""
    con = duckdb.connect()
    con.register("ds", dataset)
    query = f"SELECT * EXCLUDE (_row_hash, {INGESTED_AT}) FROM ({_snapshot_sql(view)})"
    if where:
        query += f" WHERE {where}"
    if order:
        query += f" ORDER BY {order}"
    rows = con.sql(f"{query} LIMIT {EXAMPLES}").df()
    con.close()
    return json_rows(rows)


def json_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-friendly dicts (timestamps as text, NaN as None)."""
    plain = frame.astype(object).where(frame.notna(), None)
    return [{k: (str(v) if isinstance(v, (pd.Timestamp, np.datetime64)) else v.item() if hasattr(v, "item") else v)
             for k, v in row.items()} for row in plain.to_dict("records")]
