"""Any CSV or Parquet file plus a YAML config runs the same graph; bad rows stop at the raw check."""

from __future__ import annotations

import dagster as dg
import pytest
from mlflow.tracking import MlflowClient

from mlops_assets.pipeline.runs import load_definitions, run_main_job
from mlops_assets.training.registry import CHAMPION
from mlops_assets.settings import use_home
from tests.datasets import make_loans, write_loans

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_a_differently_shaped_file_dataset_runs_the_whole_graph(tmp_path, file_format):
    configs = write_loans(tmp_path / "configs", make_loans(3000), file_format)
    with use_home(tmp_path / "home", configs) as settings:
        summary = run_main_job(settings)
        assert summary.success, summary.table()
        assert all(o.materialized for o in summary.outcomes), summary.table()
        assert {o.asset for o in summary.outcomes} >= {"loans/raw_rows", "loans/model", "loans/drift_report"}
        instance = dg.DagsterInstance.get()
        raw = instance.get_latest_materialization_event(dg.AssetKey(["loans", "raw_rows"])).asset_materialization
        columns = {c.name for c in raw.metadata["dagster/column_schema"].value.columns}
        assert {"row_id", "load_time"} <= columns  # stand-ins for the absent entity id and event time
        evaluation = instance.get_latest_materialization_event(dg.AssetKey(["loans", "evaluation"])).asset_materialization
        assert evaluation.metadata["roc_auc"].value > 0.6
        version = MlflowClient(settings.mlflow_tracking_uri).get_model_version_by_alias("loans_model", CHAMPION)
        assert str(version.version) == "1"
        drift = instance.get_latest_materialization_event(dg.AssetKey(["loans", "drift_report"])).asset_materialization
        assert drift.metadata["current_window"].value.startswith("test split")


def test_bad_raw_rows_fail_the_blocking_check_naming_rows_and_columns_and_nothing_downstream_runs(tmp_path):
    frame = make_loans(400)
    frame.loc[3, "income"] = -50.0
    frame.loc[7, "employment_type"] = "astronaut"
    frame.loc[11, "debt_ratio"] = 1.7
    configs = write_loans(tmp_path / "configs", frame)
    with use_home(tmp_path / "home", configs) as settings:
        summary = run_main_job(settings)
        assert not summary.success
        assert not any(o.materialized for o in summary.outcomes), summary.table()
        evaluations = {e.check_name: e for e in summary.check_evaluations}
        assert {name: e.passed for name, e in evaluations.items()} == {
            "raw_schema": False, "row_count": True, "target_classes": True}
        evaluation = evaluations["raw_schema"]
        assert evaluation.severity == dg.AssetCheckSeverity.ERROR
        metadata = {k: v.value for k, v in evaluation.metadata.items()}
        assert metadata["failing_columns"] == ["debt_ratio", "employment_type", "income"]
        assert metadata["offending_rows"] == ["3", "7", "11"]
        assert metadata["offending_lines"] == ["line 5", "line 9", "line 13"]
        assert "astronaut" in metadata["failure_cases"] and "-50.0" in metadata["failure_cases"]
        # Nothing was written: no later run can read the bad rows.
        assert dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey(["loans", "raw_rows"])) is None
        assert not (settings.asset_storage / "loans" / "raw_rows").exists()


@pytest.mark.parametrize("bad_rows", [False, True], ids=["success", "failed-step"])
def test_materializing_from_the_ui_without_the_main_job_still_closes_the_mlflow_run(tmp_path, bad_rows):
    """ "Materialize all" in the UI runs Dagster's implicit asset job, which carries no MLflow hook."""
    frame = make_loans(1500)
    if bad_rows:
        frame.loc[0, "income"] = -1.0
    configs = write_loans(tmp_path / "configs", frame)
    with use_home(tmp_path / "home", configs) as settings:
        implicit = load_definitions(settings).resolve_implicit_global_asset_job_def()
        assert not implicit.hook_defs
        result = implicit.execute_in_process(instance=dg.DagsterInstance.get(), raise_on_error=False)
        assert result.success is not bad_rows
        client = MlflowClient(settings.mlflow_tracking_uri)
        runs = client.search_runs([client.get_experiment_by_name(settings.mlflow_experiment).experiment_id])
        # The parent is named after the job ("asset materialization" for the UI's implicit job) and the date;
        # the model run after its version. The loans config has no search space: no study run.
        named = {r.info.run_name.split(" 20")[0]: r.info.status for r in runs}
        expected = ({"asset materialization": "FAILED"} if bad_rows
                    else {"asset materialization": "FINISHED", "loans v1": "FINISHED"})
        assert named == expected
