"""Approvals with roles: only the right person, with a real token, on a real version; the ledger cannot be doctored."""

from __future__ import annotations

import getpass
import re
import sqlite3

import mlflow
import pytest
import sqlalchemy as sa
import yaml

from mlops_assets.config import GovernanceConfig, load_dataset_config
from mlops_assets.governance.approvals import (
    ApprovalRefused,
    PromotionRefused,
    record_decision,
    require_promotion_allowed,
    version_approval_state,
)
from mlops_assets.governance.ledger import DecisionLedger, LedgerError, ledger_url
from mlops_assets.governance.roles import RolesError, load_roles, token_hash
from mlops_assets.settings import use_home

TOKENS = {"alice": "alice-secret-token", "bob": "bob-secret-token", "carol": "carol-secret-token",
          "dave": "dave-secret-token"}


def roles_document(**overrides) -> dict:
    people = {
        "alice": {"roles": ["data_scientist"], "usernames": [getpass.getuser()]},  # trained the model
        "bob": {"roles": ["reviewer"]},
        "carol": {"roles": ["risk_officer"]},
        "dave": {"roles": ["reviewer", "data_scientist"], "usernames": [getpass.getuser()]},
    }
    for name, person in people.items():
        person["token_sha256"] = token_hash(TOKENS[name])
    return {"roles": ["data_scientist", "reviewer", "risk_officer"], "required_approvals": ["reviewer", "risk_officer"],
            "allow_self_approval": False, "people": people, **overrides}


@pytest.fixture
def home(materialized_churn, tmp_path):
    """The shared churn home (churn_model v1), with a roles file and a fresh ledger per test; tags cleaned after."""
    settings, _ = materialized_churn
    roles = tmp_path / "roles.yaml"
    roles.write_text(yaml.safe_dump(roles_document()))
    config = load_dataset_config(settings.configs / "churn.yaml")
    config = config.model_copy(update={"governance": GovernanceConfig(roles_file=str(roles))})
    with use_home(settings.home, settings.configs, MLOPS_APPROVALS_DB=f"sqlite:///{tmp_path / 'approvals.db'}") as entered:
        try:
            yield entered, config, tmp_path / "approvals.db"
        finally:
            tracking = mlflow.MlflowClient(entered.mlflow_tracking_uri)
            for key in tracking.get_model_version("churn_model", "1").tags:
                if key.startswith("approval"):
                    tracking.delete_model_version_tag("churn_model", "1", key)


def ledger_rows(settings) -> int:
    ledger = DecisionLedger(ledger_url(settings))
    try:
        return len(ledger.records())
    finally:
        ledger.close()


@pytest.mark.parametrize("token, role, message", [
    (TOKENS["alice"], None, "alice holds ['data_scientist'], and decisions need one of ['reviewer', 'risk_officer']"),
    ("forged-token", None, "the token matches no one in"),
    (None, None, "no token given"),
    (TOKENS["bob"], "risk_officer", "bob does not hold the role 'risk_officer'"),
    (TOKENS["dave"], "reviewer", "dave trained this version (as"),
], ids=["no-deciding-role", "forged", "missing", "role-not-held", "self-approval"])
def test_unauthorized_forged_missing_and_self_approvals_are_refused_and_nothing_is_recorded(home, token, role, message):
    settings, config, _ = home
    with pytest.raises(ApprovalRefused, match=re.escape(message)) as refused:
        record_decision(settings, config, "1", token, "approve", "looks fine", role=role)
    assert str(refused.value).endswith("nothing recorded")
    assert ledger_rows(settings) == 0


def test_an_approval_for_a_version_that_does_not_exist_names_the_versions_that_do(home):
    settings, config, _ = home
    with pytest.raises(ApprovalRefused, match=r"churn_model has no version '9' \(versions: 1\); nothing recorded"):
        record_decision(settings, config, "9", TOKENS["bob"], "approve", "fine")
    assert ledger_rows(settings) == 0


def test_promotion_needs_every_required_role_and_any_rejection_blocks_it(home):
    settings, config, _ = home
    with pytest.raises(PromotionRefused, match="approvals missing from reviewer, risk_officer"):
        require_promotion_allowed(settings, config, "1")
    record_decision(settings, config, "1", TOKENS["bob"], "approve", "metrics and card reviewed")
    with pytest.raises(PromotionRefused, match=r"approvals missing from risk_officer \(approved so far: reviewer: bob\)"):
        require_promotion_allowed(settings, config, "1")
    record_decision(settings, config, "1", TOKENS["carol"], "approve", "fairness within limits")
    require_promotion_allowed(settings, config, "1")  # allowed: nothing raised
    assert version_approval_state(settings, config, "1").status == "approved"
    record_decision(settings, config, "1", TOKENS["carol"], "reject", "age bands need another look")
    with pytest.raises(PromotionRefused, match=r"rejected by carol \(risk_officer\) on .*'age bands need another look'"):
        require_promotion_allowed(settings, config, "1")
    tags = mlflow.MlflowClient(settings.mlflow_tracking_uri).get_model_version("churn_model", "1").tags
    assert tags["approval_state"].startswith("rejected")
    assert tags["approval.carol"].startswith("reject as risk_officer at ")


