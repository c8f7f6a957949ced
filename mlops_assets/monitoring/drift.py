"""Compare a current batch with the training reference and say which columns drifted.

Evidently (0.7) computes the per-column statistic and renders the HTML report; the
verdict is ours. Evidently's per-column result is a bare number (a p-value or a
distance) with no "drifted" flag, and its default method silently switches from
p-value tests to distances above 1,000 rows, so here the caller always names the
method per column type and :data:`METHODS` says which way each number points.

Plain domain code: a Dagster asset calls :func:`compute_drift`; nothing here imports Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

Kind = Literal["numeric", "categorical"]


@dataclass(frozen=True)
class _Method:
    """How to read one Evidently stat test's score, and which column kinds it accepts."""

    score: Literal["p_value", "distance"]
    kinds: frozenset[str]


_NUM = frozenset({"numeric"})
_CAT = frozenset({"categorical"})
_BOTH = _NUM | _CAT

# Evidently 0.7 stat-test names (evidently.legacy.calculations.stattests) -> meaning of the score.
# p_value: drifted when score < threshold; distance: drifted when score >= threshold.
# "TVD" is listed as a p-value on purpose: Evidently returns a permutation-test p-value for it.
METHODS: dict[str, _Method] = {
    "ks": _Method("p_value", _NUM),
    "t_test": _Method("p_value", _NUM),
    "mannw": _Method("p_value", _NUM),
    "anderson": _Method("p_value", _NUM),
    "cramer_von_mises": _Method("p_value", _NUM),
    "es": _Method("p_value", _NUM),
    "empirical_mmd": _Method("p_value", _NUM),
    "chisquare": _Method("p_value", _CAT),
    "z": _Method("p_value", _CAT),
    "g_test": _Method("p_value", _CAT),
    "fisher_exact": _Method("p_value", _CAT),
    "TVD": _Method("p_value", _CAT),
    "wasserstein": _Method("distance", _NUM),
    "ed": _Method("distance", _NUM),
    "jensenshannon": _Method("distance", _BOTH),
    "psi": _Method("distance", _BOTH),
    "kl_div": _Method("distance", _BOTH),
    "hellinger": _Method("distance", _BOTH),
}


def is_drifted(method: str, score: float, threshold: float) -> bool:
    """Apply the method's direction: small p-values and large distances mean drift."""
    if METHODS[method].score == "p_value":
        return score < threshold
    return score >= threshold


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str  # "numeric" | "categorical"
    method: str
    score: float  # the p-value or distance Evidently returned
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    columns: list[ColumnDrift]
    html_path: Path | None

    @property
    def drift_share(self) -> float:
        """Drifted columns / columns compared: the number alerting rules threshold on."""
        if not self.columns:
            return 0.0
        return sum(c.drifted for c in self.columns) / len(self.columns)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def to_markdown(self) -> str:
        """A table for Dagster metadata or a PR comment, readable without opening the HTML."""
        lines = [
            "| column | kind | method | score | threshold | drifted |",
            "|---|---|---|---|---|---|",
        ]
        for c in self.columns:
            lines.append(
                f"| {c.column} | {c.kind} | {c.method} | {c.score:.4g} | {c.threshold:g} | "
                f"{'yes' if c.drifted else 'no'} |"
            )
        return "\n".join(lines)


def check_method(method: str, kind: Kind) -> None:
    """ValueError naming the supported methods when ``method`` cannot judge ``kind`` columns."""
    supported = sorted(name for name, m in METHODS.items() if kind in m.kinds)
    if method not in supported:
        raise ValueError(f"unknown {kind} drift method {method!r}; supported: {', '.join(supported)}")


def _prepare(df: pd.DataFrame, numeric: list[str], categorical: list[str]) -> pd.DataFrame:
    """Keep only the compared columns; numeric ones as float so booleans are measured, not counted."""
    out = df[numeric + categorical].copy()
    for col in numeric:
        out[col] = out[col].astype(float)
    return out


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric_columns: list[str],
    categorical_columns: list[str],
    numeric_method: str = "wasserstein",
    categorical_method: str = "jensenshannon",
    threshold: float = 0.1,
    html_path: Path | None = None,
) -> DriftResult:
    """Score each listed column of ``current`` against ``reference`` and decide drift ourselves.

    The methods are always passed to Evidently explicitly, so the meaning of ``threshold``
    does not change with the batch size. If ``html_path`` is given, Evidently's report is
    written there and verified, because Evidently's ``save_html`` can silently write nothing.
    """
    numeric_columns, categorical_columns = list(numeric_columns), list(categorical_columns)
    wanted = numeric_columns + categorical_columns
    if not wanted:
        raise ValueError("no columns to compare: numeric_columns and categorical_columns are both empty")
    both = sorted(set(numeric_columns) & set(categorical_columns))
    if both:
        raise ValueError(f"columns listed as both numeric and categorical: {', '.join(both)}")
    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise ValueError(f"{name} frame is missing columns: {', '.join(missing)}")
    if numeric_columns:
        check_method(numeric_method, "numeric")
    if categorical_columns:
        check_method(categorical_method, "categorical")

    # Imported here: Evidently takes ~5 s to import, and METHODS is read when a config loads.
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    definition = DataDefinition(numerical_columns=numeric_columns, categorical_columns=categorical_columns)
    ref_ds = Dataset.from_pandas(_prepare(reference, numeric_columns, categorical_columns), data_definition=definition)
    cur_ds = Dataset.from_pandas(_prepare(current, numeric_columns, categorical_columns), data_definition=definition)

    plan: list[tuple[str, Kind, str]] = [(c, "numeric", numeric_method) for c in numeric_columns] + [
        (c, "categorical", categorical_method) for c in categorical_columns
    ]
    metrics = [ValueDrift(column=col, method=method, threshold=threshold) for col, _, method in plan]
    # Report.run takes the CURRENT data first.
    snapshot = Report(metrics).run(cur_ds, ref_ds)

    columns = []
    for (col, kind, method), metric in zip(plan, metrics):
        score = float(snapshot.context.get_metric_result(metric).value)
        columns.append(ColumnDrift(col, kind, method, score, threshold, is_drifted(method, score, threshold)))

    written = None
    if html_path is not None:
        written = Path(html_path)
        written.parent.mkdir(parents=True, exist_ok=True)
        # A stale file from an earlier run would otherwise pass the check below.
        written.unlink(missing_ok=True)
        snapshot.save_html(str(written))  # a Path (not str) makes save_html a silent no-op
        if not written.is_file() or written.stat().st_size == 0:
            raise RuntimeError(f"Evidently did not write the drift report to {written}")

    return DriftResult(columns=columns, html_path=written)
