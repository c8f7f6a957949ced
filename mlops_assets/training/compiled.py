"""The compiled inference form of a fitted pipeline: JSON records to probabilities without pandas.

Scoring one record through the sklearn ``Pipeline`` costs milliseconds, nearly all of it
in building a DataFrame and in sklearn's per-call checks; the trees themselves need
microseconds. Here the fitted pipeline is translated, step by step, into what it
computes: each raw column becomes a float array straight from the records, derived
features are evaluated on those arrays (the same expressions as training), the fitted
imputers, scalers and encoders become constants and lookup tables, and the estimator
runs compiled (Treelite's GTIL for tree ensembles, a dot product for logistic regression).

The sklearn pipeline stays the model of record. A compiled form is only served after
:func:`verify` has shown it reproduces the pipeline's probabilities on the version's
test rows (plus the same rows with missing values and never-seen categories); anything
this module cannot translate raises :class:`Unsupported` and the version is served
through sklearn.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

from mlops_assets.config import NUMERIC_TYPES, DatasetConfig
from mlops_assets.errors import PlatformError
from mlops_assets.features.expressions import evaluate, expression_columns

#: Largest difference from the sklearn probabilities a compiled form may show and still serve.
TOLERANCE = 1e-9
#: A value no training data holds, to check how a form treats categories never seen in training.
UNSEEN_CATEGORY = "\x00never seen in training"
#: Rows (per column) copied with a missing value or an unseen category for verification.
PERTURBED_ROWS = 20

TREE_ESTIMATORS = {"HistGradientBoostingClassifier", "RandomForestClassifier", "ExtraTreesClassifier",
                   "GradientBoostingClassifier", "DecisionTreeClassifier"}


@dataclass(frozen=True)
class Inputs:
    """One batch of records as the blocks read them: numeric columns (raw, then derived) in one float
    matrix, categorical values straight from the records."""

    numeric: np.ndarray
    records: Sequence[dict]


Block = Callable[[Inputs], np.ndarray]  # inputs -> (n, k) block of estimator input


class Unsupported(PlatformError, TypeError):
    """The pipeline holds a step the compiled form cannot reproduce; the version is served by sklearn."""


# Column steps -------------------------------------------------------------------------------------
def _column_step(step: object, columns: list[str]) -> Callable[[np.ndarray], np.ndarray]:
    """One fitted transformer as a function of an (n, len(columns)) array; Unsupported otherwise."""
    if isinstance(step, str) and step == "passthrough" or isinstance(step, FunctionTransformer) and step.func is None:
        return lambda x: x.astype(float)  # a fitted ColumnTransformer holds "passthrough" as an identity function
    if isinstance(step, SimpleImputer):
        if getattr(step, "add_indicator", False):
            raise Unsupported("SimpleImputer(add_indicator=True) is not compiled")
        fill = np.asarray(step.statistics_, dtype=float)

        def impute(x: np.ndarray) -> np.ndarray:
            x = x.astype(float, copy=True)
            holes = np.isnan(x)
            if holes.any():
                x[holes] = np.broadcast_to(fill, x.shape)[holes]
            return x
        return impute
    if isinstance(step, StandardScaler):
        mean = step.mean_ if step.with_mean else 0.0
        scale = step.scale_ if step.with_std else 1.0
        return lambda x: (x - mean) / scale
    if isinstance(step, Pipeline):
        parts = [_column_step(inner, columns) for _, inner in step.steps]

        def chain(x: np.ndarray) -> np.ndarray:
            for part in parts:
                x = part(x)
            return x
        return chain
    raise Unsupported(f"{type(step).__name__} on {columns} is not compiled")


def _encoder_tables(encoder: OrdinalEncoder | OneHotEncoder) -> list[tuple[dict, int | None]]:
    """Per column: value -> category index, and the index of a learned NaN category (None: not learned).

    As in sklearn, ``None`` is an ordinary category (learned when training held None) and
    only a float NaN takes the missing-value path; a request's null arrives as None.
    """
    tables = []
    for categories in encoder.categories_:
        table, nan_index = {}, None
        for index, category in enumerate(categories.tolist()):
            if isinstance(category, float) and math.isnan(category):
                nan_index = index
            else:
                table[category] = index
        tables.append((table, nan_index))
    return tables


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _categorical_block(step: object, columns: list[str]) -> Block:
    """An encoder (optionally followed by numeric steps) reading raw category values."""
    after: Callable[[np.ndarray], np.ndarray] | None = None
    if isinstance(step, Pipeline):
        encoder, rest = step.steps[0][1], step.steps[1:]
        if rest:
            after = _column_step(Pipeline(rest), columns)
    else:
        encoder = step
    if isinstance(encoder, OrdinalEncoder):
        if encoder.handle_unknown != "use_encoded_value" or getattr(encoder, "_infrequent_enabled", False):
            raise Unsupported("an OrdinalEncoder that errors on unknown values or groups infrequent ones")
        tables = _encoder_tables(encoder)
        unknown = float(encoder.unknown_value)
        encoded_missing = float(encoder.encoded_missing_value)

        def code(value: object, table: dict, nan_index: int | None) -> float:
            return encoded_missing if nan_index is not None and _is_nan(value) else table.get(value, unknown)

        def ordinal(inputs: Inputs) -> np.ndarray:
            out = np.array([[code(record.get(column), table, nan_index) for column, (table, nan_index) in
                             zip(columns, tables)] for record in inputs.records], dtype=float)
            out = out.reshape(len(inputs.records), len(columns))
            return out if after is None else after(out)
        return ordinal
    if isinstance(encoder, OneHotEncoder):
        if encoder.handle_unknown != "ignore" or encoder.drop_idx_ is not None \
                or getattr(encoder, "_infrequent_enabled", False):
            raise Unsupported("a OneHotEncoder with drop, infrequent categories or errors on unknown values")
        tables = _encoder_tables(encoder)
        widths = [len(c) for c in encoder.categories_]
        offsets = np.concatenate([[0], np.cumsum(widths)[:-1]]).astype(int)

        def one_hot(inputs: Inputs) -> np.ndarray:
            out = np.zeros((len(inputs.records), sum(widths)))
            for column, (table, nan_index), offset in zip(columns, tables, offsets):
                for i, record in enumerate(inputs.records):
                    value = record.get(column)
                    index = nan_index if _is_nan(value) else table.get(value)
                    if index is not None:
                        out[i, offset + index] = 1.0
            return out if after is None else after(out)
        return one_hot
    raise Unsupported(f"{type(encoder).__name__} on categorical columns {columns} is not compiled")


def _prepare_blocks(prepare: ColumnTransformer, categorical: set[str], numeric_order: list[str]) -> list[Block]:
    """The ColumnTransformer's steps as blocks; ``numeric_order`` is the column order of ``Inputs.numeric``."""
    if prepare.remainder != "drop" and any(name == "remainder" for name, *_ in prepare.transformers_):
        raise Unsupported("a ColumnTransformer that passes its remainder through")
    blocks: list[Block] = []
    for _, step, columns in prepare.transformers_:
        if isinstance(step, str) and step == "drop" or len(columns) == 0:
            continue
        columns = list(columns)
        if any(isinstance(c, (int, np.integer)) for c in columns):
            raise Unsupported("a ColumnTransformer selecting columns by position")
        if categorical.intersection(columns):
            blocks.append(_categorical_block(step, columns))
        else:
            numeric = _column_step(step, columns)
            positions = np.array([numeric_order.index(c) for c in columns])
            blocks.append(lambda inputs, numeric=numeric, positions=positions: numeric(inputs.numeric[:, positions]))
    return blocks


