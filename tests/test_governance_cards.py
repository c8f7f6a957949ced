"""Model cards for the churn example and the loans dataset: every section, three forms, honest about what is missing;
the governance commands a reviewer uses on them."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import mlflow
import pytest
import yaml
from click.testing import CliRunner

from mlops_assets.cli import main
from mlops_assets.config import load_dataset_config
from mlops_assets.governance.approvals import PromotionRefused, require_promotion_allowed
from mlops_assets.governance.roles import token_hash
from mlops_assets.pipeline.runs import run_main_job
from mlops_assets.settings import use_home
from tests.datasets import make_loans, write_loans

SECTION_KEYS = ["model_details", "intended_use", "out_of_scope", "data", "metrics", "gates", "fairness", "explanations",
                "limitations", "ethical_considerations", "approvals", "lineage", "deployment_history"]


@contextmanager
def mlflow_uri_kept():
    """Loading a version sets MLflow's process-wide tracking URI (and MLFLOW_TRACKING_URI): put it back after
    a block in another home, outside ``use_home`` so the home's own variables are restored first."""
    previous = mlflow.get_tracking_uri()
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def latest(key: list[str]) -> dict:
    event = dg.DagsterInstance.get().get_latest_materialization_event(dg.AssetKey(key))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def assert_self_contained(page: str) -> None:
    assert not re.findall(r"""(?:src|href)\s*=\s*['"](?!data:|#)""", page), "the HTML links to something outside"
    assert "<script" not in page and "<link" not in page
    assert page.count("src='data:image/png;base64,") >= 4


@pytest.mark.slow
def test_churn_card_has_every_section_in_three_forms_and_its_path_metadata_opens_the_card(in_home):
    settings, summary = in_home
    metadata = latest(["churn", "model_card"])
    markdown, page, document = Path(metadata["path"]), Path(metadata["html"]), Path(metadata["json"])
    assert markdown.name == "model_card.md" and page.name == "model_card.html" and document.name == "model_card.json"
    assert markdown.parent == settings.reports / "churn" / "v1"
    card = json.loads(document.read_text())
    assert [s["key"] for s in card["sections"]] == SECTION_KEYS
    assert card["summary"]["missing_human_sections"] == [] and card["summary"]["complete"]
    text = markdown.read_text()
    assert "missing: needs a person" not in text
    assert "A person makes each decision; the score only orders the list." in text  # from churn.card.md
    assert "**Split:** by event time (`event_time`)" in text
    roc_auc = card["data"]["metrics"]["metrics"]["roc_auc"]
    assert roc_auc["low"] < roc_auc["value"] < roc_auc["high"]
    assert f"| min_roc_auc | roc_auc | 0.7 | {roc_auc['value']:.4g} | pass |" in text
    assert "enforced" not in text
    assert "It is higher than average mainly because" in text or "It is lower than average mainly because" in text
    assert metadata["card"].count("data:image/png;base64,") >= 6  # the UI's copy carries its plots inline
    assert_self_contained(page.read_text())
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in summary.check_evaluations}
    fairness = checks[("churn/model", "fairness")]
    assert fairness.passed and "passed" in fairness.description
    assert checks[("churn/model_card", "card_coverage")].passed
    tags = mlflow.MlflowClient(settings.mlflow_tracking_uri).get_model_version("churn_model", "1").tags
    assert tags["fairness"] == "passed"


@pytest.fixture(scope="module")
def loans_home(tmp_path_factory):
    """The loans dataset with a numeric sensitive attribute, a roles file and no human sections, run once."""
    folder = tmp_path_factory.mktemp("loans-governance")
    frame = make_loans(2500)
    frame["applicant_age"] = (frame.index % 60 + 18).astype(int)
    configs = write_loans(folder / "configs", frame)
    raw = yaml.safe_load((configs / "loans.yaml").read_text())
    raw["columns"]["applicant_age"] = {"type": "integer", "min": 18}
    raw["sensitive_attributes"] = ["age_group", "applicant_age"]
    raw["gates"] = {"min_roc_auc": 0.6}
    raw["governance"] = {"roles_file": "governance/roles.yaml",
                         "fairness": {"bands": {"applicant_age": [30, 50]}, "bootstrap": 50},
                         "explanations": {"max_rows": 100}}
    (configs / "loans.yaml").write_text(yaml.safe_dump(raw))
    (configs / "governance").mkdir()
    people = {"bob": {"roles": ["reviewer"], "token_sha256": token_hash("bob-token")},
              "carol": {"roles": ["risk_officer"], "token_sha256": token_hash("carol-token")}}
    (configs / "governance" / "roles.yaml").write_text(yaml.safe_dump(
        {"roles": ["reviewer", "risk_officer"], "required_approvals": ["reviewer", "risk_officer"], "people": people}))
    with mlflow_uri_kept(), use_home(folder / "home", configs) as settings:
        summary = run_main_job(settings)
    assert summary.success, summary.table()
    return folder, configs, summary


