"""Run a pandera model and say, for a person, which rows and columns are wrong.

Validation is lazy (every failure is collected, not just the first) and never raises
from inside a check: a check that raises records no result and loses the failing rows.
Consumers that must refuse bad data call :func:`require_valid` instead.

A report lists each finding once, in words ("below the minimum 0", "not a number")
with the offending value quoted as the source spelled it, and names the row by where
a person finds it (``line 7`` of a CSV file) and by its entity id. pandera's own
vocabulary (``greater_than_or_equal_to(0.0)``) and Python exception text stay out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.errors
import pandera.pandas as pa

from mlops_assets.data.coercion import FINDING_COLUMNS, quote
from mlops_assets.errors import PlatformError

MAX_GROUPS = 20
MAX_EXAMPLES = 5

#: Where a person finds rows in the source, given their positions in the frame (``["line 7", ...]``).
RowLocator = Callable[[Sequence[int]], list[str]]


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
    #: One row per finding: [entity column], [location], column, check, failure_case, index.
    failure_cases: pd.DataFrame = field(default_factory=pd.DataFrame)
    failing_entities: list[str] = field(default_factory=list)
    #: Where the failing rows are in the source (``line 7``), in source order; empty without a locator.
    failing_locations: list[str] = field(default_factory=list)
    entity_column: str | None = None

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
        """One line: how many rows, then each (column, problem) once with its first rows and values."""
        if self.passed:
            return f"all {self.rows_checked} rows valid"
        groups = []
        for (column, check), cases in self.failure_cases.groupby(["column", "check"], sort=False):
            if cases["index"].isna().all():
                value = cases["failure_case"].iloc[0]
                groups.append(f"{column}: {check}" + ("" if check == "column missing" else f" ({value})"))
                continue
            shown = ", ".join(f"{c.failure_case} ({self._where(c)})" if c.failure_case else self._where(c)
                              for c in cases.head(MAX_EXAMPLES).itertuples())
            more = f" and {len(cases) - MAX_EXAMPLES} more" if len(cases) > MAX_EXAMPLES else ""
            groups.append(f"{column}: {check}: {shown}{more}")
        more_groups = f"; and {len(groups) - MAX_GROUPS} more kinds of problem" if len(groups) > MAX_GROUPS else ""
        return (
            f"{self.failing_row_count} of {self.rows_checked} rows invalid in columns {self.failing_columns}: "
            + "; ".join(groups[:MAX_GROUPS]) + more_groups
        )

    def failure_table(self, limit: int = 50) -> pd.DataFrame:
        """The findings a person reads: entity, where in the source, column, problem, offending value."""
        table = self.failure_cases.drop(columns="index").rename(columns={"check": "problem", "failure_case": "value"})
        return table.head(limit)

    def _where(self, case) -> str:
        parts = []
        location = getattr(case, "location", None)
        if isinstance(location, str):
            parts.append(location)
        if self.entity_column and self.entity_column in self.failure_cases:
            parts.append(f"{self.entity_column} {self.failure_cases.at[case.Index, self.entity_column]}")
        return ", ".join(parts)


def validate(
    model: type[pa.DataFrameModel],
    frame: pd.DataFrame,
    entity_column: str | None,
    *,
    findings: pd.DataFrame | None = None,
    locate: RowLocator | None = None,
) -> ValidationReport:
    """Validate every row; ``findings`` are problems found before the schema ran (values that could not be
    typed); the report names failing rows by entity id and, given ``locate``, by their place in the source."""
    name = model.Config.name if getattr(model.Config, "name", None) else model.__name__
    prior = findings if findings is not None else pd.DataFrame(columns=FINDING_COLUMNS)
    try:
        valid = model.validate(frame, lazy=True)
        cases = pd.DataFrame(columns=FINDING_COLUMNS)
    except pandera.errors.SchemaErrors as exc:
        valid = None
        cases = _in_words(exc.failure_cases)
    cases = _once(prior, cases)
    if cases.empty:
        return ValidationReport(schema_name=name, rows_checked=len(frame), valid=valid, entity_column=entity_column)
    return _report(name, frame, cases, entity_column, locate)


def require_valid(model: type[pa.DataFrameModel], frame: pd.DataFrame, entity_column: str | None, what: str) -> pd.DataFrame:
    """The validated (type-coerced) frame, or a DataValidationError naming the bad rows."""
    report = validate(model, frame, entity_column)
    if not report.passed:
        raise DataValidationError(report, what)
    assert report.valid is not None
    return report.valid


def _report(name: str, frame: pd.DataFrame, cases: pd.DataFrame, entity_column: str | None,
            locate: RowLocator | None) -> ValidationReport:
    row_cases = cases["index"].notna()
    positions = np.full(len(cases), -1)
    positions[row_cases.to_numpy()] = frame.index.get_indexer(cases.loc[row_cases, "index"])
    cases = cases.assign(_position=positions).sort_values(["_position"], kind="stable")
    # Groups in the frame's column order, rows in source order within each group.
    order = {c: i for i, c in enumerate(frame.columns)}
    cases = cases.sort_values("column", key=lambda c: c.map(order).fillna(len(order)), kind="stable")
    located = cases["_position"] >= 0
    entities: list[str] = []
    if entity_column and entity_column in frame.columns:
        values = frame[entity_column].iloc[cases.loc[located, "_position"]].astype(str).to_numpy()
        cases.insert(0, entity_column, None)
        cases.loc[located, entity_column] = values
        by_position = cases.loc[located].sort_values("_position", kind="stable")
        entities = list(dict.fromkeys(by_position[entity_column]))
    else:
        entities = [f"row {p}" for p in sorted(set(cases.loc[located, "_position"]))]
    locations: list[str] = []
    if locate is not None and located.any():
        unique_positions = sorted(set(cases.loc[located, "_position"].astype(int)))
        locations = locate(unique_positions)
        labels = dict(zip(unique_positions, locations))
        cases.insert(1 if entity_column in cases else 0, "location", cases["_position"].map(labels))
    cases = cases.drop(columns="_position").reset_index(drop=True)
    return ValidationReport(schema_name=name, rows_checked=len(frame), valid=None, failure_cases=cases,
                            failing_entities=entities, failing_locations=locations, entity_column=entity_column)


def _once(prior: pd.DataFrame, cases: pd.DataFrame) -> pd.DataFrame:
    """Each finding once: a cell already reported as unreadable is not reported again (it is missing now)."""
    if not prior.empty and not cases.empty:
        reported = set(zip(prior["column"], prior["index"]))
        cases = cases[[(c, i) not in reported or pd.isna(i) for c, i in zip(cases["column"], cases["index"])]]
        unreadable = set(prior["column"])
        # Column-level comparison failures on a column whose unreadable values were reported already.
        cases = cases[~(cases["index"].isna() & cases["column"].isin(unreadable))]
    frames = [f for f in (prior, cases) if not f.empty]
    if not frames:
        return pd.DataFrame(columns=FINDING_COLUMNS)
    combined = pd.concat(frames, ignore_index=True)
    keys = combined[FINDING_COLUMNS].astype(str)
    return combined[~keys.duplicated()].reset_index(drop=True)


_EXCEPTION_TEXT = re.compile(r"^[A-Za-z_.]*(Error|Exception)\(")


def _in_words(failure_cases: pd.DataFrame) -> pd.DataFrame:
    """pandera's failure cases with problems a person reads and values quoted."""
    cases = failure_cases[[c for c in FINDING_COLUMNS if c in failure_cases.columns]].copy()
    absent = cases["check"].astype(str) == "column_in_dataframe"  # pandera names the schema, the case the column
    cases.loc[absent, "column"] = cases.loc[absent, "failure_case"]
    cases["check"] = cases["check"].astype(str).map(_problem)
    exception = cases["failure_case"].astype(str).str.match(_EXCEPTION_TEXT)
    cases["failure_case"] = [
        "values of another type" if is_exception else quote(value)
        for value, is_exception in zip(cases["failure_case"], exception)
    ]
    # A check that could not compare (text in a numeric column) says so without Python's words.
    cases.loc[exception, "check"] = cases.loc[exception, "check"] + ", could not be compared"
    cases.loc[cases["check"] == "missing value", "failure_case"] = ""  # nothing to quote
    return cases.reset_index(drop=True)


