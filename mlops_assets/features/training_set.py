"""Time-based train / validation / test split.

The newest rows are the test set and the ones before them validation: a model is
always judged on rows later than everything it learned from. Rows are never shuffled
across time; a stable sort by (event time, entity id) makes the split reproducible.
"""

from __future__ import annotations

import pandas as pd

from mlops_assets.config import DatasetConfig

SPLITS = ("train", "validation", "test")

#: The fewest rows the split accepts; raw_rows checks it before anything is stored (data/raw_checks.py).
MIN_ROWS = 10


def time_split(features: pd.DataFrame, config: DatasetConfig) -> pd.DataFrame:
    """The feature table with a ``split`` column; every train row is no later than any validation row."""
    if len(features) < MIN_ROWS:
        raise ValueError(f"dataset {config.name!r}: {len(features)} rows are too few to split into train/validation/test")
    ordered = features.sort_values([config.time_column, config.entity_column], kind="stable").reset_index(drop=True)
    n = len(ordered)
    n_test = max(1, round(n * config.split.test))
    n_validation = max(1, round(n * config.split.validation))
    n_train = n - n_test - n_validation
    labels = ["train"] * n_train + ["validation"] * n_validation + ["test"] * n_test
    ordered.insert(0, "split", pd.Categorical(labels, categories=SPLITS, ordered=True))
    for name in ("train", "test"):
        if binary_target(ordered[ordered["split"] == name], config).nunique() < 2:
            raise ValueError(
                f"dataset {config.name!r}: the {name} split holds a single class of {config.target!r}; "
                "a binary model needs both"
            )
    return ordered


def binary_target(frame: pd.DataFrame, config: DatasetConfig) -> pd.Series:
    """The target as 0/1: 1 where it is ``positive_class``; without one the target is 0/1 or false/true.

    The one place the target becomes a label: training, evaluation and the raw_rows check all call it.
    """
    target = frame[config.target]
    positive = config.positive_class
    if positive is None:
        return target.astype(int)
    if pd.api.types.is_numeric_dtype(target.dtype) or pd.api.types.is_bool_dtype(target.dtype):
        return (target == positive).astype(int)
    return (target.astype(str) == str(positive)).astype(int)  # text columns: `positive_class: 2` means "2"


def split_frame(training_set: pd.DataFrame, name: str) -> pd.DataFrame:
    return training_set[training_set["split"] == name].drop(columns="split")


def split_summary(training_set: pd.DataFrame, config: DatasetConfig) -> pd.DataFrame:
    """Rows, time range and positive rate per split: what a reviewer checks for leakage."""
    grouped = training_set.groupby("split", observed=True)
    return pd.DataFrame(
        {
            "rows": grouped.size(),
            "from": grouped[config.time_column].min().astype(str),
            "to": grouped[config.time_column].max().astype(str),
            "positive_rate": binary_target(training_set, config).groupby(training_set["split"], observed=True).mean().round(4),
        }
    ).reindex(SPLITS)
