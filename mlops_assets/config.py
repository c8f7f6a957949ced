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

ColumnType = Literal["integer", "float", "boolean", "string", "categorical", "datetime"]
NUMERIC_TYPES = {"integer", "float", "boolean"}

#: Columns the platform adds when the config names no entity id or event time.
ROW_ID_COLUMN = "row_id"
LOAD_TIME_COLUMN = "load_time"


class ConfigError(PlatformError, ValueError):
    """A dataset config that cannot be used, with the file and field named."""


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, where unquoted yes/no/on/off are booleans: ``values: [no, yes]`` would become
    ``[False, True]`` and ``positive_class: yes`` ``True``, matching nothing in the data. Here, as in
    YAML 1.2, only true/false are booleans (pydantic still reads ``nullable: yes`` as a boolean)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


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
    # Documentation only: excluded from model_dump, so describing a column never changes the feature version.
    description: str | None = Field(default=None, exclude=True, description="what the column means, for people")


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
    decision_threshold: float | Literal["max_f1", "max_mcc"] = Field(
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
class SearchParameter(_Strict):
    """One tuned parameter: a numeric range (``low``/``high``, ``log``, ``step``) or a list of ``choices``.

    Integers in ``low`` and ``high`` make an integer parameter. Which names exist is checked
    against the model family by the training system (``training/search_space.py``).
    """

    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = Field(default=None, gt=0)
    choices: list[str | int | float | bool | None] | None = None

    @model_validator(mode="after")
    def _a_range_or_choices(self) -> SearchParameter:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            if not self.choices:
                raise ValueError("choices is empty: list at least one value")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both low and high (or give choices)")
        if self.low > self.high:
            raise ValueError(f"inverted range: low {self.low} is above high {self.high}")
        if self.low == self.high:
            raise ValueError(f"empty range: low and high are both {self.low}; fix the value in model.params instead")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        return self

    @property
    def kind(self) -> Literal["int", "float", "categorical"]:
        if self.choices is not None:
            return "categorical"
        integral = isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.step, float)
        return "int" if integral else "float"


class TuningConfig(_Strict):
    """How the ``study`` asset searches ``search_space`` (Optuna: TPE sampler, pruning on intermediate scores)."""

    n_trials: int = Field(default=20, ge=1, description="trials per study, all workers together")
    timeout_seconds: float | None = Field(default=600, gt=0, description="stop starting trials after this long")
    pruner: Literal["median", "hyperband", "none"] = "median"
    metric: Literal["roc_auc", "pr_auc", "log_loss", "brier"] = Field(
        default="roc_auc", description="validation metric the study optimizes")
    stages: int = Field(default=4, ge=1, le=50, description="intermediate scores per trial (pruning points)")
    seed: int = Field(default=0, description="TPE seed; worker k of a study uses seed + k")
    max_train_rows: int | None = Field(
        default=200_000, ge=1000, description="trials fit on a seeded random sample of at most this many training "
        "rows (validation uses every row; the registered model is fitted on all of them); null: every row")


class ComparisonConfig(_Strict):
    """How two model versions are compared on the same test rows."""

    significance_level: float = Field(default=0.05, gt=0, lt=0.5)
    bootstrap_samples: int = Field(default=1000, ge=100, le=100_000)
    seed: int = 0


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


class FeatureNote(_Strict):
    """What a person reads about one feature in the catalog."""

    description: str = ""
    tags: list[str] = Field(default_factory=list)


class DistributionChecksConfig(_Strict):
    """Thresholds of the checks that compare a view's new materialization with the one served before it."""

    max_null_rate_increase: float = Field(default=0.10, ge=0, le=1, description="absolute increase in a feature's null rate")
    max_mean_shift: float = Field(default=0.5, ge=0, description="|mean change| in previous standard deviations")
    max_quantile_shift: float = Field(default=0.5, ge=0, description="|p10/p50/p90 change| in previous standard deviations")
    allow_new_categories: bool = False