# Estimators -----------------------------------------------------------------------------------------
def _without_nan_categories(model: object) -> object:
    """A copy of a histogram-boosting model whose internal category lists leave out NaN.

    When training held missing categories, sklearn lists NaN among a column's categories
    (last), though it routes missing values by the trees' missing-value branch; Treelite's
    importer cannot read a NaN category. The other categories keep their codes; whether
    the result still equals sklearn is for :func:`verify` to show.
    """
    preprocessor = getattr(model, "_preprocessor", None)
    if preprocessor is None or not hasattr(preprocessor, "transformers_"):
        return model
    encoder = preprocessor.transformers_[0][1]
    categories = getattr(encoder, "categories_", [])
    if not any(_is_nan(v) for c in categories for v in c.tolist()):
        return model
    clone = copy.deepcopy(model)
    inner = clone._preprocessor.transformers_[0][1]
    inner.categories_ = [np.array([v for v in c.tolist() if not _is_nan(v)], dtype=c.dtype) for c in inner.categories_]
    return clone


def _gtil_predictor(compiled: object) -> Callable[[np.ndarray], np.ndarray]:
    """GTIL prediction with everything that does not depend on the rows prepared once.

    ``treelite.gtil.predict`` parses a new configuration (JSON through ctypes) and asks the
    model for its input and output types (five more ctypes calls) on every call: about 35 us
    of the ~60 us one record cost. Here those are done once and each call is the single
    ``TreeliteGTILPredict`` call that ``gtil.predict`` itself makes (Treelite 4.8.1 is pinned;
    a Treelite without these names gets the public function, and verification still decides).
    """
    import ctypes

    from treelite import gtil

    try:
        from treelite.core import _LIB, _check_call
        from treelite.gtil.gtil import GTILConfig
        from treelite.util import c_str, typestr_to_ctypes_type, typestr_to_numpy_type
    except ImportError:
        return lambda x: gtil.predict(compiled, x, nthread=1)

    config = GTILConfig(predict_type="default", nthread=1)
    input_type, output_type = compiled.input_type, compiled.output_type
    input_dtype, output_dtype = typestr_to_numpy_type(input_type), typestr_to_numpy_type(output_type)
    input_pointer = ctypes.POINTER(typestr_to_ctypes_type(input_type))
    output_pointer = ctypes.POINTER(typestr_to_ctypes_type(output_type))
    input_name, features = c_str(input_type), compiled.num_feature
    per_row = gtil.predict(compiled, np.zeros((1, features)), nthread=1).shape[1:]

    def predict(x: np.ndarray) -> np.ndarray:
        if x.ndim != 2 or x.shape[1] != features:  # GTIL reads num_feature values per row, whatever it is given
            raise ValueError(f"the compiled trees take {features} columns, got an array of shape {x.shape}")
        x = np.ascontiguousarray(x, dtype=input_dtype)
        out = np.zeros((len(x), *per_row), dtype=output_dtype)
        _check_call(_LIB.TreeliteGTILPredict(compiled.handle, x.ctypes.data_as(input_pointer), input_name,
                                             ctypes.c_uint64(len(x)), out.ctypes.data_as(output_pointer),
                                             config.handle))
        return out
    return predict


