"""The model card's content and the registry's error handling."""

from __future__ import annotations

from mlops_assets.config import load_dataset_config
from mlops_assets.data.churn_generator import generate_churn
from mlops_assets.features.engineering import build_feature_table
from mlops_assets.features.training_set import split_summary, time_split
from mlops_assets.governance.model_card import render_model_card
from mlops_assets.settings import PROJECT_ROOT

CHURN = load_dataset_config(PROJECT_ROOT / "configs" / "churn.yaml")


def test_model_card_states_details_lineage_data_metrics_gates_and_plots():
    summary = split_summary(time_split(build_feature_table(generate_churn(500), CHURN), CHURN), CHURN)
    metrics = {"roc_auc": 0.84, "pr_auc": 0.57, "log_loss": 0.37, "brier": 0.12, "accuracy": 0.78, "threshold": 0.28}
    tags = {"data_snapshot": "abc123", "feature_version": CHURN.feature_version, "git_commit": "deadbee",
            "environment_hash": "e1"}
    card = render_model_card(CHURN, "7", "run42", metrics, summary, tags, images={"roc": "roc.png"})
    assert card.startswith("# Model card: churn_model v7")
    for expected in ("run42", "abc123", "deadbee", CHURN.feature_version, "| roc_auc | 0.84 |",
                     "| min_roc_auc | 0.7 | 0.84 |", "| max_brier | 0.2 | 0.12 |", "![roc](roc.png)",
                     "`gender`", "| test | 75 |"):
        assert expected in card, expected


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