class FeatureViewConfig(_Strict):
    """One feature view: a named group of features about the dataset's entity, from its raw rows.

    ``features`` is a list of names (raw columns, ``derived_features``, or outputs of the
    named Python ``transformations``), or a mapping name -> description / FeatureNote.
    """

    description: str = ""
    owner: str | None = None
    ttl: str | None = Field(default=None, description="how long a value stays valid: e.g. 90d, 12h, 30m; none = forever")
    tags: dict[str, str] = Field(default_factory=dict)
    features: list[str] | dict[str, str | FeatureNote | None]
    transformations: list[str] = Field(default_factory=list, description="registered Python transformations, by name")
    checks: DistributionChecksConfig = Field(default_factory=DistributionChecksConfig)

    @field_validator("ttl")
    @classmethod
    def _duration(cls, ttl: str | None) -> str | None:
        if ttl is not None and not re.fullmatch(r"\d+(\.\d+)?(s|m|h|d|w)", ttl):
            raise ValueError(f"ttl {ttl!r} must be a number and a unit (s, m, h, d or w), e.g. 90d")
        return ttl


class FeatureStoreConfig(_Strict):
    """Feature views of a dataset; without any, every model feature forms one view named ``all``."""

    views: dict[str, FeatureViewConfig] = Field(default_factory=dict)
    transformation_modules: list[str] = Field(
        default_factory=list, description="modules to import whose @transformation functions views may name")

    @field_validator("views")
    @classmethod
    def _view_names(cls, views: dict[str, FeatureViewConfig]) -> dict[str, FeatureViewConfig]:
        for name in views:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(f"view name {name!r} must be lowercase letters, digits and underscores (it names assets)")
        return views


class ReleaseConfig(_Strict):
    """How the pipeline treats a new version's gates (the thresholds themselves are ``gates``)."""

    blocking_gates: bool = Field(
        default=True,
        description="a failed gate is an ERROR check that stops the run's downstream steps; false: a WARN "
        "check and the run goes on. Either way a version that failed a gate never becomes champion.",
    )


class FairnessConfig(_Strict):
    """How fairness is measured on the test split, and the limits that block a model (governance)."""

    min_group_size: int = Field(default=30, ge=1, description="smaller groups are flagged and left out of differences")
    bootstrap: int = Field(default=200, ge=0, description="bootstrap resamples for the intervals (0: none)")
    confidence: float = Field(default=0.95, gt=0, lt=1)
    intersections: bool = Field(default=True, description="also every pair of sensitive attributes")
    judge_intersections: bool = Field(default=False, description="hold pairs to the thresholds too (else: measured)")
    bands: dict[str, list[float]] = Field(default_factory=dict, description="numeric sensitive attribute -> band edges")
    max_demographic_parity_difference: float | None = Field(default=None, ge=0, le=1)
    max_equalized_odds_difference: float | None = Field(default=None, ge=0, le=1)
    min_demographic_parity_ratio: float | None = Field(default=None, ge=0, le=1)
    min_equalized_odds_ratio: float | None = Field(default=None, ge=0, le=1)
    seed: int = 0

    @field_validator("bands")
    @classmethod
    def _increasing_edges(cls, bands: dict[str, list[float]]) -> dict[str, list[float]]:
        for name, edges in bands.items():
            if not edges or any(b <= a for a, b in zip(edges, edges[1:])):
                raise ValueError(f"bands.{name} must be a non-empty list of strictly increasing edges, got {edges}")
        return bands


class ExplanationConfig(_Strict):
    """Global permutation importance and per-row contributions (governance)."""

    repeats: int = Field(default=5, ge=2, description="permutation-importance repeats (the spread comes from them)")
    max_rows: int = Field(default=20_000, ge=100, description="test rows each repeat scores: a fresh random sample "
                          "per repeat when the split is larger (117 s of a 1M-row run with every row)")
    examples: int = Field(default=3, ge=0, description="test rows explained on the card")
    background_rows: int = Field(default=64, ge=8, description="training rows a contribution is measured against")
    permutations: int = Field(default=16, ge=2, description="feature orderings sampled per explained row")
    seed: int = 0


class GovernanceConfig(_Strict):
    """Model cards, fairness, explanations and approvals: paths are relative to the config file."""

    human_sections: str | None = Field(default=None, description="reviewed card text; default <name>.card.md")
    roles_file: str | None = Field(default=None, description="people, roles and required approvals; none: no approvals")
    fairness: FairnessConfig = Field(default_factory=FairnessConfig)
    explanations: ExplanationConfig = Field(default_factory=ExplanationConfig)


