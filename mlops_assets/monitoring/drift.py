"""Drift between a reference window and a current window, judged so that "drift" means something.

A column drifts when one of its statistics moved, beyond reasonable doubt, by more than a
negligible margin, with the margin set so that a change of the size the config says matters
is caught with the configured power (:mod:`mlops_assets.monitoring.effects`). The statistics:

- numeric column: the mean and the three quartiles, each as a shift in reference standard
  deviations, and the share of missing (or infinite) values;
- categorical column (and booleans): the share of each reference category (points), the
  share of values never seen in the reference, and the share of missing values.

Every statistic's standard error counts both windows' sampling error. Holm's weighted
step-down procedure holds the report-level false-alarm rate at ``alpha`` across all of them.

Plain domain code: nothing here imports Dagster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.stats import binom

from mlops_assets.errors import PlatformError
from mlops_assets.monitoring.effects import (
    design_margin,
    min_effect_p_value,
    rows_needed,
    weighted_holm,
)
from mlops_assets.monitoring.rules import DriftRules, Matters, MonitoredColumn
from mlops_assets.monitoring.summaries import (
    QUARTILES,
    CategorySummary,
    Distribution,
    NumericSummary,
    category_bars,
    category_summary,
    histogram,
    is_integer_valued,
    numeric_summary,
    numeric_values,
)
from mlops_assets.monitoring.windows import Window, WindowInfo

#: Below this many values in a window a column is not tested: the normal approximations need some rows.
MIN_VALUES = 30
#: Categories tested one by one (by reference frequency); rarer ones are pooled as "(other)".
MAX_CATEGORIES = 30
OTHER = "(other)"
_Z_95 = 1.959963984540054

# How a column splits its share of alpha over its statistics: the primary statistic gets most of it.
NUMERIC_WEIGHTS = {"mean": 0.6, "quartiles": 0.3, "missing": 0.1}
CATEGORICAL_WEIGHTS = {"shares": 0.8, "new": 0.1, "missing": 0.1}

Verdict = str  # "drift" | "no drift" | "too small" | "not tested"


class DriftInputError(PlatformError, ValueError):
    """The windows cannot be compared (a column missing, an empty reference)."""


@dataclass(frozen=True)
class ShiftTest:
    """One statistic of one column: how far it moved, how sure we are, and the decision."""

    column: str
    statistic: str  # "mean", "quartile 50%", "share of 'west'", "new categories", "missing"
    unit: str  # "SD" (reference standard deviations) or "points" (a share difference)
    reference_value: float  # in the column's own units (a mean, a share)
    current_value: float
    estimate: float  # the shift, in `unit`
    se: float
    matters: float
    margin: float
    p_value: float
    weight: float  # share of the report's alpha
    adjusted_p: float = 1.0
    drifted: bool = False
    floor: float = 0.0  # the margin never goes below this
    design_se: float | None = None  # standard error at a change of what matters (shares), for the margin
    exact_counts: tuple[int, int] | None = None  # (rows, unseen rows): new categories get an exact binomial test

    @property
    def ci95(self) -> tuple[float, float]:
        return self.estimate - _Z_95 * self.se, self.estimate + _Z_95 * self.se

    @property
    def effect(self) -> float:
        """The shift in units of what matters: 1.0 is exactly the size the config cares about."""
        return abs(self.estimate) / self.matters if self.matters > 0 else 0.0

    def describe(self) -> str:
        if self.unit == "SD":
            return f"{self.statistic} {self.estimate:+.2f} SD"
        if self.statistic == "new categories":
            return f"new categories {100 * self.estimate:.1f}%"
        return f"{self.statistic} {100 * self.estimate:+.1f} pts"


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: str
    role: str
    verdict: Verdict
    tests: list[ShiftTest]
    notes: list[str]  # bad input named for a person: all null, constant, unseen categories, infinities
    reference_values: int
    current_values: int
    rows_needed: float | None  # current rows that catch a change of what matters with the configured power
    distribution: Distribution | None
    matters: Matters

    @property
    def drifted(self) -> bool:
        return self.verdict == "drift"

    @property
    def effect(self) -> float:
        """Largest shift in units of what matters (among the drifted statistics when the column drifted)."""
        tests = [t for t in self.tests if t.drifted] or self.tests
        return max((t.effect for t in tests), default=0.0)

    @property
    def headline(self) -> str:
        tests = [t for t in self.tests if t.drifted] or self.tests
        if not tests:
            return "not tested"
        return max(tests, key=lambda t: t.effect).describe()


@dataclass(frozen=True)
class DriftReport:
    reference: WindowInfo
    current: WindowInfo
    rules: DriftRules
    columns: list[ColumnDrift]
    verdict: str  # "drift" | "no drift" | "too small" | "no data"
    notes: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> list[ColumnDrift]:
        """Drifted columns, largest effect first."""
        return sorted((c for c in self.columns if c.drifted), key=lambda c: -c.effect)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.drifted]

    @property
    def drift_share(self) -> float:
        tested = [c for c in self.columns if c.verdict != "not tested"]
        return sum(c.drifted for c in tested) / len(tested) if tested else 0.0

    @property
    def effect_sizes(self) -> dict[str, float]:
        """Each column's largest shift in units of what matters, largest first."""
        ranked = sorted(self.columns, key=lambda c: -c.effect)
        return {c.column: round(c.effect, 3) for c in ranked if c.tests}

    @property
    def too_small(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.verdict == "too small"]

    def headline(self) -> str:
        """The verdict in a few words, for a banner or a notification title."""
        if self.verdict == "drift":
            names = ", ".join(c.column for c in self.drifted[:3])
            more = f" and {len(self.drifted) - 3} more" if len(self.drifted) > 3 else ""
            tested = sum(c.verdict != "not tested" for c in self.columns)
            return f"{len(self.drifted)} of {tested} columns drifted: {names}{more}"
        return self.summary()

    def summary(self) -> str:
        """One line for a log, a check description or a CLI."""
        if self.verdict == "no data":
            return "no data: the current window has no rows, nothing was compared"
        tested = [c for c in self.columns if c.verdict != "not tested"]
        if self.verdict == "drift":
            ranked = ", ".join(f"{c.column} ({c.headline})" for c in self.drifted)
            return f"drift in {len(self.drifted)} of {len(tested)} columns: {ranked}"
        if self.verdict == "too small":
            needed = max((c.rows_needed or 0) for c in self.too_small)
            needed_text = f"{needed:,.0f}" if math.isfinite(needed) else "more reference"
            return (f"no drift found, but the current window ({self.current.rows:,} rows) is too small to catch a "
                    f"change of the size that matters in {len(self.too_small)} columns; it needs {needed_text} rows")
        return f"no drift in {len(tested)} columns"

    def to_markdown(self) -> str:
        """A table for Dagster metadata: every column, its verdict and its largest shift."""
        lines = ["| column | role | verdict | largest shift | x matters | adj. p |", "|---|---|---|---|---|---|"]
        for c in sorted(self.columns, key=lambda c: (not c.drifted, -c.effect)):
            p = min((t.adjusted_p for t in c.tests), default=float("nan"))
            lines.append(f"| {c.column} | {c.role} | {c.verdict} | {c.headline} | {c.effect:.2f} | {p:.3g} |")
        return "\n".join(lines)


