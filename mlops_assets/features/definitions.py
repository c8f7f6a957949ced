"""Feature views: what a feature is, which view it belongs to, and the version of that definition.

A dataset config declares its views under ``feature_store.views``; a config without
any keeps working as the short form (every model feature in one view named ``all``).
A view's version is a hash of everything that decides its values: entity, event time,
source, TTL, each feature's type and transformation (the normalised expression, or the
Python function's source code) and the types of the source columns it reads.
Descriptions, owners and tags are not part of it: rewording a description does not
make a new version.

``config.py`` only parses; the checks that need the feature system (expressions,
transformations, every model feature in exactly one view) live here, in
:func:`validate`, and raise :class:`~mlops_assets.config.ConfigError` naming the file.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa

from mlops_assets.config import ConfigError, DatasetConfig, FeatureNote, FeatureViewConfig
from mlops_assets.errors import PlatformError
from mlops_assets.features.expressions import ExpressionError, evaluate, expression_columns
from mlops_assets.features.transformations import Transformation, TransformationError, registered

DEFAULT_VIEW = "all"
_ARROW_TYPES = {"integer": pa.int64(), "float": pa.float64(), "boolean": pa.bool_(), "string": pa.string(),
                "categorical": pa.string(), "datetime": pa.timestamp("us")}


class FeatureError(PlatformError, ValueError):
    """A feature that could not be computed or does not have its declared type."""


@dataclass(frozen=True)
class Feature:
    """One feature of one view, and how it is computed from the view's source rows."""

    name: str
    view: str
    type: str
    kind: str  # "column" | "expression" | "python"
    inputs: tuple[str, ...]
    description: str = ""
    tags: tuple[str, ...] = ()
    expression: str | None = None
    transformation: str | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.type]

    @property
    def reference(self) -> str:
        return f"{self.view}:{self.name}"

    def fingerprint(self, transformation_source: str = "") -> tuple[str, ...]:
        """Equal for two features computed the same way from the same columns, whatever their names."""
        if self.kind == "expression":
            tree = ast.parse(self.expression or "", mode="eval").body
            if isinstance(tree, ast.Name):  # `alias: some_column` is that column
                return ("column", tree.id)
            return ("expression", ast.dump(tree))
        if self.kind == "python":
            source = hashlib.sha256(transformation_source.encode()).hexdigest()
            output = self.name  # one function's different outputs are different features
            return ("python", source, output, *self.inputs)
        return ("column", self.name)