_PROBLEMS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    (re.compile(r"^not_nullable$"), lambda m: "missing value"),
    (re.compile(r"^field_uniqueness$|^unique$"), lambda m: "repeated value (must be unique)"),
    (re.compile(r"^isin\((.*)\)$"), lambda m: f"not one of the allowed values {_shorten(m[1])}"),
    (re.compile(r"^greater_than_or_equal_to\((.*)\)$"), lambda m: f"below the minimum {_number(m[1])}"),
    (re.compile(r"^less_than_or_equal_to\((.*)\)$"), lambda m: f"above the maximum {_number(m[1])}"),
    (re.compile(r"^greater_than\(-inf\)$|^less_than\(inf\)$"), lambda m: "not a finite number"),
    (re.compile(r"^greater_than\((.*)\)$"), lambda m: f"not above {m[1]}"),
    (re.compile(r"^less_than\((.*)\)$"), lambda m: f"not below {m[1]}"),
    (re.compile(r"^column_in_dataframe$"), lambda m: "column missing"),
    (re.compile(r"^(?:coerce_)?dtype\('?(.*?)'?\)$"), lambda m: f"not of type {m[1]}"),
]


def _problem(check: str) -> str:
    for pattern, words in _PROBLEMS:
        match = pattern.match(check)
        if match:
            return words(match)
    return check


def _number(text: str) -> str:
    """``0.0`` as the config most likely spelled it: ``0``."""
    return text[:-2] if re.fullmatch(r"-?\d+\.0", text) else text


def _shorten(listing: str, limit: int = 80) -> str:
    return listing if len(listing) <= limit else listing[:limit].rsplit(",", 1)[0] + ", ...]"