def compare_windows(reference: Window, current: Window, columns: Sequence[MonitoredColumn],
                    rules: DriftRules) -> DriftReport:
    """Judge every listed column of ``current`` against ``reference`` (see the module doc)."""
    if not columns:
        raise DriftInputError("no columns to compare")
    for label, window in (("reference", reference), ("current", current)):
        missing = [c.name for c in columns if c.name not in window.frame.columns]
        if missing:
            raise DriftInputError(f"the {label} window lacks the monitored columns {missing}; "
                                  f"it has {list(window.frame.columns)}")
    if len(reference.frame) == 0:
        raise DriftInputError(f"the reference window ({reference.description}) has no rows: nothing to compare with")
    reference_info, current_info = reference.info(), current.info()
    if len(current.frame) == 0:
        untested = [_untested(c, rules.matters(c.name), len(reference.frame), 0, ["no rows in the current window"])
                    for c in columns]
        return DriftReport(reference_info, current_info, rules, untested, "no data",
                           ["the current window has no rows: no data, nothing was compared"])

    plans = [_plan_column(c, reference.frame[c.name], current.frame[c.name], rules) for c in columns]
    tests = [t for plan in plans for t in plan.tests]
    # Each column gets an equal share of alpha, split over its statistics (weights sum to 1 per column).
    weights = [t.weight / len(columns) for t in tests]
    decided = _decide(tests, weights, rules)
    results, start = [], 0
    for plan in plans:
        column_tests = decided[start:start + len(plan.tests)]
        start += len(plan.tests)
        results.append(plan.finish(column_tests, rules, len(columns)))
    verdict = "no drift"
    if any(r.drifted for r in results):
        verdict = "drift"
    elif any(r.verdict == "too small" for r in results if r.role != "target"):
        verdict = "too small"
    notes = [f"{r.column}: {note}" for r in results for note in r.notes]
    return DriftReport(reference_info, current_info, rules, results, verdict, notes)


