"""`mlops runs search` returns exactly what `mlflow.search_runs` returns, on SQLite and PostgreSQL."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from mlops_assets.cli import main
from mlops_assets.settings import use_home
from mlops_assets.training.run_search import SearchError, SearchRequest, search_runs
from tests.run_history import FILTERS, ORDERS, insert_run_history


def assert_same_as_mlflow(settings, experiment_id: str, filter_string: str, order_by: tuple[str, ...],
                          max_results: int | None = None) -> int:
    ours = search_runs(settings, SearchRequest(filter_string, order_by, max_results), [experiment_id])
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    reference = mlflow.search_runs([experiment_id], filter_string, order_by=list(order_by) or None,
                                   max_results=max_results or 100_000)
    assert list(ours["run_id"]) == list(reference["run_id"]), (filter_string, order_by)
    if len(reference):
        assert sorted(ours.columns) == sorted(reference.columns)
        columns = sorted(reference.columns)
        pd.testing.assert_frame_equal(ours[columns], reference[columns], check_dtype=False)
    return len(reference)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """1,200 generated runs in a fresh SQLite store: every filter, every ordering."""
    folder = tmp_path_factory.mktemp("search")
    with use_home(folder / "home", folder) as settings:
        experiment_id = insert_run_history(settings.mlflow_tracking_uri, 1200, seed=0)
    return folder, experiment_id


@pytest.mark.parametrize("filter_string", FILTERS)
def test_every_kind_of_filter_returns_the_rows_mlflow_returns(history, filter_string):
    folder, experiment_id = history
    with use_home(folder / "home", folder) as settings:
        for order_by in ORDERS:
            assert_same_as_mlflow(settings, experiment_id, filter_string, order_by)


def test_a_limited_ordered_search_returns_mlflows_top_rows(history):
    folder, experiment_id = history
    with use_home(folder / "home", folder) as settings:
        assert assert_same_as_mlflow(settings, experiment_id, "tags.run_kind = 'trial'",
                                     ("metrics.validation_roc_auc DESC",), max_results=100) == 100
        assert assert_same_as_mlflow(settings, experiment_id, "", ("attributes.end_time",), max_results=7) == 7


def test_ten_thousand_runs_search_equals_mlflow(tmp_path):
    with use_home(tmp_path / "home", tmp_path) as settings:
        experiment_id = insert_run_history(settings.mlflow_tracking_uri, 10_000, seed=1)
        # Selective enough that mlflow.search_runs itself answers in seconds; ours reads 10,000 runs' values.
        assert assert_same_as_mlflow(settings, experiment_id, "metrics.test_roc_auc > 0.9",
                                     ("params.learning_rate DESC",)) > 50
        everything = search_runs(settings, SearchRequest(), [experiment_id])
        engine = sa.create_engine(settings.mlflow_tracking_uri)
        with engine.connect() as connection:
            active = connection.execute(sa.text("SELECT COUNT(*) FROM runs WHERE lifecycle_stage = 'active' "
                                                "AND experiment_id = :e"), {"e": int(experiment_id)}).scalar_one()
        engine.dispose()
    assert len(everything) == active > 9_000
    assert everything["metrics.validation_roc_auc"].notna().all() and everything["params.model_family"].notna().all()


@pytest.mark.parametrize(
    ("filter_string", "order_by", "message"),
    [
        ("metrics.x >>> 3", (), "filter 'metrics.x >>> 3': Invalid comparator '>>>'"),
        ("params.lr > 'x'", (), "Invalid comparator '>'"),
        ("colour = 'red'", (), "filter \"colour = 'red'\""),
        ("", ("metrics.a SIDEWAYS",), "--order-by 'metrics.a SIDEWAYS': Invalid ordering key"),
    ],
)
def test_a_bad_filter_is_one_line_before_any_query(tmp_path, filter_string, order_by, message):
    with use_home(tmp_path / "home", tmp_path):
        with pytest.raises(SearchError) as raised:
            search_runs(None, SearchRequest(filter_string, order_by))  # type: ignore[arg-type]
        result = CliRunner().invoke(main, ["runs", "search", filter_string, *sum((["--order-by", o] for o in order_by), [])])
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_runs_search_prints_a_table_of_the_matches(history):
    folder, _ = history
    with use_home(folder / "home", folder, MLOPS_MLFLOW_EXPERIMENT="history"):
        result = CliRunner().invoke(main, ["runs", "search", "tags.dataset = 'churn' and tags.run_kind = 'model'",
                                           "--order-by", "metrics.test_roc_auc DESC", "--max", "5",
                                           "--columns", "metrics.test_roc_auc,params.learning_rate"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("| run_id | name | status | start_time | test_roc_auc | params.learning_rate |")
    assert len([line for line in lines if line.startswith("| ") and "churn-model" in line]) == 5
    aucs = [float(line.split("|")[5]) for line in lines[2:7]]
    assert aucs == sorted(aucs, reverse=True)
    assert "5 run(s) shown" in lines[-1]
