"""The production column: the Dagster instance (dagster-postgres) and MLflow's backend on PostgreSQL.

Each test database is created and dropped here. Without a server at 127.0.0.1:5432 the
test skips with the reason, unless MLOPS_REQUIRE_SERVICES=1 (CI), where it fails.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import pytest
import sqlalchemy as sa
from mlflow.tracking import MlflowClient

from mlops_assets.pipeline.runs import run_main_job
from mlops_assets.settings import PROJECT_ROOT
from mlops_assets.settings import use_home
from tests.conftest import require_service

pytestmark = pytest.mark.slow

SERVER = "postgresql://postgres@127.0.0.1:5432"


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A new empty database; dropped afterwards even if connections are left open."""
    admin = sa.create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            name = f"{prefix}_{uuid.uuid4().hex[:10]}"
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        require_service("PostgreSQL at 127.0.0.1:5432", str(exc.orig).strip().splitlines()[0])
    try:
        yield f"{SERVER}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_graph_materializes_on_a_postgres_instance_with_mlflow_on_postgres(tmp_path, churn_config_dir):
    with scratch_database("mlops_dagster") as dagster_url, scratch_database("mlops_mlflow") as mlflow_url:
        with use_home(
            tmp_path / "home", churn_config_dir,
            DAGSTER_HOME=str(PROJECT_ROOT / "deploy" / "postgres"),
            MLOPS_DAGSTER_PG_URL=dagster_url,
            MLFLOW_TRACKING_URI=mlflow_url,
        ) as settings:
            instance = dg.DagsterInstance.get()
            try:
                assert type(instance.run_storage).__name__ == "PostgresRunStorage"
                summary = run_main_job(settings, instance=instance)
                assert summary.success, summary.table()
            finally:
                instance.dispose()
            version = MlflowClient(mlflow_url).get_model_version_by_alias("churn_model", "champion")
            assert str(version.version) == "1"

        engine = sa.create_engine(dagster_url)
        try:
            with engine.connect() as connection:
                status = connection.execute(
                    sa.text("SELECT status FROM runs WHERE run_id = :id"), {"id": summary.run_id}).scalar_one()
                keys = connection.execute(sa.text(
                    "SELECT DISTINCT asset_key FROM event_logs "
                    "WHERE run_id = :id AND dagster_event_type = 'ASSET_MATERIALIZATION'"), {"id": summary.run_id}).scalars().all()
                checks = connection.execute(sa.text(
                    "SELECT check_name, execution_status FROM asset_check_executions WHERE run_id = :id"),
                    {"id": summary.run_id}).all()
        finally:
            engine.dispose()
        assert status == "SUCCESS"
        assert {tuple(json.loads(k)) for k in keys} == {
            ("churn", a) for a in ("raw_rows", "usage_features", "billing_features", "online_features",
                                   "feature_catalog", "training_set", "study", "model", "evaluation",
                                   "champion", "explanations", "model_card", "drift_report", "ab_test_report")}
        assert sorted(checks) == sorted([(f"{view}_{check}", "SUCCEEDED") for view in ("billing", "usage")
                                         for check in ("distribution", "schema")] + [
            ("card_coverage", "SUCCEEDED"), ("fairness", "SUCCEEDED"),
            ("gate_max_brier", "SUCCEEDED"), ("gate_min_roc_auc", "SUCCEEDED"),
            ("no_drift", "FAILED"),  # the demo's current batch drifts on purpose: a WARN check, the run succeeds
            ("raw_schema", "SUCCEEDED"),
            ("row_count", "SUCCEEDED"), ("target_classes", "SUCCEEDED"),
            ("guardrails_hold", "SUCCEEDED"), ("sample_ratio_matches_split", "SUCCEEDED")])
        # Nothing of the instance went to SQLite under MLOPS_HOME.
        assert not (tmp_path / "home" / "dagster" / "history").exists()
