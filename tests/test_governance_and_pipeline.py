"""The registry's error handling (the model card's tests are in test_governance_cards.py)."""

from __future__ import annotations

from mlops_assets.config import load_dataset_config
from mlops_assets.settings import PROJECT_ROOT

CHURN = load_dataset_config(PROJECT_ROOT / "configs" / "churn.yaml")


def test_an_unreachable_registry_is_an_error_not_a_missing_champion(monkeypatch):
    from dataclasses import replace

    import pytest
    from mlflow.exceptions import MlflowException

    from mlops_assets.settings import Settings
    from mlops_assets.training.registry import CHAMPION, alias_version

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    closed_port = replace(Settings.from_env(), mlflow_tracking_uri="http://127.0.0.1:9")
    with pytest.raises(MlflowException, match="127.0.0.1"):
        alias_version(closed_port, CHURN, CHAMPION)
