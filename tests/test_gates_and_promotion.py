"""Quality gates, champion replacement and `mlops promote`: what a user sees when a version is (not) released."""

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
from mlops_assets.config import ConfigError, load_dataset_config, load_dataset_configs
from mlops_assets.pipeline.checks import build_gate_checks, gate_check_result
from mlops_assets.pipeline.gates import GateResult, evaluate_gates
from mlops_assets.pipeline.release import decide_champion
from mlops_assets.settings import PROJECT_ROOT, Settings, use_home
from tests.datasets import make_loans, write_loans

CHURN = load_dataset_config(PROJECT_ROOT / "configs" / "churn.yaml")


@pytest.fixture(scope="module", autouse=True)
def mlflow_tracking_uri_put_back():
    """The runs here point MLflow's process-wide tracking URI at their own homes; later modules expect theirs."""
    with _use_tracking_uri(mlflow.get_tracking_uri()):
        yield


def gates(**thresholds: float):
    return CHURN.model_copy(update={"gates": thresholds})


# Gates on plain values ------------------------------------------------------------------------------


def test_each_gate_compares_its_test_metric_with_its_bound():
    results = evaluate_gates(gates(min_roc_auc=0.70, max_brier=0.20, min_recall=0.5),
                             {"roc_auc": 0.62, "brier": 0.12, "recall": float("nan")})
    assert [(r.name, r.metric, r.threshold, r.measured, r.passed) for r in results] == [
        ("min_roc_auc", "roc_auc", 0.70, 0.62, False),
        ("max_brier", "brier", 0.20, 0.12, True),
        ("min_recall", "recall", 0.5, None, False),
    ]
    assert [r.describe() for r in results] == [
        "min_roc_auc (0.62 < 0.7)", "max_brier (0.12 <= 0.2)", "min_recall (not measured (threshold 0.5))"]


def test_a_value_just_below_the_threshold_never_prints_equal_to_it():
    (result,) = evaluate_gates(gates(min_roc_auc=0.7), {"roc_auc": 0.699996})
    assert not result.passed and result.comparison == "0.699996 < 0.7"


def test_an_unknown_gate_name_is_a_config_error_when_the_definitions_load(tmp_path):
    config = {**yaml.safe_load((PROJECT_ROOT / "configs" / "churn.yaml").read_text()), "gates": {"min_auc": 0.7}}
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(config))
    with use_home(tmp_path / "home", tmp_path):
        result = CliRunner().invoke(main, ["materialize"])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {tmp_path / 'churn.yaml'}: gates: unknown gate 'min_auc': a gate is min_<metric> or max_<metric>, "
        "metric one of roc_auc, pr_auc, log_loss, brier, accuracy, precision, recall, f1")


def test_gate_checks_block_at_error_severity_unless_the_config_says_warn():
    failed = GateResult("min_roc_auc", "roc_auc", 0.99, 0.84, False)
    key = dg.AssetKey(["churn", "evaluation"])
    blocking = gate_check_result(failed, key, "3", blocking=True)
    warning = gate_check_result(failed, key, "3", blocking=False)
    assert (blocking.severity, warning.severity) == (dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN)
    assert blocking.description == "min_roc_auc (0.84 < 0.99) FAILED; v3 will not become champion"
    settings = Settings.from_env()
    (default,) = build_gate_checks(CHURN, settings)
    assert {spec.name: spec.blocking for spec in default.check_specs} == {"gate_min_roc_auc": True, "gate_max_brier": True}
    relaxed = CHURN.model_copy(update={"release": CHURN.release.model_copy(update={"blocking_gates": False})})
    (lenient,) = build_gate_checks(relaxed, settings)
    assert not any(spec.blocking for spec in lenient.check_specs)
    assert build_gate_checks(gates(), settings) == []


# The champion rule on plain values -------------------------------------------------------------------

PASSED = [GateResult("min_roc_auc", "roc_auc", 0.7, 0.84, True)]
FAILED = [GateResult("min_roc_auc", "roc_auc", 0.7, 0.62, False)]


def test_a_version_that_fails_a_gate_never_becomes_champion_not_even_the_first():
    first = decide_champion("1", FAILED, 0.62, None, None, 900)
    assert (first.promoted, first.champion_version) == (False, None)
    assert first.reason == "v1 failed min_roc_auc (0.62 < 0.7): no champion"
    later = decide_champion("4", FAILED, 0.99, "3", 0.80, 900)
    assert (later.promoted, later.reason) == (False, "v4 failed min_roc_auc (0.62 < 0.7): champion v3 kept")


