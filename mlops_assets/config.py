"""The dataset config: the contract every system reads (DESIGN.md, "Dataset config").

A dataset is one YAML file in ``configs/``: where its rows come from, which column is
the entity id, the event time and the target, which columns are sensitive, which are
model features, the model family, the search space and the gate thresholds. Nothing
in the platform is specific to one dataset; a new CSV plus a new YAML file runs the
whole graph.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from mlops_assets.errors import PlatformError
from mlops_assets.features.expressions import ExpressionError, expression_columns

ColumnType = Literal["integer", "float", "boolean", "string", "categorical", "datetime"]
NUMERIC_TYPES = {"integer", "float", "boolean"}

#: Columns the platform adds when the config names no entity id or event time.
ROW_ID_COLUMN = "row_id"
LOAD_TIME_COLUMN = "load_time"


class ConfigError(PlatformError, ValueError):
    """A dataset config that cannot be used, with the file and field named."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    """One raw column and the values it may hold; the raw pandera schema is built from these."""

    type: ColumnType
    nullable: bool = False
    unique: bool = False
    min: float | None = None
    max: float | None = None
    values: list[str | int | float | bool] | None = Field(
        default=None, description="allowed values (categorical columns, binary targets)"
    )


class SourceConfig(_Strict):
    """Where raw rows come from: a file (CSV or Parquet, by suffix) or a seeded generator."""

    path: str | None = None
    generator: Literal["churn"] | None = None
    rows: int = Field(default=20_000, gt=0)
    seed: int = 7
    start: str = "2025-01-01"
    end: str = "2025-12-31"

    @model_validator(mode="after")
    def _one_kind(self) -> SourceConfig:
        if (self.path is None) == (self.generator is None):
            raise ValueError("give exactly one of source.path (CSV/Parquet file) or source.generator")
        if self.path is not None and Path(self.path).suffix.lower() not in {".csv", ".parquet", ".pq"}:
            raise ValueError(f"source.path {self.path!r} must end in .csv or .parquet")
        return self


class SplitConfig(_Strict):
    """Time-based split: the newest rows are the test set, the ones before them validation."""

    validation: float = Field(default=0.15, gt=0, lt=0.5)
    test: float = Field(default=0.15, gt=0, lt=0.5)


class ModelConfig(_Strict):
    family: Literal["hist_gradient_boosting", "logistic_regression", "random_forest"] = "hist_gradient_boosting"
    params: dict[str, Any] = Field(default_factory=dict)
    decision_threshold: float | Literal["max_f1"] = Field(
        default="max_f1", description="fixed probability cut-off, or chosen on the validation set"
    )
    seed: int = 0


class DriftMatters(_Strict):
    """The smallest change worth a drift alarm. Unset fields inherit (column -> dataset -> built-in default)."""

    numeric_sd: float | None = Field(default=None, gt=0, description="a mean or quartile moved by this many "
                                     "reference standard deviations (built-in default 0.2)")
    share: float | None = Field(default=None, gt=0, lt=1, description="a category's share moved by this much "
                                "(0.10 = 10 points; built-in default 0.10)")
    new_category: float | None = Field(default=None, gt=0, lt=1, description="share of values never seen in the "
                                       "reference (built-in default 0.01)")
    missing: float | None = Field(default=None, gt=0, lt=1, description="share of missing values moved by this "
                                  "much (built-in default 0.05)")


class CostMatrix(_Strict):
    """Cost of each outcome of one decision (any unit): the expected-cost KPI of the performance report."""

    true_positive: float = 0.0
    false_positive: float = 1.0
    false_negative: float = 1.0
    true_negative: float = 0.0


class DriftConfig(_Strict):
    """The "current" batch compared with the reference, what size of drift matters, and the business cost.

    Parsed here only; mlops_assets/monitoring/rules.py checks it against the columns where it is used.
    """

    current_rows: int = Field(default=5_000, gt=0)
    covariate_drift: float = Field(default=0.0, ge=0, description="generator knob: shift in the inputs")
    concept_drift: float = Field(default=0.0, ge=0, description="generator knob: change in P(target | inputs)")
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="report-level false-alarm rate")
    power: float = Field(default=0.95, ge=0.5, lt=1, description="chance of catching a change of the size that matters")
    matters: DriftMatters = Field(default_factory=DriftMatters)
    columns: dict[str, DriftMatters] = Field(default_factory=dict, description="per-column overrides of matters")
    cost_matrix: CostMatrix = Field(default_factory=CostMatrix)


class DatasetConfig(_Strict):
    name: str
    description: str = ""
    owners: list[str] = Field(default_factory=lambda: ["team:ml-platform"])
    source: SourceConfig
    entity_id: str | None = None
    event_time: str | None = None
    target: str
    columns: dict[str, ColumnSpec]
    sensitive_attributes: list[str] = Field(default_factory=list)
    features: list[str]
    derived_features: dict[str, str] = Field(
        default_factory=dict, description="name -> arithmetic expression over raw columns"
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    search_space: dict[str, Any] = Field(default_factory=dict)
    gates: dict[str, float] = Field(default_factory=dict)
    split: SplitConfig = Field(default_factory=SplitConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    path: Path | None = Field(default=None, exclude=True, description="the YAML file this came from")

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"name {name!r} must be lowercase letters, digits and underscores (it names assets)")
        return name

    @model_validator(mode="after")
    def _columns_are_declared(self) -> DatasetConfig:
        declared = set(self.columns)
        for role, column in (("entity_id", self.entity_id), ("event_time", self.event_time), ("target", self.target)):
            if column is not None and column not in declared:
                raise ValueError(f"{role} {column!r} is not declared under columns")
        for group, names in (("features", self.features), ("sensitive_attributes", self.sensitive_attributes)):
            missing = [n for n in names if n not in declared]
            if missing:
                raise ValueError(f"{group} name columns not declared under columns: {missing}")
        if self.target in self.features:
            raise ValueError(f"target {self.target!r} cannot also be a feature")
        clash = set(self.derived_features) & declared
        if clash:
            raise ValueError(f"derived_features reuse raw column names: {sorted(clash)}")
        for name, expression in self.derived_features.items():
            try:
                unknown = expression_columns(expression) - declared
            except ExpressionError as exc:
                raise ValueError(f"derived feature {name!r}: {exc}") from exc
            if unknown:
                raise ValueError(f"derived feature {name!r} reads undeclared columns {sorted(unknown)}")
        target = self.columns[self.target]
        if target.values is not None and len(target.values) != 2:
            raise ValueError(f"target {self.target!r} must be binary: values lists {target.values}")
        return self

    # Roles the rest of the platform asks for -----------------------------------------------
    @property
    def entity_column(self) -> str:
        return self.entity_id or ROW_ID_COLUMN

    @property
    def time_column(self) -> str:
        return self.event_time or LOAD_TIME_COLUMN

    @property
    def numeric_features(self) -> list[str]:
        raw = [f for f in self.features if self.columns[f].type in NUMERIC_TYPES]
        return raw + list(self.derived_features)

    @property
    def categorical_features(self) -> list[str]:
        return [f for f in self.features if self.columns[f].type not in NUMERIC_TYPES]

    @property
    def model_features(self) -> list[str]:
        """Columns the model sees, in a fixed order."""
        return self.numeric_features + self.categorical_features

    @property
    def registered_model_name(self) -> str:
        return f"{self.name}_model"

    @property
    def feature_version(self) -> str:
        """Hash of what defines the features: a change to any of these is a new feature version."""
        definition = {
            "columns": {k: v.model_dump() for k, v in sorted(self.columns.items())},
            "features": self.features,
            "derived": self.derived_features,
            "source": self.source.model_dump(),
        }
        return hashlib.sha256(json.dumps(definition, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def resolve_source_path(self) -> Path:
        """A relative source path is relative to the config file's folder."""
        assert self.source.path is not None
        path = Path(self.source.path).expanduser()
        if not path.is_absolute() and self.path is not None:
            path = self.path.parent / path
        return path


def load_dataset_config(path: str | Path) -> DatasetConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read dataset config: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a dataset config is a YAML mapping, got {type(raw).__name__}")
    try:
        return DatasetConfig(**raw, path=path.resolve())
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc


def load_dataset_configs(location: str | Path) -> list[DatasetConfig]:
    """One config file, or every ``*.yaml`` in a folder; dataset names must be unique."""
    location = Path(location)
    files = sorted(location.glob("*.yaml")) if location.is_dir() else [location]
    if not files:
        raise ConfigError(f"{location}: no dataset config (*.yaml) found")
    configs = [load_dataset_config(f) for f in files]
    names = [c.name for c in configs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"{location}: dataset names must be unique, repeated: {duplicated}")
    return configs
