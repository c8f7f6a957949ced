"""What a person sees after the main job: the MLflow experiment, and the experiment commands."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from mlops_assets.cli import main
from mlops_assets.training.registry import CHAMPION

pytestmark = pytest.mark.slow


def champion_run(settings):
    client = MlflowClient(settings.mlflow_tracking_uri)
    version = client.get_model_version_by_alias("churn_model", CHAMPION)
    return client, version, client.get_run(version.run_id)


def test_mlflow_opens_on_runs_named_described_with_datasets_metrics_and_the_study(in_home):
    settings, summary = in_home
    client, version, run = champion_run(settings)
    experiment = client.get_experiment(run.info.experiment_id)
    # MLflow 3's UI reads this tag: model training opens on the runs, not the GenAI overview.
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.note.content"].startswith("Runs of the mlops-assets platform")
    assert run.data.tags["mlflow.runName"].startswith("churn v1 20")
    assert "Monthly snapshot of telecom customers" in run.data.tags["mlflow.note.content"]
    assert sorted(d.dataset.name for d in run.inputs.dataset_inputs) == ["churn-test", "churn-train", "churn-validation"]
    assert {d.tags[0].value for d in run.inputs.dataset_inputs} == {"training", "validation", "test"}
    assert "model__learning_rate" in run.data.params and "model__max_leaf_nodes" in run.data.params
    assert {"environment/environment.json", "environment/requirements.txt"} <= {
        a.path for a in client.list_artifacts(run.info.run_id, "environment")}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "config")] == ["config/churn.yaml"]
    for tag in ("test_roc_auc", "test_brier", "data_snapshot", "feature_version", "git_commit", "environment_hash",
                "python_version", "predictions_hash", "tuned_params", "dagster_run_id"):
        assert version.tags.get(tag), tag
    assert version.description.startswith("hist_gradient_boosting on `churn`: test ROC AUC")
    assert client.get_registered_model("churn_model").description.startswith("Model of the `churn` dataset")

    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["mlflow.runName"].startswith("mlops_main 20")
    assert parent.data.metrics["churn_test_roc_auc"] == pytest.approx(float(version.tags["test_roc_auc"]), rel=1e-5)
    (study,) = client.search_runs([experiment.experiment_id], "tags.run_kind = 'study'")
    assert study.data.tags["mlflow.parentRunId"] == parent.info.run_id
    trials = client.search_runs([experiment.experiment_id], f"tags.mlflow.parentRunId = '{study.info.run_id}'")
    assert len(trials) == 3 and all(t.data.tags["mlflow.runName"].startswith("churn-trial-") for t in trials)
    assert run.data.tags["optuna.study"] == study.data.tags["optuna.study"]
    # MLflow 3.17's global GenAI switch wins over the tag: the links the platform shows select model training.
    from mlops_assets.training.assets import mlflow_run_url
    assert mlflow_run_url(settings, run.info.run_id).endswith(f"/runs/{run.info.run_id}?workflowType=machine_learning")


def test_mlops_reproduce_proves_the_champion_is_rebuilt_exactly(in_home):
    settings, _ = in_home
    _, _, run = champion_run(settings)
    result = CliRunner().invoke(main, ["reproduce", run.info.run_id])
    assert result.exit_code == 0, result.output
    assert "test predictions     match" in result.output
    assert result.output.strip().endswith("exact reproduction: same environment, data, metrics and test-set predictions")


def test_mlops_compare_says_a_model_is_not_different_from_itself(in_home):
    settings, _ = in_home
    _, _, run = champion_run(settings)
    result = CliRunner().invoke(main, ["compare", run.info.run_id, run.info.run_id])
    assert result.exit_code == 0, result.output
    assert "| roc_auc |" in result.output and "DeLong" in result.output and "McNemar (exact)" in result.output
    assert "no significant difference between A" in result.output


def test_mlops_tune_continues_the_datasets_study_with_a_progress_bar(in_home):
    result = CliRunner().invoke(main, ["tune", "churn", "--trials", "4"])
    assert result.exit_code == 0, result.output
    assert "tuning churn: up to 4 trials, 1 worker(s)" in result.output and "trials" in result.output
    assert "4 complete" in result.output and "(1 new trials" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["tune", "wine"], "Error: no dataset 'wine' in"),
        (["tune", "churn", "--workers", "0"], "Invalid value for '--workers'"),
        (["reproduce", "0123456789abcdef"], "Error: run '0123456789abcdef' does not exist in sqlite:///"),
        (["compare", "0123456789abcdef", "fedcba9876543210"], "Error: run '0123456789abcdef' does not exist"),
        (["runs", "search", "metrics.roc_auc >> 1"], "Error: filter 'metrics.roc_auc >> 1': Invalid comparator"),
    ],
)
def test_experiment_commands_refuse_bad_input_in_one_line(in_home, arguments, message):
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output


def test_a_study_run_is_not_a_model_run(in_home):
    settings, _ = in_home
    client, _, run = champion_run(settings)
    (study,) = client.search_runs([run.info.experiment_id], "tags.run_kind = 'study'", max_results=1)
    result = CliRunner().invoke(main, ["reproduce", study.info.run_id])
    assert result.exit_code == 1 and "is a study run, not a model run" in result.output


def test_the_model_card_and_drift_report_are_downloadable_from_the_versions_run(in_home, tmp_path):
    import mlflow.artifacts

    settings, _ = in_home
    _, version, run = champion_run(settings)
    reports = settings.dataset_reports("churn")
    card = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model_card",
                                               dst_path=str(tmp_path / "card"), tracking_uri=settings.mlflow_tracking_uri)
    for form in ("md", "html", "json"):
        downloaded = tmp_path / "card" / "model_card" / f"model_card.{form}"
        assert downloaded.read_bytes() == (reports / f"v{version.version}" / f"model_card.{form}").read_bytes()
    drift = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="drift",
                                                dst_path=str(tmp_path / "drift"), tracking_uri=settings.mlflow_tracking_uri)
    html = sorted(p.name for p in (tmp_path / "drift" / "drift").glob("drift-*.html"))
    assert html and all((reports / "drift" / name).read_bytes() == (tmp_path / "drift" / "drift" / name).read_bytes()
                        for name in html)
    assert card and drift