def test_a_newer_version_takes_the_alias_when_it_scores_at_least_the_champion_on_the_same_rows():
    assert decide_champion("1", PASSED, 0.84, None, None, 900).reason == "no champion existed; v1 passed every gate"
    tie = decide_champion("2", PASSED, 0.84, "1", 0.84, 900)
    assert (tie.promoted, tie.champion_version) == (True, "2")
    assert tie.reason == "v2 ROC AUC 0.8400 >= champion v1's 0.8400 on the same 900 test rows"
    worse = decide_champion("3", PASSED, 0.83, "2", 0.84, 900)
    assert (worse.promoted, worse.champion_version) == (False, "2")
    assert worse.reason == "v3 ROC AUC 0.8300 < champion v2's 0.8400 on the same 900 test rows: champion v2 kept"


# The shared churn home (gates pass) ------------------------------------------------------------------


@pytest.mark.slow
def test_cli_runs_are_filed_under_the_main_job_and_code_location_like_ui_runs(in_home):
    _, summary = in_home
    instance = dg.DagsterInstance.get()
    run = instance.get_run_by_id(summary.run_id)
    assert (run.remote_job_origin.location_name, run.remote_job_origin.job_name) == ("mlops_assets", "mlops_main")
    # What the job's Runs tab and the Overview timeline ask the instance for.
    listed = instance.get_runs(dg.RunsFilter(job_name="mlops_main",
                                             tags={".dagster/repository": "__repository__@mlops_assets"}))
    assert summary.run_id in [r.run_id for r in listed]


@pytest.mark.slow
def test_the_version_carries_its_gate_verdicts_and_the_evaluation_shows_them_as_checks(in_home):
    settings, summary = in_home
    tags = MlflowClient(settings.mlflow_tracking_uri).get_model_version("churn_model", "1").tags
    assert (tags["gate.min_roc_auc"], tags["gate.max_brier"], tags["gates_passed"]) == ("passed", "passed", "true")
    outcomes = {o.asset: o for o in summary.outcomes}
    assert outcomes["churn/evaluation"].checks == {"gate_min_roc_auc": True, "gate_max_brier": True}


@pytest.mark.slow
def test_materialize_prints_each_models_test_metrics_gates_champion_and_run_time(in_home):
    _, summary = in_home
    evaluation = latest_metadata(["churn", "evaluation"])
    lines = summary.models_table().splitlines()
    assert lines[0] == (
        f"  churn_model v1: test roc_auc {evaluation['roc_auc']:.4f}, pr_auc {evaluation['pr_auc']:.4f}, "
        f"log_loss {evaluation['log_loss']:.4f}, brier {evaluation['brier']:.4f}, accuracy {evaluation['accuracy']:.4f} "
        f"(threshold {evaluation['threshold']:.4f}, {evaluation['rows']} rows)")
    assert re.fullmatch(r"    gates: max_brier passed: 0\.\d+ <= 0\.2; min_roc_auc passed: 0\.\d+ >= 0\.7", lines[1])
    assert lines[2] == "    champion: v1 (no champion existed; v1 passed every gate)"
    assert summary.duration > 0


@pytest.mark.slow
def test_metrics_are_one_rounded_figure_each_plus_a_table(in_home):
    evaluation = latest_metadata(["churn", "evaluation"])
    for metric in ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "threshold"):
        assert evaluation[metric] == round(evaluation[metric], 4)
    assert isinstance(evaluation["rows"], int)
    assert f"| roc_auc | {evaluation['roc_auc']:.4g} | ranking quality" in evaluation["metrics"]
    model = latest_metadata(["churn", "model"])
    assert model["decision_threshold"] == round(model["decision_threshold"], 4)


@pytest.mark.slow
def test_frame_assets_describe_every_column_from_the_config(in_home):
    raw = {c.name: c for c in latest_metadata(["churn", "raw_rows"])["dagster/column_schema"].columns}
    assert raw["tenure_months"].description == "Whole months since signup (feature)"
    assert raw["churned"].description == "1 if the customer cancelled within 30 days after the snapshot (target)"
    assert raw["gender"].description == "Self-reported gender (sensitive attribute)"
    assert raw["customer_id"].constraints.unique and raw["tenure_months"].constraints.other == ["min 0", "max 120"]
    features = {c.name: c for c in latest_metadata(["churn", "usage_features"])["dagster/column_schema"].columns}
    assert features["support_calls_per_login"].description == "derived: support_calls_90d / (logins_last_30d + 1)"
    assert features["logins_last_30d"].description == "App logins in the last 30 days"
    split = {c.name: c for c in latest_metadata(["churn", "training_set"])["dagster/column_schema"].columns}
    assert split["split"].description.startswith("train, validation or test")
    assert all(column.description for column in split.values())


