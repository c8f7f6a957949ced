"""Bad input through the graph and the `mlops` command: it stops at raw_rows, changes nothing, says why in a line.

One platform home for the module: the good loans rows and their features are materialized
once; every test then breaks the file or config its own way. No run here gets past
raw_rows, so the stored values stay the good ones whatever the order.
"""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import mlflow
import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from mlops_assets.cli import main
from mlops_assets.config import load_dataset_configs
from mlops_assets.features.store import FeatureStore
from mlops_assets.pipeline.runs import load_definitions, run_main_job
from mlops_assets.settings import use_home
from tests.datasets import make_loans, write_loans

pytestmark = pytest.mark.slow

STORED = [dg.AssetKey(["loans", "raw_rows"]), dg.AssetKey(["loans", "all_features"])]


@pytest.fixture(scope="module")
def stored_loans(tmp_path_factory: pytest.TempPathFactory):
    """(home, configs folder, run id that stored raw_rows and features) after one good run of those two."""
    folder = tmp_path_factory.mktemp("contract")
    configs, home = write_loans(folder / "configs", make_loans(300)), folder / "home"
    with use_home(home, configs) as settings, _use_tracking_uri(mlflow.get_tracking_uri()):
        job = load_definitions(settings).resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(instance=dg.DagsterInstance.get(), asset_selection=STORED)  # nothing trained
        assert result.success
    return home, configs, result.run_id


@pytest.fixture
def loans_home(stored_loans):
    home, configs, good_run = stored_loans
    # A run points MLflow's process-wide tracking URI at its home; later modules (the shared churn home)
    # rely on theirs, so it is put back as it was.
    with use_home(home, configs) as settings, _use_tracking_uri(mlflow.get_tracking_uri()):
        yield settings, configs, good_run


def materialize(*args: str):
    return CliRunner().invoke(main, ["materialize", *args])


def test_a_header_only_file_fails_raw_rows_and_leaves_the_stored_rows_and_features_as_they_were(loans_home):
    settings, configs, good_run = loans_home
    write_loans(configs, make_loans(300).head(0))  # the header alone
    summary = run_main_job(settings)
    assert not summary.success
    failed = {e.check_name: e.description for e in summary.check_evaluations if not e.passed}
    assert failed == {
        "row_count": "no rows: the source holds no data (a header-only file?); the train/validation/test split "
                     "needs at least 10",
        "target_classes": "target 'defaulted' holds no values to learn from",
    }
    assert summary.step_failures["loans__raw_rows"] == ("loans: raw rows rejected by row_count, target_classes; "
                                                        "nothing written")
    assert not any(o.materialized for o in summary.outcomes), summary.table()
    # Nothing stored changed: the latest materializations, and the values behind them, are the good run's.
    instance = dg.DagsterInstance.get()
    assert {instance.get_latest_materialization_event(k).run_id for k in STORED} == {good_run}
    definitions = load_definitions(settings)
    assert len(definitions.load_asset_value(STORED[0], instance=instance)) == 300
    store = FeatureStore(load_dataset_configs(configs)[0])
    (view,) = store.views  # the offline store still holds the good run's one table version, all rows
    assert store.offline.latest_version(view.name, view.version) == 0
    assert store.registry.materialization(view.name, view.version, 0)["stats"]["entities"] == 300


def test_a_three_class_target_stops_at_raw_rows_before_anything_is_trained_or_registered(loans_home):
    settings, configs, _ = loans_home
    frame = make_loans(300)
    frame.loc[::3, "defaulted"] = "maybe"
    write_loans(configs, frame)
    config = yaml.safe_load((configs / "loans.yaml").read_text())
    config["columns"]["defaulted"].pop("values")  # without `values`, the schema lets "maybe" through
    (configs / "loans.yaml").write_text(yaml.safe_dump(config))
    summary = run_main_job(settings)
    assert not summary.success
    assert [(e.check_name, e.description) for e in summary.check_evaluations if not e.passed] == [
        ("target_classes", "target 'defaulted' holds 3 classes ('maybe', 'no', 'yes'); a binary model needs "
                           "exactly two: map the target to two values in the file")]
    assert not any(o.materialized for o in summary.outcomes), summary.table()
    client = MlflowClient(settings.mlflow_tracking_uri)
    assert client.search_registered_models() == []
    experiment = client.get_experiment_by_name(settings.mlflow_experiment).experiment_id
    runs = client.search_runs([experiment])  # the Dagster runs' own runs only: no study, no training run
    assert runs and all(r.info.run_name.startswith("mlops_main ") for r in runs)
    assert not any(r.data.tags.get("run_kind") for r in runs)


def test_materialize_prints_the_platform_error_as_one_line_and_the_traceback_only_with_verbose(loans_home):
    _, configs, _ = loans_home
    write_loans(configs, make_loans(300).drop(columns="purpose"))
    result = materialize()
    assert result.exit_code == 1
    expected = (r"Error: dataset 'loans': source lacks declared columns \['purpose'\]; it has \['income', "
                r"'debt_ratio', 'years_employed', 'employment_type', 'age_group', 'defaulted'\]; run [0-9a-f-]+ "
                r"failed after \d+\.\d s: `mlops materialize --verbose` prints Dagster's log, `mlops ui` shows it")
    assert re.fullmatch(expected, result.stderr.strip()), result.stderr
    assert "step loans__raw_rows failed: dataset 'loans': source lacks declared columns ['purpose']" in result.stdout
    for noise in ("Traceback", "Stack Trace", "Error occurred while executing op", "DagsterExecutionStepExecutionError"):
        assert noise not in result.output

    verbose = materialize("--verbose")
    assert verbose.exit_code == 1
    assert re.search(expected, verbose.stderr)
    assert "Stack Trace" in verbose.stderr and "mlops_assets.data.sources.SourceError" in verbose.stderr


def test_materialize_on_an_empty_file_says_it_is_empty(loans_home):
    _, configs, _ = loans_home
    write_loans(configs, make_loans(10))
    (configs / "loans.csv").write_text("")
    result = materialize()
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: dataset 'loans': source file {configs / 'loans.csv'} is empty "
                                    "(not even a header); run ")
    assert "Stack Trace" not in result.output


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda c: c.update(source={"path": "elsewhere/loans.csv"}),
         "source.path: {configs}/elsewhere/loans.csv does not exist (a relative path is relative to the config's "
         "folder)"),
        (lambda c: c["columns"].update({"": {"type": "integer"}}),
         "columns: Value error, a column name cannot be empty; pandas reads an empty CSV header as "
         "'Unnamed: <position>' (from 0), so declare a first column without a name as \"Unnamed: 0\""),
    ],
    ids=["missing-source-file", "empty-column-name"],
)
def test_materialize_on_a_bad_config_prints_the_config_error_alone(loans_home, breakage, message):
    _, configs, _ = loans_home
    write_loans(configs, make_loans(10))
    config = yaml.safe_load((configs / "loans.yaml").read_text())
    breakage(config)
    (configs / "loans.yaml").write_text(yaml.safe_dump(config))
    result = materialize()
    assert result.exit_code == 1
    assert result.stderr == f"Error: {configs / 'loans.yaml'}: {message.format(configs=configs)}\n"
    assert result.stdout == ""
