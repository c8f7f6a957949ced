"""The sklearn pipelines a dataset config can ask for.

One ``Pipeline`` (preprocessing + estimator) per model, so the same object is logged,
registered, served and explained. Each family also names the types skops must trust
to load it back: exactly those, no more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from mlops_assets.config import DatasetConfig


@dataclass(frozen=True)
class ModelFamily:
    build: Callable[[DatasetConfig], Pipeline]
    estimator: type
    skops_trusted_types: tuple[str, ...]
    #: The estimator parameter that grows with ``warm_start`` (boosting iterations, trees): a trial
    #: trains in stages along it and reports a validation score after each, so a pruner can stop it.
    #: None: the family trains in one go and reports once.
    staged_param: str | None = None


def _ordinal_categories() -> OrdinalEncoder:
    return OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan)


def _hist_gradient_boosting(config: DatasetConfig) -> Pipeline:
    numeric, categorical = config.numeric_features, config.categorical_features
    prepare = ColumnTransformer(
        [("numeric", "passthrough", numeric), ("categorical", _ordinal_categories(), categorical)],
        verbose_feature_names_out=False,
    )
    params: dict[str, Any] = {"random_state": config.model.seed, **config.model.params}
    params.setdefault("categorical_features", list(range(len(numeric), len(numeric) + len(categorical))) or None)
    return Pipeline([("prepare", prepare), ("model", HistGradientBoostingClassifier(**params))])


def _logistic_regression(config: DatasetConfig) -> Pipeline:
    prepare = ColumnTransformer(
        [
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
             config.numeric_features),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), config.categorical_features),
        ],
        verbose_feature_names_out=False,
    )
    params: dict[str, Any] = {"max_iter": 1000, "random_state": config.model.seed, **config.model.params}
    return Pipeline([("prepare", prepare), ("model", LogisticRegression(**params))])


def _random_forest(config: DatasetConfig) -> Pipeline:
    prepare = ColumnTransformer(
        [
            ("numeric", SimpleImputer(strategy="median"), config.numeric_features),
            ("categorical", Pipeline([("encode", _ordinal_categories()),
                                      ("impute", SimpleImputer(strategy="constant", fill_value=-1))]),
             config.categorical_features),
        ],
        verbose_feature_names_out=False,
    )
    params: dict[str, Any] = {"n_estimators": 200, "n_jobs": 1, "random_state": config.model.seed, **config.model.params}
    return Pipeline([("prepare", prepare), ("model", RandomForestClassifier(**params))])


FAMILIES: dict[str, ModelFamily] = {
    "hist_gradient_boosting": ModelFamily(
        _hist_gradient_boosting,
        HistGradientBoostingClassifier,
        (
            "functools.partial",
            "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
            "sklearn.utils.validation.check_array",
        ),
        staged_param="max_iter",
    ),
    "logistic_regression": ModelFamily(_logistic_regression, LogisticRegression, ("numpy.dtype",)),
    "random_forest": ModelFamily(_random_forest, RandomForestClassifier, ("numpy.dtype", "sklearn.tree._tree.Tree"), staged_param="n_estimators"),
}


def build_pipeline(config: DatasetConfig, params: dict[str, Any] | None = None) -> Pipeline:
    """An unfitted pipeline for the config's model family, its parameters overridden by ``params``."""
    if params:
        model = config.model.model_copy(update={"params": {**config.model.params, **params}})
        config = config.model_copy(update={"model": model})
    return FAMILIES[config.model.family].build(config)


def estimator_parameters(family: str) -> set[str]:
    """Parameter names the family's estimator accepts (what a search space may tune)."""
    return set(FAMILIES[family].estimator().get_params(deep=False))