def latest_metadata(key: list[str]) -> dict:
    event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey(key))
    assert event is not None, f"{key} has no materialization in the instance"
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


# A home of its own: an impossible gate, then two good versions, then a rollback by hand ---------------


def loans_configs(folder: Path, min_roc_auc: float) -> Path:
    configs = write_loans(folder, make_loans(600))
    path = configs / "loans.yaml"
    config = yaml.safe_load(path.read_text())
    config["gates"] = {"min_roc_auc": min_roc_auc}
    config["drift"] = {"current_rows": 200}
    path.write_text(yaml.safe_dump(config))
    return configs


def materialize(home: Path, configs: Path):
    with use_home(home, configs):
        return CliRunner().invoke(main, ["materialize"])


@pytest.fixture(scope="module")
def release_home(tmp_path_factory):
    """One home, three runs: v1 fails an impossible gate, v2 and v3 (identical data) pass."""
    root = tmp_path_factory.mktemp("release")
    home = root / "home"
    impossible = materialize(home, loans_configs(root / "impossible", 0.999))
    with use_home(home, root / "impossible") as settings:
        config = load_dataset_configs(settings.configs)[0]
        before = {"reason": _no_champion(settings, config), "serving": _serving_error(settings, config),
                  "promote": CliRunner().invoke(main, ["promote", "loans_model", "1", "--reason", "try anyway"])}
    good = loans_configs(root / "good", 0.5)
    second, third = materialize(home, good), materialize(home, good)
    with use_home(home, good) as settings:
        client = MlflowClient(settings.mlflow_tracking_uri)
        after = {"aliases": {a: str(client.get_model_version_by_alias("loans_model", a).version)
                             for a in ("champion", "previous")},
                 "champion": latest_metadata(["loans", "champion"])}
    return {"home": home, "configs": good, "impossible": impossible, "before": before, "runs": (second, third),
            "after": after}


def _no_champion(settings, config) -> str:
    from mlops_assets.training.registry import NoChampionError, load_champion

    with pytest.raises(NoChampionError) as raised:
        load_champion(settings, config)
    return str(raised.value)


def _serving_error(settings, config) -> str:
    from mlops_assets.serving import ServerError, check_servable

    with pytest.raises(ServerError) as raised:
        check_servable(settings, [config])
    return str(raised.value)


FAILED_V1 = r"version 1 failed min_roc_auc \(0\.\d+ < 0\.999\)"


@pytest.mark.slow
def test_an_impossible_gate_fails_the_run_and_materialize_says_which_gate_and_why(release_home):
    result = release_home["impossible"]
    assert result.exit_code == 1
    assert re.search(r"check loans/evaluation:gate_min_roc_auc failed: min_roc_auc \(0\.\d+ < 0\.999\) FAILED; "
                     r"v1 will not become champion", result.output)
    assert re.search(r"  step loans__gates failed: loans/evaluation:gate_min_roc_auc failed: min_roc_auc \(0\.\d+ < "
                     r"0\.999\) FAILED; v1 will not become champion; the steps after it did not run\n", result.output)
    assert re.search(r"  loans_model v1: test roc_auc 0\.\d{4}, pr_auc", result.output)
    assert re.search(r"    gates: min_roc_auc FAILED: 0\.\d+ < 0\.999\n", result.output)
    assert "    champion: not decided in this run (the champion step did not run)" in result.output
    assert re.search(r"  loans/champion +not materialized", result.output)
    assert re.search(r"Error: loans/evaluation:gate_min_roc_auc failed: min_roc_auc \(0\.\d+ < 0\.999\) FAILED; v1 "
                     r"will not become champion; the steps after it did not run; run [0-9a-f-]+ failed after "
                     r"\d+\.\d s: `mlops materialize --verbose` prints Dagster's log", result.output)


@pytest.mark.slow
def test_with_no_passing_version_there_is_no_champion_and_the_service_says_why(release_home):
    before = release_home["before"]
    assert re.fullmatch(f"loans has no champion: {FAILED_V1}", before["reason"])
    assert re.fullmatch(f"nothing to serve: loans has no champion: {FAILED_V1}", before["serving"])
    assert before["promote"].exit_code == 1
    assert re.fullmatch(r"Error: loans_model v1 failed min_roc_auc \(0\.\d+ < 0\.999\): a version that failed a gate "
                        r"cannot be champion\n", before["promote"].output)


