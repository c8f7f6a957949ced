"""The monitoring run end to end: what matters read from the config, the HTML a person reads, and the graph's
drift_report with its WARN check (the demo's drifted batch fails it, an undrifted batch passes)."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

from mlops_assets.config import ConfigError, load_dataset_config, load_dataset_configs
from mlops_assets.data.sources import with_identity_columns
from mlops_assets.features.engineering import build_feature_table
from mlops_assets.monitoring.assets import DRIFT_CHECK, build_monitoring_assets
from mlops_assets.monitoring.html_report import write_report
from mlops_assets.monitoring.monitor import ModelUnderWatch, monitor
from mlops_assets.monitoring.rules import SCORE_COLUMN, drift_rules
from mlops_assets.monitoring.windows import Window
from mlops_assets.pipeline.runs import load_definitions
from mlops_assets.settings import PROJECT_ROOT
from tests.datasets import LOANS_CONFIG, make_loans


def loans_config(tmp_path: Path, **drift):
    config = {**LOANS_CONFIG, "drift": {**LOANS_CONFIG["drift"], **drift}}
    path = tmp_path / "loans.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_dataset_config(path, require_source=False)


# --- what matters, from the config ------------------------------------------------------------

def test_column_overrides_inherit_the_rest_from_the_dataset_level(tmp_path):
    config = loans_config(tmp_path, matters={"missing": 0.02}, columns={"income": {"numeric_sd": 0.5}})
    rules = drift_rules(config)
    assert (rules.matters("income").numeric_sd, rules.matters("income").missing) == (0.5, 0.02)
    assert (rules.matters("debt_ratio").numeric_sd, rules.matters("purpose").share) == (0.2, 0.10)


@pytest.mark.parametrize(("columns", "message"), [
    ({"salary": {"numeric_sd": 0.5}}, "drift.columns.salary: 'salary' is not monitored; monitored columns are income"),
    ({"purpose": {"numeric_sd": 0.5}}, "drift.columns.purpose.numeric_sd: 'purpose' is categorical; it takes share"),
    ({"income": {"new_category": 0.1}}, "drift.columns.income.new_category: 'income' is numeric; it takes numeric_sd"),
])
def test_an_override_that_does_not_fit_the_columns_is_refused_naming_file_and_field(tmp_path, columns, message):
    config = loans_config(tmp_path, columns=columns)
    with pytest.raises(ConfigError) as error:
        build_monitoring_assets(config, settings=None)  # checked when the code location loads
    assert message in str(error.value) and str(tmp_path / "loans.yaml") in str(error.value)


def test_config_module_only_parses_and_imports_no_monitoring_code():
    source = (PROJECT_ROOT / "mlops_assets" / "config.py").read_text()
    assert not re.search(r"^\s*(from|import) mlops_assets\.monitoring", source, re.MULTILINE)


# --- the HTML report ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def loans_run(tmp_path_factory):
    """A file dataset (string target, nullable column, free text) monitored with a fitted model."""
    folder = tmp_path_factory.mktemp("loans")
    config = loans_config(folder)
    reference = build_feature_table(with_identity_columns(make_loans(4_000, seed=1), config), config)
    current_raw = make_loans(3_000, seed=2)
    current_raw["debt_ratio"] = (current_raw["debt_ratio"] * 1.4).clip(upper=1.0)  # drifted on purpose
    current_raw.loc[:200, "purpose"] = "crypto"  # a category the reference never saw (6.7%)
    current = build_feature_table(with_identity_columns(current_raw, config), config)
    numeric = config.numeric_features
    fitted = LogisticRegression(max_iter=500).fit(reference[numeric].fillna(0), reference["defaulted"] == "yes")
    model = ModelUnderWatch("loans_model v7", lambda frame: fitted.predict_proba(frame[numeric].fillna(0))[:, 1],
                            0.3)
    report = monitor(Window(reference, "applications of 2025"), Window(current, "applications of January 2026"),
                     config, model, bootstrap_replicates=200)
    return config, report, folder


def test_the_report_opens_with_the_summary_then_the_drifted_columns_ranked(loans_run):
    _, report, folder = loans_run
    html = write_report(report, folder / "reports", run_id="run-1").read_text()
    summary_at = html.index("Dataset</dt>")
    for text in ("<b>loans</b>", "loans_model v7", "applications of 2025", "<b>4,000 rows</b>",
                 "applications of January 2026", "<b>3,000 rows</b>", "Verdict</dt>", "Drift share</dt>"):
        assert html.index(text, summary_at) < html.index("Drifted columns, largest effect first"), text
    ranked = html[html.index("Drifted columns, largest effect first"):html.index("<h2>Columns</h2>")]
    links = re.findall(r'<a href="#col-([^"]+)">', ranked)
    assert links == report.drift.drifted_columns and {"debt_ratio", "purpose", SCORE_COLUMN} <= set(links)
    effects = [report.drift.effect_sizes[name] for name in links]
    assert effects == sorted(effects, reverse=True)
    assert "never seen in the reference: &#x27;crypto&#x27; (6.7%)" in html
    for column in report.drift.columns:  # one section per column, with its plot
        section = html[html.index(f'id="col-{column.column}"'):]
        assert "<svg" in section[:section.find("</section>")], column.column
    assert "current, estimated before labels (CBPE)" in html and "cannot see concept drift" in html
    assert len(html) < 400_000  # a report, not a multi-megabyte bundle


def test_target_drift_and_performance_use_the_string_target(loans_run):
    config, report, _ = loans_run
    target = next(c for c in report.drift.columns if c.column == config.target)
    assert target.role == "target" and target.tests[0].statistic == "share of 'yes'"
    for performance in (report.reference_performance, report.current_performance):
        assert performance.rows > 2_000 and 0.5 < performance.metrics["roc_auc"].value < 1
        interval = performance.metrics["roc_auc"]
        assert interval.low < interval.value < interval.high
    assert report.estimated_performance.calibration_rows == 4_000


def test_an_empty_current_window_gives_a_no_data_report_not_an_alarm(loans_run, tmp_path):
    config, report, _ = loans_run
    reference = build_feature_table(with_identity_columns(make_loans(1_000, seed=1), config), config)
    empty = monitor(Window(reference, "2025"), Window(reference.iloc[0:0], "today: nothing yet"), config)
    assert empty.verdict == "no data" and empty.current_performance is None
    html = write_report(empty, tmp_path).read_text()
    assert "NO DATA" in html and "the current window has no rows" in html and "<b>0 rows</b>" in html


def test_each_run_is_kept_and_listed_in_the_history(loans_run, tmp_path):
    _, report, _ = loans_run
    first = write_report(report, tmp_path, run_id="aaaa1111")
    second = write_report(report, tmp_path, run_id="bbbb2222")
    assert first != second and first.exists() and second.exists()
    history = (tmp_path / "index.html").read_text()
    assert history.count('<td><a href="drift-') == 2
    assert first.name in history and second.name in history and "debt_ratio" in history


# --- the graph's drift_report --------------------------------------------------------------------

@pytest.mark.slow
def test_the_demo_batch_drifts_and_turns_the_warn_check_yellow(in_home):
    _, summary = in_home
    instance = dg.DagsterInstance.get()
    key = dg.AssetCheckKey(dg.AssetKey(["churn", "drift_report"]), DRIFT_CHECK)
    # What the UI shows: the check's latest execution in the instance, failed at WARN severity.
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    evaluation = record.event.dagster_event.event_specific_data
    assert record.status.value == "FAILED" and record.run_id == summary.run_id
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert summary.success  # a WARN check marks the asset, it does not fail the run
    event = instance.get_latest_materialization_event(dg.AssetKey(["churn", "drift_report"]))
    metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    # configs/churn.yaml injects covariate drift: charges rise, contracts shift, and the score follows.
    assert {"monthly_charges", "contract_type", SCORE_COLUMN} <= set(metadata["drifted_columns"])
    assert metadata["verdict"] == "drift" and 0 < metadata["drift_share"] < 1
    ranked = [row["x_what_matters"] for row in metadata["effect_sizes"]]
    assert ranked == sorted(ranked, reverse=True)
    assert set(metadata["drifted_columns"]) < {row["column"] for row in metadata["effect_sizes"]}
    assert metadata["effects"].startswith("![effect sizes](data:image/png;base64,")
    assert metadata["model_version"] == "1" and metadata["current_rows"] == 2000
    assert 0.6 < metadata["current_roc_auc"] < 1 and 0.6 < metadata["estimated_roc_auc"] < 1
    report = Path(metadata["report"])
    assert report.is_file() and report.parent.name == "drift" and (report.parent / "index.html").is_file()
    assert "DRIFT" in report.read_text()


@pytest.mark.slow
def test_an_undrifted_batch_passes_the_drift_check(in_home, tmp_path):
    settings, _ = in_home
    raw = yaml.safe_load((settings.configs / "churn.yaml").read_text())
    raw["drift"]["covariate_drift"] = 0.0
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(raw))
    (undrifted,) = load_dataset_configs(tmp_path)
    definitions = load_definitions(settings)
    (drift_report,) = build_monitoring_assets(undrifted, settings)
    key = dg.AssetKey(["churn", "drift_report"])
    upstream = [a for a in definitions.assets if not (isinstance(a, dg.AssetsDefinition) and key in a.keys)]
    # Its own throw-away instance: the shared home's instance keeps the demo's (drifted) run as the latest.
    result = dg.materialize([*upstream, drift_report], selection=[key], resources=definitions.resources,
                            instance=dg.DagsterInstance.ephemeral())

    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.severity == dg.AssetCheckSeverity.WARN, check.description
    metadata = {k: v.value for k, v in result.asset_materializations_for_node("churn__drift_report")[0]
                .metadata.items()}
    assert metadata["drifted_columns"] == []
    assert metadata["verdict"] in ("no drift", "too small")
    assert np.isfinite(metadata["estimated_roc_auc"])


# --- the command line: any reference file against any current file ------------------------------

def test_monitor_compare_reports_drift_between_two_files_and_can_fail_a_pipeline(tmp_path):
    from click.testing import CliRunner

    from mlops_assets.cli import main
    from mlops_assets.data.churn_generator import generate_churn
    from mlops_assets.settings import use_home

    generate_churn(3_000, seed=1).to_parquet(tmp_path / "reference.parquet")
    unlabelled = generate_churn(3_000, seed=2, share_shift={"contract_type": ("two_year", 0.15)}).drop(columns="churned")
    unlabelled.to_csv(tmp_path / "current.csv", index=False)
    arguments = ["monitor", "compare", "churn", "--reference", str(tmp_path / "reference.parquet"),
                 "--current", str(tmp_path / "current.csv"), "--output", str(tmp_path / "reports")]
    with use_home(tmp_path / "home", PROJECT_ROOT / "configs"):
        result = CliRunner().invoke(main, arguments)
        failing = CliRunner().invoke(main, [*arguments, "--fail-on-drift"])
        missing = CliRunner().invoke(main, [*arguments[:4], str(tmp_path / "nope.csv"), *arguments[5:]])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("drift in 1 of 14 columns: contract_type (share of 'two_year' +1")
    assert "no labels in the current window" in result.output
    assert len(list((tmp_path / "reports").glob("drift-*.html"))) == 2
    assert failing.exit_code == 1
    assert missing.exit_code == 1 and missing.output.strip() == f"Error: {tmp_path / 'nope.csv'}: no such file"
