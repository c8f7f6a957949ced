"""pandera model of the feature table: raw columns keep their specs, derived ones must be finite."""

from __future__ import annotations

import numpy as np
import pandera.pandas as pa
from pandera.typing import Series

from mlops_assets.config import DatasetConfig
from mlops_assets.data.schemas import _camel, build_model, column_field, identity_fields
from mlops_assets.features.engineering import feature_table_columns


def feature_schema(config: DatasetConfig) -> type[pa.DataFrameModel]:
    """What every row of the feature table must satisfy."""
    fields = identity_fields(config)
    for name in feature_table_columns(config):
        if name in config.columns:
            fields[name] = column_field(config.columns[name])
        elif name in config.derived_features:
            # Missing is allowed (a division by zero), infinite is not.
            fields[name] = (Series[float], pa.Field(nullable=True, gt=-np.inf, lt=np.inf))
    return build_model(f"{_camel(config.name)}FeatureSchema", fields)