def _estimator(model: object) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """(runtime name, X -> positive-class probability) for a fitted binary classifier."""
    classes = getattr(model, "classes_", None)
    if classes is None or len(classes) != 2:
        raise Unsupported(f"{type(model).__name__} is not a fitted binary classifier")
    if type(model).__name__ in TREE_ESTIMATORS:
        import treelite

        try:
            compiled = treelite.sklearn.import_model(_without_nan_categories(model))
        except Exception as exc:  # treelite names what it cannot import
            raise Unsupported(f"Treelite cannot import {type(model).__name__}: {exc}") from exc

        # sklearn's own trees compare float32 inputs with their thresholds; its histogram boosting, float64.
        float32_thresholds = type(model).__name__ != "HistGradientBoostingClassifier"
        predict = _gtil_predictor(compiled)

        def trees(x: np.ndarray) -> np.ndarray:
            if float32_thresholds:
                x = x.astype(np.float32).astype(np.float64)
            out = predict(x).reshape(len(x), -1)
            return out[:, -1]  # one output (positive class) or one per class: the positive one is last
        return f"treelite {treelite.__version__} (GTIL)", trees
    if isinstance(model, LogisticRegression):
        weights, intercept = model.coef_[0].astype(float), float(model.intercept_[0])
        return "numpy dot product", lambda x: expit(x @ weights + intercept)
    raise Unsupported(f"no compiled runtime for {type(model).__name__}")