def test_an_approval_stops_counting_when_the_versions_content_changes(home):
    settings, config, _ = home
    record_decision(settings, config, "1", TOKENS["bob"], "approve", "ok")
    record_decision(settings, config, "1", TOKENS["carol"], "approve", "ok")
    tracking = mlflow.MlflowClient(settings.mlflow_tracking_uri)
    threshold = tracking.get_model_version("churn_model", "1").tags["decision_threshold"]
    tracking.set_model_version_tag("churn_model", "1", "decision_threshold", "0.1")
    try:
        with pytest.raises(PromotionRefused, match="approvals missing from reviewer, risk_officer"):
            require_promotion_allowed(settings, config, "1")
        assert len(version_approval_state(settings, config, "1").stale) == 2
    finally:
        tracking.set_model_version_tag("churn_model", "1", "decision_threshold", threshold)


def test_the_ledger_refuses_edits_and_a_doctored_table_is_detected_and_blocks_everything(home):
    settings, config, path = home
    record_decision(settings, config, "1", TOKENS["bob"], "approve", "ok")
    record_decision(settings, config, "1", TOKENS["carol"], "reject", "not yet")
    database = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        database.execute("UPDATE governance_decisions SET decision = 'approve' WHERE person = 'carol'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        database.execute("DELETE FROM governance_decisions")
    # Someone with file access drops the guard and turns the rejection into an approval.
    database.execute("DROP TRIGGER governance_decisions_no_update")
    database.execute("UPDATE governance_decisions SET decision = 'approve' WHERE person = 'carol'")
    database.commit()
    database.close()
    with pytest.raises(LedgerError, match=r"tampered with: record #2 \(carol approves churn_model v1\) was altered"):
        require_promotion_allowed(settings, config, "1")
    with pytest.raises(LedgerError, match="tampered with"):
        record_decision(settings, config, "1", TOKENS["bob"], "approve", "again")


def test_cutting_off_the_newest_decision_is_detected_through_the_mlflow_anchor(home):
    settings, config, path = home
    record_decision(settings, config, "1", TOKENS["bob"], "approve", "ok")
    record_decision(settings, config, "1", TOKENS["carol"], "reject", "not yet")
    database = sqlite3.connect(path)
    database.execute("DROP TRIGGER governance_decisions_no_delete")
    database.execute("DELETE FROM governance_decisions WHERE person = 'carol'")
    database.commit()
    database.close()
    with pytest.raises(LedgerError, match=r"lacks decisions that MLflow recorded \(v1 carol: reject as risk_officer"):
        require_promotion_allowed(settings, config, "1")


@pytest.mark.parametrize("change, message", [
    ({"required_approvals": ["reviewer", "auditor"]}, r"required_approvals names unknown roles \['auditor'\]"),
    ({"people": {"eve": {"roles": ["reviwer"], "token_sha256": "a" * 64}}}, r"person 'eve' has unknown roles \['reviwer'\]"),
    ({"people": {"eve": {"roles": ["reviewer"], "token_sha256": "plain-token"}}}, "token_sha256 must be 64 hex digits"),
])
def test_a_roles_file_with_unknown_roles_or_a_plain_token_is_refused_with_the_entry_named(tmp_path, change, message):
    path = tmp_path / "roles.yaml"
    path.write_text(yaml.safe_dump(roles_document(**change)))
    with pytest.raises(RolesError, match=message):
        load_roles(path)


def test_the_postgres_ledger_is_append_only_and_chained_like_the_sqlite_one():
    from tests.test_postgres import scratch_database

    with scratch_database("mlops_approvals") as url:
        ledger = DecisionLedger(url)
        try:
            first = ledger.append("m", "1", "c" * 64, "bob", "reviewer", "approve", "ok")
            second = ledger.append("m", "1", "c" * 64, "carol", "risk_officer", "reject", "no")
            assert second.prev_hash == first.record_hash and ledger.verify() == []
            for statement in ("UPDATE governance_decisions SET comment = 'x'", "DELETE FROM governance_decisions",
                              "TRUNCATE governance_decisions"):
                with pytest.raises(sa.exc.DBAPIError, match="append-only"), ledger.engine.begin() as connection:
                    connection.exec_driver_sql(statement)
            with ledger.engine.begin() as connection:
                connection.exec_driver_sql("ALTER TABLE governance_decisions DISABLE TRIGGER governance_decisions_no_change")
                connection.exec_driver_sql("UPDATE governance_decisions SET comment = 'fine' WHERE person = 'carol'")
            assert ledger.verify() == ["record #2 (carol rejects m v1) was altered after it was written"]
        finally:
            ledger.close()


def test_concurrent_decisions_extend_one_chain_without_forks():
    from concurrent.futures import ThreadPoolExecutor

    from tests.test_postgres import scratch_database

    with scratch_database("mlops_approvals") as url:
        ledger = DecisionLedger(url)
        try:
            def write(i: int) -> None:
                ledger.append("m", str(i % 3), "c" * 64, f"p{i}", "reviewer", "approve", "ok")

            with ThreadPoolExecutor(max_workers=6) as pool:
                list(pool.map(write, range(30)))
            records = ledger.records()
            assert len(records) == 30 and ledger.verify() == []
            assert len({r.prev_hash for r in records}) == 30  # every record has its own predecessor
        finally:
            ledger.close()
