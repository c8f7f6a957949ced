"""Shared fixtures: an isolated platform home per test run, and services that must answer in CI."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest

from mlops_assets.settings import PROJECT_ROOT, use_home


def require_service(name: str, reason: str) -> None:
    """Skip when a service does not answer, unless CI insists on it (MLOPS_REQUIRE_SERVICES=1)."""
    message = f"{name} is not reachable: {reason}"
    if os.environ.get("MLOPS_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message} (MLOPS_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def copy_home(source: Path, destination: Path) -> Path:
    """A copy of a platform home that writes only to itself.

    MLflow keeps absolute artifact locations in its database: a plain copy would log the
    copy's artifacts (a re-rendered card, say) into the source home's runs. The copy's
    MLflow database has the source path replaced by the destination in its text columns.
    """
    import sqlite3

    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("logs"))
    old, new = str(source), str(destination)
    with contextlib.closing(sqlite3.connect(destination / "mlflow" / "mlflow.db")) as connection, connection:
        tables = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in connection.execute(f'PRAGMA table_info("{table}")').fetchall():
                if "CHAR" in column[2].upper() or "TEXT" in column[2].upper():
                    connection.execute(f'UPDATE "{table}" SET "{column[1]}" = REPLACE("{column[1]}", ?, ?) '
                                       f'WHERE instr("{column[1]}", ?) > 0', (old, new, old))
    return destination


@pytest.fixture(scope="session")
def churn_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped churn config, scaled down so the whole graph runs in seconds."""
    import yaml

    folder = tmp_path_factory.mktemp("configs")
    config = yaml.safe_load((PROJECT_ROOT / "configs" / "churn.yaml").read_text())
    config["source"]["rows"] = 6000
    config["drift"]["current_rows"] = 2000
    config["model"]["params"]["max_iter"] = 60
    config["tuning"]["n_trials"] = 3
    (folder / "churn.yaml").write_text(yaml.safe_dump(config))
    shutil.copy(PROJECT_ROOT / "configs" / "churn.card.md", folder)  # the reviewed human sections of its model card
    return folder


@pytest.fixture(scope="session")
def materialized_churn(tmp_path_factory: pytest.TempPathFactory, churn_config_dir: Path):
    """A platform home where the main job has materialized the churn graph once (shared, read-only)."""
    from mlops_assets.pipeline.runs import run_main_job

    home = tmp_path_factory.mktemp("home")
    with use_home(home, churn_config_dir) as settings:
        summary = run_main_job(settings)
    assert summary.success, summary.table()
    yield settings, summary
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def in_home(materialized_churn):
    """Re-enter the materialized home's environment for one test."""
    settings, summary = materialized_churn
    with use_home(settings.home, settings.configs) as entered:
        yield entered, summary


@pytest.fixture(scope="session")
def serving_home(tmp_path_factory: pytest.TempPathFactory, churn_config_dir: Path):
    """A registry of the serving tests' own (they move aliases): see tests/serving_support.py."""
    from tests.serving_support import make_serving_home

    yield from make_serving_home(tmp_path_factory, churn_config_dir)