# The compiled form ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompiledModel:
    """A verified-or-not inference form of one pipeline (see :func:`compile_pipeline`)."""

    runtime: str
    numeric_columns: tuple[str, ...]  # raw numeric request columns: the first columns of Inputs.numeric
    #: (expression, (name, position in Inputs.numeric) of each column it reads), in order after the raw ones
    derived: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]
    blocks: tuple[Block, ...]
    predict: Callable[[np.ndarray], np.ndarray]

    def inputs(self, records: Sequence[dict]) -> Inputs:
        """Numeric request values (None -> NaN) in one matrix, derived features computed on its columns."""
        raw = len(self.numeric_columns)
        numeric = np.empty((len(records), raw + len(self.derived)))
        numeric[:, :raw] = [[math.nan if (v := record.get(c)) is None else v for c in self.numeric_columns]
                            for record in records]
        for offset, (expression, reads) in enumerate(self.derived, start=raw):
            numeric[:, offset] = evaluate(expression, {name: numeric[:, i] for name, i in reads})
        if self.derived:
            derived = numeric[:, raw:]
            derived[np.isinf(derived)] = np.nan  # a division by zero is a missing value, as in training
        return Inputs(numeric, records)

    def matrix(self, records: Sequence[dict]) -> np.ndarray:
        inputs = self.inputs(records)
        return np.hstack([block(inputs) for block in self.blocks])

    def score_records(self, records: Sequence[dict]) -> np.ndarray:
        """Positive-class probability per record (dicts of raw feature values, JSON types)."""
        return self.predict(self.matrix(records))


def compile_pipeline(config: DatasetConfig, pipeline: Pipeline) -> CompiledModel:
    """The compiled form of a fitted ``Pipeline([ColumnTransformer, classifier])``; Unsupported if not that."""
    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) != 2 \
            or not isinstance(pipeline.steps[0][1], ColumnTransformer):
        raise Unsupported("only Pipeline([ColumnTransformer, classifier]) is compiled")
    prepare, model = pipeline.steps[0][1], pipeline.steps[1][1]
    numeric = [c for c in config.request_features if config.columns[c].type in NUMERIC_TYPES]
    order = numeric + list(config.derived_features)  # the columns of Inputs.numeric
    runtime, predict = _estimator(model)
    return CompiledModel(
        runtime=runtime, numeric_columns=tuple(numeric),
        derived=tuple((expression, tuple((c, order.index(c)) for c in sorted(expression_columns(expression))))
                      for expression in config.derived_features.values()),
        blocks=tuple(_prepare_blocks(prepare, set(config.categorical_features), order)),
        predict=predict,
    )


# Verification -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verification:
    """How a compiled form compared with the sklearn pipeline, on which rows."""

    rows: int
    max_abs_diff: float
    label_mismatches: int
    problem: str | None = None
    #: Records sklearn itself raised on (e.g. a null in a boolean column the schema refuses anyway).
    skipped: int = 0

    @property
    def passed(self) -> bool:
        return self.problem is None and self.max_abs_diff <= TOLERANCE and self.label_mismatches == 0

    def describe(self) -> str:
        if self.problem:
            return self.problem
        verdict = "matches" if self.passed else "does not match"
        skipped = f"; {self.skipped} record(s) sklearn cannot score left out" if self.skipped else ""
        return (f"{verdict} sklearn on {self.rows:,} rows: largest probability difference {self.max_abs_diff:.1e} "
                f"(tolerance {TOLERANCE:.0e}), {self.label_mismatches} label(s) differ at the threshold{skipped}")


