"""The whole churn graph, materialized once by the main job into a temporary MLOPS_HOME."""

from __future__ import annotations

import dagster as dg
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from mlops_assets.config import load_dataset_configs
from mlops_assets.features.training_set import binary_target, split_frame
from mlops_assets.pipeline.runs import load_definitions
from mlops_assets.training.registry import CHAMPION, load_champion

pytestmark = pytest.mark.slow

ASSETS = ["raw_rows", "usage_features", "billing_features", "online_features", "feature_catalog", "training_set",
          "study", "model", "evaluation", "champion", "explanations", "model_card", "drift_report", "ab_test_report"]
SYSTEM_GROUPS = {"features", "training", "pipeline", "governance", "monitoring", "serving"}


def latest_metadata(key: list[str]) -> dict:
    event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey(key))
    assert event is not None, f"{key} has no materialization in the instance"
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_main_job_materializes_every_asset_and_passes_every_check(in_home):
    _, summary = in_home
    outcomes = {o.asset: o for o in summary.outcomes}
    assert sorted(outcomes) == sorted(f"churn/{a}" for a in ASSETS)
    assert all(o.materialized for o in outcomes.values()), summary.table()
    assert outcomes["churn/raw_rows"].checks == {"raw_schema": True, "row_count": True, "target_classes": True}
    for view in ("usage", "billing"):
        assert outcomes[f"churn/{view}_features"].checks == {f"{view}_schema": True, f"{view}_distribution": True}


def test_run_and_materializations_are_recorded_in_the_sqlite_instance(in_home):
    settings, summary = in_home
    instance = dg.DagsterInstance.get()
    assert (settings.home / "dagster").is_dir()
    run = instance.get_run_by_id(summary.run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    raw = latest_metadata(["churn", "raw_rows"])
    assert raw["dagster/row_count"] == 6000
    assert {c.name for c in raw["dagster/column_schema"].columns} >= {"customer_id", "event_time", "churned"}
    split = latest_metadata(["churn", "training_set"])
    assert split["train_rows"] + split["validation_rows"] + split["test_rows"] == 6000
    assert split["train_until"] <= split["test_from"]


def test_every_asset_is_described_owned_kinded_and_grouped_by_system(in_home):
    settings, _ = in_home
    graph = load_definitions(settings).resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.description and len(node.description) > 40, key
        assert node.owners, key
        assert node.kinds, key
        assert node.group_name in SYSTEM_GROUPS, key


def test_model_is_logged_registered_and_holds_champion_alias(in_home):
    settings, summary = in_home
    client = MlflowClient(settings.mlflow_tracking_uri)
    version = client.get_model_version_by_alias("churn_model", CHAMPION)
    assert str(version.version) == "1"
    for tag in ("data_snapshot", "feature_version", "git_commit", "environment_hash", "decision_threshold"):
        assert version.tags.get(tag), f"version tag {tag} missing"
    run = client.get_run(version.run_id)
    assert run.data.params["model_family"] == "hist_gradient_boosting"
    assert run.data.metrics["validation_roc_auc"] > 0.7
    assert run.data.metrics["test_roc_auc"] > 0.7
    assert {a.path for a in client.list_artifacts(version.run_id, "evaluation")} == {
        "evaluation/roc.png", "evaluation/calibration.png"}
    info = mlflow.models.get_model_info(f"models:/churn_model/{version.version}")
    assert info.signature is not None and info.saved_input_example_info is not None
    assert tuple(info.signature.outputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 2)  # predict_proba rows
    # The Dagster run's own MLflow run (dagster-mlflow) is the parent, closed by the job's hook.
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["dagster_run_id"] == summary.run_id
    # dagster-mlflow finds its run by this tag in every step process: only the parent may carry it.
    tagged = client.search_runs([parent.info.experiment_id], f"tags.dagster_run_id = '{summary.run_id}'")
    assert [r.info.run_id for r in tagged] == [parent.info.run_id]


def test_champion_loaded_from_registry_reproduces_the_evaluation(in_home):
    settings, _ = in_home
    config = load_dataset_configs(settings.configs)[0]
    definitions = load_definitions(settings)
    test = split_frame(definitions.load_asset_value(["churn", "training_set"], instance=dg.DagsterInstance.get()), "test")
    champion = load_champion(settings, config)
    scores = champion.score(test.drop(columns=config.derived_features))
    evaluated = MlflowClient(settings.mlflow_tracking_uri).get_run(champion.run_id).data.metrics["test_roc_auc"]
    assert roc_auc_score(binary_target(test, config), scores) == pytest.approx(evaluated, abs=1e-12)
    assert np.all((scores >= 0) & (scores <= 1))
    assert 0 < champion.decision_threshold < 1


def test_evaluation_metadata_carries_metrics_plots_and_mlflow_link(in_home):
    metadata = latest_metadata(["churn", "evaluation"])
    for metric in ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "threshold"):
        assert isinstance(metadata[metric], float)
    assert metadata["roc_curve"].startswith("![ROC curve](data:image/png;base64,")
    assert "calibration" in metadata["calibration"]
    assert "#/experiments/" in metadata["mlflow_run"]


def test_model_card_is_written_under_mlops_home(in_home):
    settings, _ = in_home
    card = (settings.reports / "churn" / "v1" / "model_card.md").read_text()
    assert "# Model card: churn_model v1" in card and "roc_auc" in card and "![ROC curve](roc.png)" in card
    assert (settings.reports / "churn" / "v1" / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_champion_asset_records_the_promotion(in_home):
    metadata = latest_metadata(["churn", "champion"])
    assert metadata["promoted"] is True
    assert metadata["champion_version"] == "1"