def _decide(tests: list[ShiftTest], weights: list[float], rules: DriftRules) -> list[ShiftTest]:
    """Margins from the design equation at each test's level, then weighted Holm over the whole report."""
    sized = []
    for test, weight in zip(tests, weights):
        design_se = test.se if test.design_se is None else test.design_se
        margin = design_margin(test.matters, design_se, rules.alpha * weight, rules.power, test.floor)
        if test.exact_counts is not None:
            rows, unseen = test.exact_counts
            # Exact one-sided binomial test of H0: share of unseen values <= margin.
            p = float(binom.sf(unseen - 1, rows, margin)) if unseen else 1.0
        else:
            p = min_effect_p_value(test.estimate, test.se, margin)
        sized.append(replace(test, margin=margin, p_value=p, weight=weight))
    rejected, adjusted = weighted_holm([t.p_value for t in sized], weights, rules.alpha)
    return [replace(t, adjusted_p=float(a), drifted=bool(r)) for t, r, a in zip(sized, rejected, adjusted)]


@dataclass
class _ColumnPlan:
    """A column's tests before the report-wide decision, and what its power check needs."""

    column: MonitoredColumn
    matters: Matters
    tests: list[ShiftTest]
    notes: list[str]
    reference_values: int
    current_values: int
    distribution: Distribution | None
    untestable: bool = False
    # Power check of the primary statistic(s): (change that matters, share of the column's alpha,
    # [(current variance per row, reference variance per row, reference rows)]; the worst one decides).
    power_inputs: tuple[float, float, list[tuple[float, float, int]]] | None = None

    def needed_rows(self, rules: DriftRules, columns: int) -> tuple[float | None, float | None]:
        """Current rows needed to catch a change of what matters, and (when the reference is the limit)
        the rows both windows would need."""
        if self.power_inputs is None:
            return None, None
        matters, weight, variances = self.power_inputs
        level = rules.alpha * weight / columns
        needed = [rows_needed(matters, level, rules.power, unit_variance_current=unit,
                              reference_variance=ref_unit / ref_rows) for unit, ref_unit, ref_rows in variances]
        worst = max(range(len(needed)), key=lambda i: needed[i])
        if math.isfinite(needed[worst]):
            return needed[worst], None
        unit, ref_unit, _ = variances[worst]
        both = rows_needed(matters, level, rules.power, unit_variance_current=unit + ref_unit, reference_variance=0)
        return needed[worst], both

    def finish(self, tests: list[ShiftTest], rules: DriftRules, columns: int) -> ColumnDrift:
        needed, both = self.needed_rows(rules, columns)
        if self.untestable or not tests:
            verdict = "not tested"
        elif any(t.drifted for t in tests):
            verdict = "drift"
        elif needed is not None and self.current_values < needed:
            verdict = "too small"
        else:
            verdict = "no drift"
        notes = list(self.notes)
        if verdict == "too small":
            need = (f"{needed:,.0f} rows" if math.isfinite(needed) else
                    f"a larger reference: {self.reference_values:,} reference rows cannot pin it down; "
                    f"about {both:,.0f} rows in each window would")
            notes.append(f"{self.current_values:,} current values are too few to catch a change of the size that "
                         f"matters with the configured power; that needs {need}")
        return ColumnDrift(self.column.name, self.column.kind, self.column.role, verdict, tests, notes,
                           self.reference_values, self.current_values, needed, self.distribution, self.matters)