@pytest.fixture
def loans(loans_home):
    folder, configs, summary = loans_home
    with mlflow_uri_kept(), use_home(folder / "home", configs) as settings:
        yield settings, load_dataset_config(configs / "loans.yaml"), summary


def invoke(*args: str, token: str | None = None):
    env = {"MLOPS_TOKEN": token} if token else {}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


@pytest.mark.slow
def test_loans_card_counts_missing_human_sections_says_file_order_and_bands_the_numeric_attribute(loans):
    settings, config, summary = loans
    metadata = latest(["loans", "model_card"])
    card = json.loads(Path(metadata["json"]).read_text())
    assert card["summary"]["missing_human_sections"] == ["Intended use", "Out-of-scope uses", "Limitations and caveats",
                                                         "Ethical considerations"]
    assert metadata["missing_human_sections"] == 4
    text = Path(metadata["path"]).read_text()
    assert "> **4 section(s) missing: needs a person:**" in text and "loans.card.md" in text
    assert text.count("**missing: needs a person**") == 4  # each human section says so where it belongs
    assert "**Split:** by file order: the dataset has no event-time column" in text
    test_rows = card["data"]["explanations"]["test_rows"]  # loans: a few hundred, over the config's max_rows of 100
    assert test_rows > 100 and f"(mean over 5 repeats, each on a random 100 of the {test_rows:,} test rows" in text
    groups = {g["group"] for g in card["data"]["fairness"]["groups"] if g["attribute"] == "applicant_age"}
    assert groups == {"under 30", "30 to under 50", "50 and over"}
    assert_self_contained(Path(metadata["html"]).read_text())
    # The roles file requires approvals: the automatic champion replacement left the alias alone.
    champion = latest(["loans", "champion"])
    assert not champion["promoted"]
    assert "not promoted: loans_model v1 cannot be promoted: approvals missing from reviewer, risk_officer" in \
        champion["reason"]
    report = invoke("governance", "report")
    assert report.exit_code == 0 and "no version has held the champion alias yet" in report.output
    assert "0 decisions, chain intact" in report.output


@pytest.mark.slow
def test_decisions_from_the_command_line_reach_the_ledger_the_card_and_the_dagster_ui_and_a_rejection_blocks(loans):
    settings, config, _ = loans
    refused = invoke("approve", "loans_model", "1", "--comment", "fine", token="not-a-token")
    assert refused.exit_code == 1 and "the token matches no one in" in refused.output
    approved = invoke("approve", "loans_model", "1", "--comment", "metrics reviewed", token="bob-token")
    assert approved.exit_code == 0, approved.output
    assert "bob (reviewer) approves loans_model v1" in approved.output
    assert "approval state: pending; approved by bob (reviewer); missing: risk_officer" in approved.output
    rejected = invoke("reject", "loans", "1", "--comment", "age bands need a second look", token="carol-token")
    assert rejected.exit_code == 0, rejected.output
    with pytest.raises(PromotionRefused, match="rejected by carol"):
        require_promotion_allowed(settings, config, "1")
    card = (settings.reports / "loans" / "v1" / "model_card.md").read_text()
    assert "**State:** rejected; approved by bob (reviewer); missing: risk_officer; rejected by carol" in card
    assert "| carol | risk_officer | reject | age bands need a second look |" in card
    ui = latest(["loans", "approvals"])
    assert (ui["person"], ui["decision"]) == ("carol", "reject") and ui["approval_state"].startswith("rejected")

    # `mlops promote` goes through the same refusal; once the rejection is withdrawn the version may serve.
    blocked = invoke("promote", "loans_model", "1", "--reason", "ship it")
    assert blocked.exit_code == 1 and "loans_model v1 cannot be promoted: rejected by carol (risk_officer)" in blocked.output
    assert not mlflow.MlflowClient(settings.mlflow_tracking_uri).get_model_version("loans_model", "1").aliases
    assert invoke("approve", "loans", "1", "--comment", "second look done", token="carol-token").exit_code == 0
    promoted = invoke("promote", "loans_model", "1", "--reason", "approved by review and risk")
    assert promoted.exit_code == 0, promoted.output
    card = (settings.reports / "loans" / "v1" / "model_card.md").read_text()
    assert "| champion | set by " in card  # the card's deployment history was brought up to date
    report = invoke("governance", "report")
    assert report.exit_code == 1  # v1 now serves, and its card lacks its human sections
    assert "coverage: 0 of 1 champion versions have a complete card" in report.output
    assert "human sections missing: Intended use" in report.output and "3 decisions, chain intact" in report.output