@dataclass(frozen=True)
class FeatureView:
    """A named group of features about one entity, computed from one source asset."""

    name: str
    dataset: str
    entity_column: str
    entity_type: str
    time_column: str
    source: str
    ttl: pd.Timedelta | None
    features: tuple[Feature, ...]
    transformations: tuple[Transformation, ...] = ()
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    input_types: dict[str, dict] = field(default_factory=dict)
    checks: dict = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def ttl_text(self) -> str:
        if self.ttl is None:
            return "none (values never expire)"
        days, rest = divmod(self.ttl, pd.Timedelta(days=1))
        return f"{days} days" if rest == pd.Timedelta(0) else str(self.ttl)

    def definition(self) -> dict:
        """Everything that decides the view's values, as plain data (what the version hashes)."""
        return {
            "view": self.name,
            "entity": [self.entity_column, self.entity_type],
            "event_time": self.time_column,
            "source": self.source,
            "ttl_seconds": None if self.ttl is None else self.ttl.total_seconds(),
            "features": [
                {"name": f.name, "type": f.type, "kind": f.kind, "inputs": sorted(f.inputs),
                 "expression": ast.dump(ast.parse(f.expression, mode="eval")) if f.expression else None,
                 "transformation": f.transformation}
                for f in self.features
            ],
            "transformations": {t.name: t.source for t in self.transformations},
            "input_types": self.input_types,
        }

    @cached_property
    def version(self) -> str:
        encoded = json.dumps(self.definition(), sort_keys=True, default=str).encode()
        return hashlib.sha256(encoded).hexdigest()[:12]

    @classmethod
    def from_registry(cls, entry: dict) -> FeatureView:
        """A registered version as it was defined (enough to read its table, not to recompute it)."""
        definition = entry["definition"]
        features = tuple(Feature(**{**f, "inputs": tuple(f["inputs"]), "tags": tuple(f["tags"])}) for f in entry["features"])
        ttl = definition["ttl_seconds"]
        view = cls(name=entry["view"], dataset=entry["dataset"], entity_column=definition["entity"][0],
                   entity_type=definition["entity"][1], time_column=definition["event_time"], source=definition["source"],
                   ttl=None if ttl is None else pd.Timedelta(seconds=ttl), features=features,
                   description=entry["description"], owner=entry["owner"], tags=entry["tags"])
        object.__setattr__(view, "version", entry["version"])  # the recorded hash, not recomputed without its code
        return view

    def lineage(self) -> dict[str, list[str]]:
        """Feature -> the source columns it is computed from (column-level lineage)."""
        return {f.name: list(f.inputs) for f in self.features}

    def arrow_schema(self, time_type: pa.DataType) -> pa.Schema:
        entity = _ARROW_TYPES[self.entity_type]
        return pa.schema([pa.field(self.entity_column, entity), pa.field(self.time_column, time_type),
                          *(pa.field(f.name, f.arrow_type) for f in self.features)])

    def compute(self, rows: pd.DataFrame) -> pa.Table:
        """The view's rows: entity id, event time and every feature, with their declared types.

        A transformation that raises, or a value that does not fit its declared type
        (1.5 for an integer, text for a number) is a FeatureError naming view and feature.
        """
        missing = [c for c in (self.entity_column, self.time_column) if c not in rows.columns]
        if missing:
            raise FeatureError(f"view {self.name!r}: the source rows lack {missing}")
        computed: dict[str, pd.Series] = {}
        for transform in self.transformations:
            try:
                outputs = transform.apply(rows)
            except TransformationError as exc:
                raise FeatureError(f"view {self.name!r}: {exc}") from exc
            computed.update({c: outputs[c] for c in outputs.columns})
        columns: dict[str, pa.Array] = {}
        # Delta stores microseconds: sub-microsecond parts are dropped here, and from entity frames at retrieval.
        times = pd.to_datetime(rows[self.time_column]).dt.floor("us")
        time_type = pa.timestamp("us", tz="UTC") if getattr(times.dtype, "tz", None) is not None else pa.timestamp("us")
        for name, values, arrow_type in (
            (self.entity_column, rows[self.entity_column], _ARROW_TYPES[self.entity_type]),
            (self.time_column, times.dt.tz_convert("UTC") if time_type.tz else times, time_type),
        ):
            columns[name] = _to_arrow(values, arrow_type, f"view {self.name!r}: column {name!r}")
        for feature in self.features:
            if feature.kind == "column":
                values = rows[feature.name]
            elif feature.kind == "expression":
                values = pd.Series(_evaluate(feature, rows), index=rows.index)
            else:
                values = computed[feature.name]
            columns[feature.name] = _to_arrow(values, feature.arrow_type,
                                              f"view {self.name!r}: feature {feature.name!r} ({feature.type})")
        return pa.table(columns, schema=self.arrow_schema(time_type))


def _evaluate(feature: Feature, rows: pd.DataFrame) -> np.ndarray:
    try:
        inputs = {c: rows[c].to_numpy(dtype=float, na_value=np.nan) for c in feature.inputs}
        values = evaluate(feature.expression or "", inputs)
    except (KeyError, TypeError, ValueError) as exc:
        raise FeatureError(f"view {feature.view!r}: feature {feature.name!r} = {feature.expression!r} failed: {exc}") from exc
    values[np.isinf(values)] = np.nan
    return values


