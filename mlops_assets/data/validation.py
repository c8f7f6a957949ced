"""Run a pandera model and say, for a person, which rows and columns are wrong.

Validation is lazy (every failure is collected, not just the first) and never raises
from inside a check: a check that raises records no result and loses the failing rows.
Consumers that must refuse bad data call :func:`require_valid` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pandera.errors
import pandera.pandas as pa

from mlops_assets.errors import PlatformError

MAX_LISTED = 20


class DataValidationError(PlatformError, ValueError):
    """Rows that failed their schema; the message names them."""

    def __init__(self, report: ValidationReport, what: str):
        self.report = report
        super().__init__(f"{what} failed {report.schema_name}: {report.summary()}")


@dataclass
class ValidationReport:
    schema_name: str
    rows_checked: int
    valid: pd.DataFrame | None
    failure_cases: pd.DataFrame = field(default_factory=pd.DataFrame)
    failing_entities: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failure_cases.empty

    @property
    def failing_columns(self) -> list[str]:
        if self.failure_cases.empty:
            return []
        return sorted({str(c) for c in self.failure_cases["column"].dropna()})

    @property
    def failing_row_count(self) -> int:
        if self.failure_cases.empty:
            return 0
        return int(self.failure_cases["index"].dropna().nunique())

    def summary(self) -> str:
        if self.passed:
            return f"all {self.rows_checked} rows valid"
        rows = ", ".join(self.failing_entities[:MAX_LISTED])
        more = "" if len(self.failing_entities) <= MAX_LISTED else f" (+{len(self.failing_entities) - MAX_LISTED} more)"
        checks = "; ".join(
            f"{r.column}: {r.check} (e.g. {r.failure_case!r})"
            for r in self.failure_cases.drop_duplicates(["column", "check"]).head(MAX_LISTED).itertuples()
        )
        return (
            f"{self.failing_row_count} of {self.rows_checked} rows invalid in columns {self.failing_columns} "
            f"[{checks}]; rows: {rows}{more}"
        )

    def failure_table(self, limit: int = 50) -> pd.DataFrame:
        """The failure cases a person reads: entity, column, check, offending value."""
        return self.failure_cases.head(limit)


def validate(model: type[pa.DataFrameModel], frame: pd.DataFrame, entity_column: str | None) -> ValidationReport:
    """Validate every row; the report names failing rows by entity id where the frame has one."""
    name = model.Config.name if getattr(model.Config, "name", None) else model.__name__
    try:
        valid = model.validate(frame, lazy=True)
        return ValidationReport(schema_name=name, rows_checked=len(frame), valid=valid)
    except pandera.errors.SchemaErrors as exc:
        cases = exc.failure_cases.copy()
        cases = cases[[c for c in ("column", "check", "failure_case", "index") if c in cases.columns]]
        cases["failure_case"] = cases["failure_case"].astype(str)
        index = cases["index"].dropna()
        if entity_column and entity_column in frame.columns:
            positions = frame.index.get_indexer(index.unique())
            entities = frame[entity_column].iloc[positions[positions >= 0]].astype(str).tolist()
            lookup = dict(zip(frame.index[positions[positions >= 0]], entities))
            cases.insert(0, entity_column, cases["index"].map(lookup))
        else:
            entities = [f"row {i}" for i in index.unique()]
        return ValidationReport(
            schema_name=name,
            rows_checked=len(frame),
            valid=None,
            failure_cases=cases.reset_index(drop=True),
            failing_entities=entities,
        )


def require_valid(model: type[pa.DataFrameModel], frame: pd.DataFrame, entity_column: str | None, what: str) -> pd.DataFrame:
    """The validated (type-coerced) frame, or a DataValidationError naming the bad rows."""
    report = validate(model, frame, entity_column)
    if not report.passed:
        raise DataValidationError(report, what)
    assert report.valid is not None
    return report.valid