def _untested(column: MonitoredColumn, matters: Matters, reference_values: int, current_values: int,
              notes: list[str]) -> ColumnDrift:
    return ColumnDrift(column.name, column.kind, column.role, "not tested", [], notes, reference_values,
                       current_values, None, None, matters)


def _plan_column(column: MonitoredColumn, reference: pd.Series, current: pd.Series, rules: DriftRules) -> _ColumnPlan:
    matters = rules.matters(column.name)
    if column.kind == "numeric":
        return _plan_numeric(column, reference, current, matters)
    return _plan_categorical(column, reference, current, matters, notes=[])


# --- numeric columns ---------------------------------------------------------------------------

def _plan_numeric(column: MonitoredColumn, reference: pd.Series, current: pd.Series, matters: Matters) -> _ColumnPlan:
    ref_values, ref_missing, ref_inf = numeric_values(reference)
    cur_values, cur_missing, cur_inf = numeric_values(current)
    ref_absent, cur_absent = ref_missing + ref_inf, cur_missing + cur_inf
    notes = _missing_notes(column, len(reference), ref_missing, ref_inf, len(current), cur_missing, cur_inf)

    if len(ref_values) and np.all(ref_values == ref_values[0]):
        # A constant reference has no standard deviation to measure shifts in: compare shares of values instead.
        notes.append(f"constant ({ref_values[0]:g}) in the reference: compared as shares of values")
        labels = lambda values: pd.Series([f"{v:g}" for v in values], dtype=object)  # noqa: E731
        return _plan_categorical(column, labels(ref_values), labels(cur_values), matters, notes=notes,
                                 absent=(ref_absent, len(reference), cur_absent, len(current)))

    missing_test = _share_test(column.name, "missing", ref_absent, len(reference), cur_absent, len(current),
                               matters.missing, NUMERIC_WEIGHTS["missing"])
    if len(ref_values) < MIN_VALUES or len(cur_values) < MIN_VALUES:
        notes.append(_too_few_reason(len(ref_values), len(cur_values)))
        power = None
        if len(ref_values) >= MIN_VALUES:
            power = (matters.numeric_sd, NUMERIC_WEIGHTS["mean"], [(1.0, 1.0, len(ref_values))])
        return _ColumnPlan(column, matters, _normalised([missing_test]), notes, len(ref_values), len(cur_values),
                           None, untestable=len(ref_values) == 0 and len(cur_values) == 0, power_inputs=power)

    jitter = is_integer_valued(ref_values) and is_integer_valued(cur_values)
    ref = numeric_summary(ref_values, len(reference), ref_missing, ref_inf, jitter=jitter)
    cur = numeric_summary(cur_values, len(current), cur_missing, cur_inf, jitter=jitter)
    sd = ref.sd
    # Delta method: the reference SD is estimated too, which widens a shift's error in proportion to its size.
    sd_error = max(ref.kurtosis - 1, 0.0) / (4 * ref.count)

    mean_shift = (cur.mean - ref.mean) / sd
    mean_se = math.sqrt((cur.sd**2 / cur.count + sd**2 / ref.count) / sd**2 + mean_shift**2 * sd_error)
    tests = [ShiftTest(column.name, "mean", "SD", ref.mean, cur.mean, mean_shift, mean_se, matters.numeric_sd,
                       0.0, 1.0, NUMERIC_WEIGHTS["mean"])]
    for p, q_ref, se_ref, q_cur, se_cur in zip(QUARTILES, ref.quartiles, ref.quartile_se, cur.quartiles,
                                               cur.quartile_se):
        if se_ref == 0 and se_cur == 0:
            if q_ref != q_cur:
                notes.append(f"quartile {p:.0%} not tested: it sits on tied values in both windows")
            continue
        shift = (q_cur - q_ref) / sd
        se = math.sqrt((se_ref**2 + se_cur**2) / sd**2 + shift**2 * sd_error)
        tests.append(ShiftTest(column.name, f"quartile {p:.0%}", "SD", q_ref, q_cur, shift, se, matters.numeric_sd,
                               0.0, 1.0, NUMERIC_WEIGHTS["quartiles"] / len(QUARTILES)))
    tests = _normalised([*tests, missing_test])
    reference_unit_variance = 1 + matters.numeric_sd**2 * max(ref.kurtosis - 1, 0.0) / 4
    power = (matters.numeric_sd, tests[0].weight, [(cur.sd**2 / sd**2, reference_unit_variance, ref.count)])
    plot_range = (min(ref.plot_range[0], cur.plot_range[0]), max(ref.plot_range[1], cur.plot_range[1]))
    distribution = histogram(ref_values, cur_values, plot_range, integer_valued=jitter)
    return _ColumnPlan(column, matters, tests, notes, ref.count, cur.count, distribution, power_inputs=power)