def _to_arrow(values: pd.Series, arrow_type: pa.DataType, what: str) -> pa.Array:
    """Values as the declared Arrow type, refusing lossy conversions (1.5 -> 1, 7 -> "7")."""
    if pa.types.is_string(arrow_type) and not (values.dtype == object or pd.api.types.is_string_dtype(values)
                                               or isinstance(values.dtype, pd.CategoricalDtype)):
        raise FeatureError(f"{what}: declared text, got {values.dtype} values (e.g. {values.iloc[0]!r})")
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    try:
        return pa.Array.from_pandas(values, type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        sample = values.dropna().iloc[0] if values.notna().any() else None
        raise FeatureError(f"{what}: values do not fit the declared type ({exc}; e.g. {sample!r})") from exc


# From a config to its views --------------------------------------------------------------

_CACHE: dict[int, tuple[DatasetConfig, list[FeatureView]]] = {}


def feature_views(config: DatasetConfig) -> list[FeatureView]:
    """The config's feature views, validated (ConfigError naming the file otherwise). Cached per config."""
    cached = _CACHE.get(id(config))
    if cached is not None and cached[0] is config:
        return cached[1]
    views = _build_views(config)
    _CACHE[id(config)] = (config, views)
    return views


def validate(config: DatasetConfig) -> None:
    """Refuse a config whose features cannot be built: bad expressions, unknown transformations or features,
    a feature in two views, a model feature in none."""
    feature_views(config)


def view_by_name(config: DatasetConfig, name: str) -> FeatureView:
    views = {v.name: v for v in feature_views(config)}
    if name not in views:
        raise FeatureError(f"dataset {config.name!r} has no feature view {name!r}; views: {sorted(views)}")
    return views[name]


def _fail(config: DatasetConfig, message: str) -> ConfigError:
    return ConfigError(f"{config.path or config.name}: {message}")


def _build_views(config: DatasetConfig) -> list[FeatureView]:
    declared = set(config.columns) | {config.entity_column, config.time_column}
    for name, expression in config.derived_features.items():
        try:
            unknown = expression_columns(expression) - declared
        except ExpressionError as exc:
            raise _fail(config, f"derived feature {name!r}: {exc}") from exc
        if unknown:
            raise _fail(config, f"derived feature {name!r} reads undeclared columns {sorted(unknown)}")
    for module in config.feature_store.transformation_modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise _fail(config, f"feature_store.transformation_modules: cannot import {module!r}: {exc}") from exc

    view_configs = config.feature_store.views or {
        DEFAULT_VIEW: FeatureViewConfig(description=f"Every model feature of {config.name} (the config's short form).",
                                        features=list(config.model_features))}
    views, owner_of = [], {}
    for view_name, view_config in view_configs.items():
        view = _build_view(config, view_name, view_config)
        for feature in view.features:
            if feature.name in owner_of:
                raise _fail(config, f"feature {feature.name!r} is defined by views {owner_of[feature.name]!r} and "
                                    f"{view_name!r}; a feature belongs to one view")
            owner_of[feature.name] = view_name
        views.append(view)
    orphans = [f for f in config.model_features if f not in owner_of]
    if orphans:
        raise _fail(config, f"model features {orphans} are in no feature view; add them under feature_store.views")
    return views


def _notes(view_config: FeatureViewConfig) -> dict[str, FeatureNote]:
    if isinstance(view_config.features, list):
        return {name: FeatureNote() for name in view_config.features}
    return {name: note if isinstance(note, FeatureNote) else FeatureNote(description=note or "")
            for name, note in view_config.features.items()}


def _build_view(config: DatasetConfig, name: str, view_config: FeatureViewConfig) -> FeatureView:
    where = f"feature_store.views.{name}"
    transformations = []
    for transform_name in view_config.transformations:
        try:
            transform = registered(transform_name)
        except TransformationError as exc:
            raise _fail(config, f"{where}: {exc}") from exc
        undeclared = [c for c in transform.inputs if c not in config.columns and c not in (config.entity_column, config.time_column)]
        if undeclared:
            raise _fail(config, f"{where}: transformation {transform_name!r} reads undeclared columns {undeclared}")
        transformations.append(transform)
    produced = {out: (t, typ) for t in transformations for out, typ in t.outputs.items()}
    features = []
    for feature_name, note in _notes(view_config).items():
        if feature_name in (config.entity_column, config.time_column):
            raise _fail(config, f"{where}: {feature_name!r} is the entity id or event time, not a feature")
        description = note.description
        if feature_name in produced:
            transform, typ = produced[feature_name]
            feature = Feature(feature_name, name, typ, "python", transform.inputs, transformation=transform.name,
                              description=description or transform.description.splitlines()[0] if transform.description else description)
        elif feature_name in config.derived_features:
            expression = config.derived_features[feature_name]
            feature = Feature(feature_name, name, "float", "expression", tuple(sorted(expression_columns(expression))),
                              expression=expression, description=description or f"derived: {expression}")
        elif feature_name in config.columns:
            spec = config.columns[feature_name]
            feature = Feature(feature_name, name, spec.type, "column", (feature_name,),
                              description=description or getattr(spec, "description", None) or "")
        else:
            raise _fail(config, f"{where}: feature {feature_name!r} is not a declared column, a derived feature or "
                                f"an output of the view's transformations {sorted(produced) or '(none)'}")
        features.append(Feature(**{**feature.__dict__, "tags": tuple(note.tags)}))
    if not features:
        raise _fail(config, f"{where}: a view needs at least one feature")
    inputs = sorted({c for f in features for c in f.inputs} | {config.time_column})
    entity_spec = config.columns.get(config.entity_column)
    return FeatureView(
        name=name,
        dataset=config.name,
        entity_column=config.entity_column,
        entity_type="string" if entity_spec is not None and entity_spec.type in ("string", "categorical") else "integer",
        time_column=config.time_column,
        source=f"{config.name}/raw_rows",
        ttl=None if view_config.ttl is None else pd.Timedelta(view_config.ttl),
        features=tuple(features),
        transformations=tuple(transformations),
        description=view_config.description,
        owner=view_config.owner or (config.owners[0] if config.owners else ""),
        tags=dict(view_config.tags),
        input_types={c: {"type": config.columns[c].type, "nullable": config.columns[c].nullable}
                     for c in inputs if c in config.columns},
        checks=view_config.checks.model_dump(),
    )
