"""Small churn configs and training sets for the experiment-management tests (no Dagster run needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mlops_assets.config import DatasetConfig, load_dataset_config
from mlops_assets.data.churn_generator import generate_churn
from mlops_assets.features.engineering import build_feature_table
from mlops_assets.features.training_set import time_split
from mlops_assets.settings import PROJECT_ROOT


def write_churn_config(folder: Path, **changes: Any) -> DatasetConfig:
    """The shipped churn config, small and fast, with top-level sections updated by ``changes``."""
    raw = yaml.safe_load((PROJECT_ROOT / "configs" / "churn.yaml").read_text())
    raw["source"]["rows"] = 2000
    raw["model"]["params"]["max_iter"] = 40
    raw["tuning"].update({"n_trials": 4, "stages": 2})
    raw["comparison"]["bootstrap_samples"] = 300
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict) and key != "search_space":
            raw[key].update(value)
        else:
            raw[key] = value
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "churn.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_dataset_config(path)


def churn_training_set(config: DatasetConfig, rows: int = 2000, seed: int = 7) -> pd.DataFrame:
    return time_split(build_feature_table(generate_churn(rows, seed=seed), config), config)