ExperimentMetric = Literal["outcome", "brier", "log_loss", "accuracy"]
ExperimentMode = Literal["single", "ab", "shadow"]


class GuardrailConfig(_Strict):
    """Limits the challenger must keep during an experiment; a breach decides for the champion."""

    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="share of the challenger's requests that failed")
    max_p99_latency_ms: float | None = Field(default=None, gt=0, description="the challenger's 99th percentile latency")
    metrics: list[ExperimentMetric] = Field(
        default_factory=list, description="metrics that must not get significantly worse (confidence sequence)"
    )


class ExperimentConfig(_Strict):
    """A champion/challenger experiment on the service, declared with its dataset (docs/ab-testing.md).

    The service starts in this state; ``mlops experiment start|stop`` and the admin endpoint
    change it at run time. Variants are registry aliases, so moving an alias changes the model
    a variant serves without touching the experiment.
    """

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="seeds the assignment hash: a new id reshuffles")
    mode: ExperimentMode = "ab"
    champion: str = Field(default="champion", description="registry alias of the control")
    challenger: str = Field(default="challenger", description="registry alias of the treatment")
    split: str = Field(default="90/10", description="champion/challenger traffic in percent, e.g. 90/10")
    primary_metric: ExperimentMetric = "outcome"
    outcome_goal: Literal["increase", "decrease"] = Field(
        default="increase", description="whether a higher outcome (from /feedback) is better"
    )
    covariate: str | None = Field(default=None, description="numeric raw feature used for CUPED variance reduction")
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    min_units: int = Field(default=100, ge=2, description="units with an outcome per variant before any verdict")
    guardrails: GuardrailConfig = Field(default_factory=GuardrailConfig)

    @field_validator("split")
    @classmethod
    def _two_shares(cls, split: str) -> str:
        split_share(split)
        return split

    @property
    def challenger_share(self) -> float:
        return split_share(self.split)


def split_share(split: str) -> float:
    """The challenger's share of traffic from "champion/challenger" percentages ("90/10" -> 0.1)."""
    parts = split.split("/")
    try:
        champion, challenger = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"split {split!r} must be two percentages, champion/challenger, e.g. 90/10") from None
    if champion < 0 or challenger < 0 or abs(champion + challenger - 100) > 1e-9:
        raise ValueError(f"split {split!r}: the two percentages must be >= 0 and add up to 100")
    return challenger / 100