@pytest.mark.slow
def test_the_failed_gate_is_a_red_error_check_on_evaluation_in_the_instance(release_home):
    with use_home(release_home["home"], release_home["configs"]) as settings:
        instance = dg.DagsterInstance.get()
        key = dg.AssetCheckKey(dg.AssetKey(["loans", "evaluation"]), "gate_min_roc_auc")
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
        tags = MlflowClient(settings.mlflow_tracking_uri).get_model_version("loans_model", "1").tags
    first = history[-1]  # newest first: the impossible run is the oldest
    evaluation = first.event.dagster_event.event_specific_data
    assert (first.status.value, evaluation.severity, evaluation.blocking) == ("FAILED", dg.AssetCheckSeverity.ERROR, True)
    assert [r.status.value for r in history[:-1]] == ["SUCCEEDED", "SUCCEEDED"]
    assert (tags["gate.min_roc_auc"], tags["gates_passed"]) == ("failed", "false")


@pytest.mark.slow
def test_a_newer_version_at_least_as_good_on_the_same_rows_replaces_the_champion(release_home):
    second, third = release_home["runs"]
    assert second.exit_code == 0 and third.exit_code == 0, second.output + third.output
    assert "    champion: v2 (no champion existed; v2 passed every gate)" in second.output
    assert re.search(r"    champion: v3 \(v3 ROC AUC (0\.\d{4}) >= champion v2's \1 on the same \d+ test rows\)",
                     third.output)
    assert re.search(r"run [0-9a-f-]+: success in \d+\.\d s", third.output)
    assert release_home["after"]["aliases"] == {"champion": "3", "previous": "2"}
    champion = release_home["after"]["champion"]
    assert champion["champion_version"] == "3" and champion["promoted"] is True
    assert champion["aliases"] == {"champion": "3", "challenger": None, "previous": "2"}
    assert "| champion | set | 3 | 2 | dagster run" in champion["alias_history"]


@pytest.mark.slow
def test_promote_by_hand_rolls_back_records_who_when_why_and_shows_it_on_the_champion_asset(release_home):
    from mlops_assets.pipeline.aliases import current_user

    with use_home(release_home["home"], release_home["configs"]) as settings:
        result = CliRunner().invoke(main, ["promote", "loans_model", "2", "--reason", "rollback drill"])
        client = MlflowClient(settings.mlflow_tracking_uri)
        aliases = {a: str(client.get_model_version_by_alias("loans_model", a).version) for a in ("champion", "previous")}
        tags = client.get_model_version("loans_model", "2").tags
        metadata = latest_metadata(["loans", "champion"])
    user = current_user()
    assert result.exit_code == 0, result.output
    assert result.output == f"loans_model: previous -> v3 (was v2); champion -> v2 (was v3) by {user}: rollback drill\n"
    assert aliases == {"champion": "2", "previous": "3"}
    assert (tags["alias.champion.set_by"], tags["alias.champion.set_reason"]) == (user, "rollback drill")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", tags["alias.champion.set_at"])
    assert (metadata["moved_by_hand"], metadata["champion_version"]) == (result.output.strip(), "2")
    assert metadata["aliases"] == {"champion": "2", "challenger": None, "previous": "3"}
    assert metadata["alias_moves"] == 5  # v2 champion; v2 previous + v3 champion; v3 previous + v2 champion
    assert f"| champion | set | 2 | 3 | {user} | rollback drill |" in metadata["alias_history"]

    # Then an A/B: v3 as challenger, and the challenger promoted to champion gives up its challenger alias.
    with use_home(release_home["home"], release_home["configs"]) as settings:
        challenger = CliRunner().invoke(main, ["promote", "loans", "3", "--alias", "challenger", "--reason", "A/B"])
        twice = CliRunner().invoke(main, ["promote", "loans_model", "2", "--alias", "challenger", "--reason", "x"])
        winner = CliRunner().invoke(main, ["promote", "loans_model", "3", "--reason", "won the A/B"])
        final = latest_metadata(["loans", "champion"])["aliases"]
    assert challenger.output == f"loans_model: challenger -> v3 by {user}: A/B\n"
    assert twice.exit_code == 1
    assert twice.output == "Error: loans_model v2 is the champion: it cannot also be its challenger\n"
    assert winner.output == (f"loans_model: previous -> v2 (was v3); champion -> v3 (was v2); challenger removed from "
                             f"v3 by {user}: won the A/B\n")
    assert final == {"champion": "3", "challenger": None, "previous": "2"}
