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


# Training sets from the feature store ------------------------------------------------------------


def split_description(config: DatasetConfig) -> str:
    """How the rows were split, in words that are true for this dataset (the model card quotes it)."""
    shares = f"{1 - config.split.validation - config.split.test:.0%} / {config.split.validation:.0%} / {config.split.test:.0%}"
    if config.event_time is not None:
        return (f"Split by event time ({config.event_time!r}), {shares} train / validation / test: every validation "
                "row is no older than any train row and the test rows are the newest, so the model is judged on "
                "rows later than anything it learned from.")
    return (f"Split by row order in the source ({shares} train / validation / test): the dataset has no event-time "
            f"column, so every row carries the same load time ({config.time_column!r}) and the order of the file "
            "decides. The test rows are the last rows of the file, not necessarily the newest.")


def label_events(raw: pd.DataFrame, config: DatasetConfig) -> pd.DataFrame:
    """(entity, label time, target) per raw row, plus sensitive attributes that are not model features."""
    from mlops_assets.features.definitions import feature_views

    held = {f for v in feature_views(config) for f in v.feature_names}
    extra = [c for c in config.sensitive_attributes if c not in held]
    return raw[[config.entity_column, config.time_column, config.target, *extra]].reset_index(drop=True)


def _ordered(joined: pd.DataFrame, config: DatasetConfig) -> pd.DataFrame:
    from mlops_assets.features.engineering import feature_table_columns

    return joined[feature_table_columns(config)]


def build_training_set(store, labels: pd.DataFrame, as_of=None) -> tuple[pd.DataFrame, dict]:
    """Label events joined point-in-time with every model feature, split by time, and its manifest.

    The manifest records the labels' table version, each view's definition and table
    version and the content hash: :func:`rebuild_training_set` turns it back into the
    same bytes.
    """
    from mlops_assets.features.store import content_hash

    config = store.config
    labels_version, labels_hash = store.write_labels(labels)
    stored_labels = store.read_labels(labels_version)
    references = _feature_references(store)
    versions = store.feature_versions(references, as_of)
    pinned = {"views": {v: {"view_version": d["view_version"], "table_version": d["table_version"]}
                        for v, d in versions.items()}}
    joined = store.get_historical_features(stored_labels, references, as_of=pinned)
    training_set = time_split(_ordered(joined, config), config)
    manifest = {
        "dataset": config.name,
        "labels": {"table_version": labels_version, "content_hash": labels_hash},
        "views": pinned["views"],
        "features": references,
        "content_hash": content_hash(training_set),
    }
    training_set.attrs["feature_store"] = manifest
    return training_set, manifest


def rebuild_training_set(store, manifest: dict) -> pd.DataFrame:
    """The training set a manifest describes, from the recorded labels and table versions (byte for byte)."""
    labels = store.read_labels(manifest["labels"]["table_version"])
    joined = store.get_historical_features(labels, manifest["features"], as_of={"views": manifest["views"]})
    rebuilt = time_split(_ordered(joined, store.config), store.config)
    rebuilt.attrs["feature_store"] = manifest
    return rebuilt


def _feature_references(store) -> list[str]:
    """``view:feature`` for every model feature and sensitive attribute a view holds, in the config's order."""
    owner = {f.name: v.name for v in store.views for f in v.features}
    config = store.config
    wanted = [*config.model_features, *[s for s in config.sensitive_attributes if s in owner]]
    return [f"{owner[name]}:{name}" for name in dict.fromkeys(wanted)]


def training_set_tags(training_set: pd.DataFrame) -> dict[str, str]:
    """Lineage tags for a model version trained on ``training_set``: the manifest that rebuilds it."""
    import json

    manifest = training_set.attrs.get("feature_store")
    if not manifest:
        return {}
    return {
        "feature_store.manifest": json.dumps(manifest, separators=(",", ":")),
        "feature_store.content_hash": manifest["content_hash"],
        "feature_store.views": ", ".join(f"{v}@{d['view_version']}#{d['table_version']}"
                                         for v, d in manifest["views"].items()),
    }
