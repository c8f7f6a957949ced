"""From validated raw rows to the feature table the model and the monitors read.

Derived features are arithmetic expressions in the dataset config, evaluated by
:func:`derive_features`; training and serving both call it, so a feature is computed
the same way wherever it is used.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.features.definitions import FeatureError
from mlops_assets.features.expressions import evaluate, expression_columns


def derive_features(frame: pd.DataFrame, config: DatasetConfig) -> pd.DataFrame:
    """``frame`` plus every derived feature; infinities (division by zero) become missing."""
    out = frame.copy()
    for name, expression in config.derived_features.items():
        try:
            inputs = {c: out[c].to_numpy(dtype=float, na_value=np.nan) for c in expression_columns(expression)}
            values = evaluate(expression, inputs)
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureError(
                f"dataset {config.name!r}: derived feature {name!r} = {expression!r} failed: {exc}"
            ) from exc
        values[np.isinf(values)] = np.nan
        out[name] = values
    return out


def feature_table_columns(config: DatasetConfig) -> list[str]:
    """Entity id and event time first, then sensitive attributes, model features and the target."""
    columns = [config.entity_column, config.time_column]
    for name in [*config.sensitive_attributes, *config.model_features, config.target]:
        if name not in columns:
            columns.append(name)
    return columns


def build_feature_table(raw: pd.DataFrame, config: DatasetConfig) -> pd.DataFrame:
    """One row per entity snapshot, in source order, with every model feature computed.

    Ordering by time is the split's job (it sorts once, where the order matters).
    """
    return derive_features(raw, config)[feature_table_columns(config)].reset_index(drop=True)