def _too_few_reason(reference_values: int, current_values: int) -> str:
    if reference_values == 0 and current_values == 0:
        return "no values in either window (all missing)"
    if reference_values == 0:
        return "no values in the reference window: only the share of missing values is compared"
    if current_values == 0:
        return "no values in the current window: only the share of missing values is compared"
    return (f"too few values to compare distributions ({reference_values:,} reference, {current_values:,} current; "
            f"at least {MIN_VALUES} each)")


def _missing_notes(column: MonitoredColumn, ref_rows: int, ref_missing: int, ref_inf: int, cur_rows: int,
                   cur_missing: int, cur_inf: int) -> list[str]:
    notes = []
    what = "scores" if column.role == "score" else "values"
    for label, rows, missing, infinite in (("reference", ref_rows, ref_missing, ref_inf),
                                           ("current", cur_rows, cur_missing, cur_inf)):
        if rows and missing + infinite == rows:
            notes.append(f"all {what} missing or infinite in the {label} window")
        elif missing or infinite:
            parts = [f"{n:,} {kind}" for n, kind in ((missing, "missing (NaN)"), (infinite, "infinite")) if n]
            notes.append(f"{' and '.join(parts)} {what} in the {label} window ({(missing + infinite) / rows:.1%}): "
                         "left out of the distribution, counted in the missing share")
    return notes


# --- categorical columns -----------------------------------------------------------------------