@pytest.mark.slow
def test_explain_lineage_and_a_threshold_warning_on_the_card_from_the_command_line(loans):
    settings, config, _ = loans
    explained = invoke("explain", "loans", "--entity", "2499", "--version", "1")
    assert explained.exit_code == 0, explained.output
    assert "loans_model v1, row_id 2499:" in explained.output and "The score is" in explained.output
    assert "(average over training rows)" in explained.output
    unknown = invoke("explain", "loans", "--entity", "no-such-row", "--version", "1")
    assert unknown.exit_code == 1 and "has no row with row_id = 'no-such-row'" in unknown.output
    chain = invoke("lineage", "loans", "1")
    assert chain.exit_code == 0, chain.output
    stages = [line for line in chain.output.splitlines() if line and not line.startswith(" ")]
    assert stages == ["loans_model v1", "source data snapshot", "feature versions", "training set",
                      "MLflow run and environment", "model version", "gates, fairness and approvals", "aliases over time"]
    assert "min_roc_auc  passed (roc_auc" in chain.output
    tracking = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    tracking.set_model_version_tag("loans_model", "1", "decision_threshold_warning",
                                   "the threshold predicts one class on validation")
    assert invoke("governance", "card", "loans", "1").exit_code == 0
    card = (settings.reports / "loans" / "v1" / "model_card.md").read_text()
    assert "**Warning (decision_threshold_warning):** the threshold predicts one class on validation" in card


@pytest.mark.slow
def test_a_broken_fairness_threshold_fails_the_blocking_check_and_the_version_never_reaches_champion(tmp_path):
    configs = write_loans(tmp_path / "configs", make_loans(1500))
    raw = yaml.safe_load((configs / "loans.yaml").read_text())
    raw["governance"] = {"fairness": {"max_demographic_parity_difference": 0.0001, "bootstrap": 20}}
    (configs / "loans.yaml").write_text(yaml.safe_dump(raw))
    with mlflow_uri_kept(), use_home(tmp_path / "home", configs) as settings:
        summary = run_main_job(settings)
        assert not summary.success
        (fairness,) = [e for e in summary.check_evaluations if e.check_name == "fairness"]
        assert not fairness.passed and fairness.severity == dg.AssetCheckSeverity.ERROR
        assert "FAILED: age_group demographic_parity_difference" in fairness.description
        materialized = {o.asset for o in summary.outcomes if o.materialized}
        assert "loans/model" in materialized
        assert not materialized & {"loans/evaluation", "loans/champion", "loans/model_card"}
        tracking = mlflow.MlflowClient(settings.mlflow_tracking_uri)
        experiment = tracking.get_experiment_by_name(settings.mlflow_experiment).experiment_id
        (failed_run,) = tracking.search_runs([experiment], "tags.fairness = 'failed'")
        assert "age_group" in failed_run.data.tags["fairness_verdict"]
        # Registered or not (registration may wait for evaluation), no version of it can take an alias.
        for version in tracking.search_model_versions("name='loans_model'"):
            assert not version.aliases
            with pytest.raises(PromotionRefused, match=f"loans_model v{version.version} cannot be promoted: it failed "
                                                       "its fairness check"):
                require_promotion_allowed(settings, load_dataset_config(configs / "loans.yaml"), version.version)
