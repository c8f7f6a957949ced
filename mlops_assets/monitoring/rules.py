"""What a dataset's monitoring compares and what size of change matters, read from its config.

``config.py`` only parses the ``drift`` section; the checks that need monitoring knowledge
(which columns are monitored, which thresholds fit a column's kind) live here and run when
the monitoring assets are built, so a wrong override fails when the code location loads,
naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from mlops_assets.config import ConfigError, DatasetConfig, DriftMatters

#: The model's score is monitored like a numeric column under this name (override key in drift.columns).
SCORE_COLUMN = "model_score"

Kind = Literal["numeric", "categorical"]
Role = Literal["feature", "score", "target"]


@dataclass(frozen=True)
class Matters:
    """The smallest change worth an alarm for one column (see docs/monitoring.md)."""

    numeric_sd: float = 0.2  # mean or quartile, in reference standard deviations
    share: float = 0.10  # a category's share, as a fraction (0.10 = 10 points)
    new_category: float = 0.01  # share of values never seen in the reference
    missing: float = 0.05  # share of missing (or infinite) values


DEFAULT_MATTERS = Matters()

#: Which thresholds a column kind uses; setting another one is a config error.
FIELDS_BY_KIND: dict[Kind, tuple[str, ...]] = {
    "numeric": ("numeric_sd", "missing"),
    "categorical": ("share", "new_category", "missing"),
}


@dataclass(frozen=True)
class MonitoredColumn:
    name: str
    kind: Kind
    role: Role


@dataclass(frozen=True)
class DriftRules:
    """Report-level false-alarm rate, power at what matters, and what matters per column."""

    alpha: float = 0.05
    power: float = 0.95
    default: Matters = DEFAULT_MATTERS
    per_column: dict[str, Matters] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be between 0 and 0.5, got {self.alpha}")
        if not 0.5 <= self.power < 1:
            raise ValueError(f"power must be in [0.5, 1), got {self.power}")

    def matters(self, column: str) -> Matters:
        return self.per_column.get(column, self.default)


def _overlay(base: Matters, override: DriftMatters) -> Matters:
    values = {f.name: getattr(base, f.name) for f in fields(Matters)}
    values.update({k: v for k, v in override.model_dump().items() if v is not None})
    return Matters(**values)


def monitored_columns(config: DatasetConfig, *, score: bool = True, target: bool = True) -> list[MonitoredColumn]:
    """The model features (booleans compared as shares), then the model score and the target."""
    columns = [MonitoredColumn(name, "numeric", "feature") for name in config.numeric_features
               if name in config.derived_features or config.columns[name].type != "boolean"]
    columns += [MonitoredColumn(name, "categorical", "feature") for name in config.features
                if config.columns[name].type == "boolean" or name in config.categorical_features]
    order = {name: i for i, name in enumerate(config.model_features)}
    columns.sort(key=lambda c: order[c.name])
    if score:
        columns.append(MonitoredColumn(SCORE_COLUMN, "numeric", "score"))
    if target:
        columns.append(MonitoredColumn(config.target, "categorical", "target"))
    return columns


def drift_rules(config: DatasetConfig) -> DriftRules:
    """The config's drift section resolved per column; ConfigError naming file and field when it does not fit."""
    drift = config.drift
    default = _overlay(DEFAULT_MATTERS, drift.matters)
    kinds = {c.name: c.kind for c in monitored_columns(config)}
    per_column = {}
    for name, override in drift.columns.items():
        where = f"{config.path or config.name}: drift.columns.{name}"
        if name not in kinds:
            raise ConfigError(f"{where}: {name!r} is not monitored; monitored columns are "
                              f"{', '.join(kinds)}")
        allowed = FIELDS_BY_KIND[kinds[name]]
        wrong = [k for k, v in override.model_dump().items() if v is not None and k not in allowed]
        if wrong:
            raise ConfigError(f"{where}.{wrong[0]}: {name!r} is {kinds[name]}; it takes {', '.join(allowed)}")
        per_column[name] = _overlay(default, override)
    return DriftRules(alpha=drift.alpha, power=drift.power, default=default, per_column=per_column)