class DatasetConfig(_Strict):
    name: str
    description: str = ""
    owners: list[str] = Field(default_factory=lambda: ["team:ml-platform"])
    source: SourceConfig
    entity_id: str | None = None
    event_time: str | None = None
    target: str
    positive_class: str | int | float | bool | None = Field(
        default=None, description="the target value that means positive; needed unless the target is 0/1 or true/false"
    )
    columns: dict[str, ColumnSpec]
    sensitive_attributes: list[str] = Field(default_factory=list)
    features: list[str]
    derived_features: dict[str, str] = Field(
        default_factory=dict, description="name -> arithmetic expression over raw columns"
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    search_space: dict[str, SearchParameter] = Field(default_factory=dict)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    comparison: ComparisonConfig = Field(default_factory=ComparisonConfig)
    gates: dict[str, float] = Field(default_factory=dict)
    release: ReleaseConfig = Field(default_factory=ReleaseConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    feature_store: FeatureStoreConfig = Field(default_factory=FeatureStoreConfig)
    governance: GovernanceConfig = Field(default_factory=GovernanceConfig)
    experiment: ExperimentConfig | None = None
    path: Path | None = Field(default=None, exclude=True, description="the YAML file this came from")

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"name {name!r} must be lowercase letters, digits and underscores (it names assets)")
        return name

    @field_validator("columns")
    @classmethod
    def _named_columns(cls, columns: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        if any(not name.strip() for name in columns):
            raise ValueError(
                "a column name cannot be empty; pandas reads an empty CSV header as 'Unnamed: <position>' "
                "(from 0), so declare a first column without a name as \"Unnamed: 0\""
            )
        return columns

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
        # The expressions themselves are checked by the feature system that owns them
        # (mlops_assets.features.definitions.validate), where the config is used.
        target = self.columns[self.target]
        if target.values is not None and len(target.values) != 2:
            raise ValueError(f"target {self.target!r} must be binary: values lists {target.values}")
        if target.nullable:
            raise ValueError(f"target {self.target!r} cannot be nullable: a row without a label can be neither "
                             "learned from nor evaluated (leave such rows out of the source)")
        self._check_positive_class(target)
        return self

    def _check_positive_class(self, target: ColumnSpec) -> None:
        """Which target value is positive must never be guessed (the order of ``values`` used to decide)."""
        positive = self.positive_class
        if positive is None:
            spelled = target.type in {"string", "categorical"} if target.values is None else not zero_one(target.values)
            if spelled:
                found = f"values {target.values}" if target.values else f"type {target.type}"
                raise ValueError(
                    f"target {self.target!r} ({found}) needs positive_class: the value that means positive "
                    "(only a 0/1 or true/false target can go without)"
                )
            return
        if target.type == "boolean" and not isinstance(positive, bool):
            raise ValueError(f"positive_class of the boolean target {self.target!r} is true or false, not {positive!r}")
        if target.type in {"integer", "float"} and (isinstance(positive, (bool, str))):
            raise ValueError(f"positive_class of the numeric target {self.target!r} is a number, not {positive!r}")
        listed = target.values is None or positive in target.values or str(positive) in map(str, target.values)
        if not listed:
            raise ValueError(f"positive_class {positive!r} is not one of the target's values {target.values}")
    @model_validator(mode="after")
    def _experiment_covariate_is_a_numeric_feature(self) -> DatasetConfig:
        covariate = self.experiment.covariate if self.experiment else None
        if covariate is not None and (covariate not in self.features or self.columns[covariate].type not in NUMERIC_TYPES):
            raise ValueError(f"experiment.covariate {covariate!r} must be a numeric column listed under features")
        return self

    # Roles the rest of the platform asks for -----------------------------------------------
    @property
    def entity_column(self) -> str:
        return self.entity_id or ROW_ID_COLUMN

    @property
    def time_column(self) -> str:
        return self.event_time or LOAD_TIME_COLUMN

    @property
    def request_features(self) -> list[str]:
        """The features a request (or a feature view) carries: every model feature that is not derived."""
        return [f for f in self.features if f not in self.derived_features]

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
    def positive_label(self) -> str:
        """The positive class as people read it: ``'yes'``, or ``1`` for a 0/1 target."""
        if self.positive_class is not None:
            return repr(self.positive_class)
        return "true" if self.columns[self.target].type == "boolean" else "1"

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


def zero_one(values: list) -> bool:
    """Values that are 0/1 or false/true (1.0 and True count as 1): a target that needs no positive_class."""
    return all(not isinstance(v, str) and v in (0, 1) for v in values)


def load_dataset_config(path: str | Path, require_source: bool = True) -> DatasetConfig:
    """The config in ``path``, checked; ``require_source=False`` for processes that never read the rows
    (the prediction service, whose Bento ships the configs but not the training data)."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_Yaml12Loader)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read dataset config: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a dataset config is a YAML mapping, got {type(raw).__name__}")
    try:
        config = DatasetConfig(**raw, path=path.resolve())
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from exc
    if require_source and config.source.path is not None and not config.resolve_source_path().is_file():
        raise ConfigError(
            f"{path}: source.path: {config.resolve_source_path()} does not exist "
            "(a relative path is relative to the config's folder)"
        )
    return config


def load_dataset_configs(location: str | Path, require_source: bool = True) -> list[DatasetConfig]:
    """One config file, or every ``*.yaml`` in a folder; dataset names must be unique."""
    location = Path(location)
    files = sorted(location.glob("*.yaml")) if location.is_dir() else [location]
    if not files:
        raise ConfigError(f"{location}: no dataset config (*.yaml) found")
    configs = [load_dataset_config(f, require_source) for f in files]
    names = [c.name for c in configs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"{location}: dataset names must be unique, repeated: {duplicated}")
    return configs