def verification_records(config: DatasetConfig, test_rows: pd.DataFrame, seed: int = 0) -> list[dict]:
    """The test rows as request records, plus copies with a missing value or an unseen category per column."""
    raw = config.request_features
    frame = test_rows[raw].astype(object).where(test_rows[raw].notna(), None)
    records = [{k: _json_value(v) for k, v in row.items()} for row in frame.to_dict("records")]
    if not records:
        return records
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(records), size=min(PERTURBED_ROWS, len(records)), replace=False)
    perturbed = []
    for column in raw:
        for i in picks:
            perturbed.append({**records[i], column: None})
            if column not in config.numeric_features:
                perturbed.append({**records[i], column: UNSEEN_CATEGORY})
    return records + perturbed


def _json_value(value: object) -> object:
    """A value as it arrives in a JSON request (numpy scalars to Python ones)."""
    return value.item() if isinstance(value, np.generic) else value


def _reference_scores(reference: Callable[[Sequence[dict]], np.ndarray], records: Sequence[dict]) -> np.ndarray:
    """sklearn's scores, NaN for a record sklearn itself cannot score (such a record cannot be served either)."""
    try:
        return np.asarray(reference(records), dtype=float)
    except Exception:
        if len(records) == 1:
            return np.array([math.nan])
        half = len(records) // 2
        return np.concatenate([_reference_scores(reference, records[:half]), _reference_scores(reference, records[half:])])


def verify(compiled: CompiledModel, reference: Callable[[Sequence[dict]], np.ndarray], records: Sequence[dict],
           threshold: float) -> Verification:
    """Compare the compiled form with ``reference`` (the sklearn path) on ``records``."""
    if not records:
        return Verification(0, math.inf, 0, problem="no rows to verify the compiled form on")
    try:
        ours = compiled.score_records(records)
    except Exception as exc:
        return Verification(len(records), math.inf, 0, problem=f"the compiled form failed: {exc}")
    expected = _reference_scores(reference, records)
    if ours.shape != expected.shape or not np.isfinite(ours).all():
        return Verification(len(records), math.inf, 0, problem="the compiled form gave missing or misshaped scores")
    scored = ~np.isnan(expected)
    if not scored.any():
        return Verification(len(records), math.inf, 0, problem="sklearn could not score any verification record")
    ours, expected = ours[scored], expected[scored]
    return Verification(int(scored.sum()), float(np.max(np.abs(ours - expected))),
                        int(np.sum((ours >= threshold) != (expected >= threshold))),
                        skipped=int((~scored).sum()))


# Choosing the path a version is served by ----------------------------------------------------------
#: Where a version's verification records are logged, beside the model, in its training run.
VERIFICATION_ARTIFACT = "inference/verification_records.json"
COMPILED, SKLEARN = "compiled", "sklearn"


@dataclass(frozen=True)
class InferencePath:
    """How one version is scored: its compiled form when verified, else the sklearn pipeline, and why."""

    compiled: CompiledModel | None
    reason: str
    verification: Verification | None = None

    @property
    def name(self) -> str:
        return COMPILED if self.compiled is not None else SKLEARN

    @property
    def runtime(self) -> str:
        return self.compiled.runtime if self.compiled is not None else "sklearn Pipeline.predict_proba"

    def tags(self) -> dict[str, str]:
        """What is recorded on the registered version (MLflow tags)."""
        return {"inference_path": self.name, "inference_runtime": self.runtime, "inference_check": self.reason[:500]}


def choose_inference_path(config: DatasetConfig, pipeline: Pipeline, reference: Callable[[Sequence[dict]], np.ndarray],
                          records: Sequence[dict], threshold: float) -> InferencePath:
    """Compile ``pipeline`` and keep the compiled form only if it reproduces ``reference`` on ``records``."""
    try:
        compiled = compile_pipeline(config, pipeline)
    except Unsupported as exc:
        return InferencePath(None, f"not compiled: {exc}")
    verification = verify(compiled, reference, records, threshold)
    if not verification.passed:
        return InferencePath(None, f"compiled form refused: {verification.describe()}", verification)
    return InferencePath(compiled, f"{compiled.runtime} {verification.describe()}", verification)