def _plan_categorical(column: MonitoredColumn, reference: pd.Series, current: pd.Series, matters: Matters, *,
                      notes: list[str], absent: tuple[int, int, int, int] | None = None) -> _ColumnPlan:
    ref, cur = category_summary(reference), category_summary(current)
    missing_tests = []
    if column.role == "target":
        # Labels arrive late: rows without one yet are not a change in the target, only the labelled ones count.
        for label, summary in (("reference", ref), ("current", cur)):
            if summary.missing:
                notes.append(f"{summary.missing:,} rows of the {label} window have no label yet: left out")
    else:
        if absent is None:
            absent = (ref.missing, ref.rows, cur.missing, cur.rows)
            notes.extend(_missing_notes(column, ref.rows, ref.missing, 0, cur.rows, cur.missing, 0))
        missing_tests.append(_share_test(column.name, "missing", *absent, matters.missing,
                                         CATEGORICAL_WEIGHTS["missing"]))
    if ref.present < MIN_VALUES or cur.present < MIN_VALUES:
        notes.append(_too_few_reason(ref.present, cur.present))
        untestable = not missing_tests or (ref.present == 0 and cur.present == 0)
        return _ColumnPlan(column, matters, _normalised(missing_tests), notes, ref.present, cur.present,
                           category_bars(ref, cur), untestable=untestable)

    tested = list(ref.counts)[:MAX_CATEGORIES]
    pooled = [name for name in ref.counts if name not in set(tested)]
    if len(ref.counts) == 1 and not any("constant" in n for n in notes):
        notes.append(f"constant ({tested[0]}) in the reference")
    # A binary column's two shares are one test: the rarer value's share reads best (churned = 1, True).
    shares_tested = tested[1:] if len(ref.counts) == 2 else tested
    share_weight = CATEGORICAL_WEIGHTS["shares"] / (len(shares_tested) + bool(pooled))
    tests = [_share_test(column.name, f"share of {name!r}", ref.counts[name], ref.present,
                         cur.counts.get(name, 0), cur.present, matters.share, share_weight)
             for name in shares_tested]
    if pooled:
        pooled_set = set(pooled)
        tests.append(_share_test(column.name, f"share of {OTHER}", sum(ref.counts[n] for n in pooled), ref.present,
                                 sum(v for k, v in cur.counts.items() if k in pooled_set), cur.present,
                                 matters.share, share_weight))

    unseen = {k: v for k, v in cur.counts.items() if k not in ref.counts}
    unseen_rows = sum(unseen.values())
    if unseen:
        listed = ", ".join(f"{k!r} ({v / cur.present:.1%})" for k, v in list(unseen.items())[:5])
        more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
        notes.append(f"{len(unseen):,} value(s) never seen in the reference: {listed}{more}")
    new_share = unseen_rows / cur.present
    tests.append(ShiftTest(
        column.name, "new categories", "points", 0.0, new_share, new_share,
        math.sqrt(max(new_share * (1 - new_share), 1 / cur.present) / cur.present), matters.new_category,
        0.0, 1.0, CATEGORICAL_WEIGHTS["new"],
        # A share the reference could have missed by chance (rule of three) never alarms.
        floor=max(matters.new_category / 4, 3 / ref.present),
        design_se=math.sqrt(matters.new_category * (1 - matters.new_category) / cur.present),
        exact_counts=(cur.present, unseen_rows),
    ))
    tests = _normalised([*tests, *missing_tests])

    variances = []
    for name in shares_tested:
        p_ref = ref.counts[name] / ref.present
        p_alt = _alternative_share(p_ref, matters.share)
        variances.append((p_alt * (1 - p_alt), p_ref * (1 - p_ref), ref.present))
    power = (matters.share, tests[0].weight, variances)
    return _ColumnPlan(column, matters, tests, notes, ref.present, cur.present, category_bars(ref, cur),
                       power_inputs=power)


def _alternative_share(p_ref: float, change: float) -> float:
    """The share after a change of ``change`` points, on the side with the larger variance."""
    candidates = [p for p in (p_ref + change, p_ref - change) if 0 <= p <= 1]
    return max(candidates, key=lambda p: p * (1 - p)) if candidates else min(max(p_ref, 0.0), 1.0)


def _share_test(column: str, statistic: str, ref_count: int, ref_rows: int, cur_count: int, cur_rows: int,
                matters: float, weight: float) -> ShiftTest:
    """Difference of two shares. The standard error uses Laplace-smoothed shares (an all-or-nothing share
    still has some uncertainty); the margin is designed with the error at a change of what matters."""
    p_ref = ref_count / ref_rows if ref_rows else 0.0
    p_cur = cur_count / cur_rows if cur_rows else 0.0
    smooth_ref = (ref_count + 1) / (ref_rows + 2)
    smooth_cur = (cur_count + 1) / (cur_rows + 2)
    ref_var = smooth_ref * (1 - smooth_ref) / max(ref_rows, 1)
    se = math.sqrt(ref_var + smooth_cur * (1 - smooth_cur) / max(cur_rows, 1))
    p_alt = _alternative_share(smooth_ref, matters)
    design_se = math.sqrt(ref_var + p_alt * (1 - p_alt) / max(cur_rows, 1))
    return ShiftTest(column, statistic, "points", p_ref, p_cur, p_cur - p_ref, se, matters, 0.0, 1.0, weight,
                     design_se=design_se)


def _normalised(tests: list[ShiftTest]) -> list[ShiftTest]:
    """Rescale a column's weights to sum to 1 (a skipped statistic's share goes to the others)."""
    total = sum(t.weight for t in tests)
    return [replace(t, weight=t.weight / total) for t in tests]
