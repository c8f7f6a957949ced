"""The `mlops` command answers --help everywhere, and the docs site builds strictly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_assets.settings import PROJECT_ROOT

MLOPS = str(Path(sys.executable).with_name("mlops"))
COMMANDS = ["demo", "materialize", "serve", "ui", "mlflow-ui", "promote", "approve", "reject", "explain", "lineage",
            "governance", "experiment", "monitor"]


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=600, **kwargs)


def test_mlops_lists_every_command():
    result = run(MLOPS, "--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run(MLOPS, command, "--help")
    assert result.returncode == 0 and "Usage: mlops " + command in result.stdout


def test_serve_without_a_champion_exits_with_a_message_not_a_traceback(tmp_path):
    result = run(MLOPS, "serve", env={"PATH": "/usr/bin:/bin", "MLOPS_HOME": str(tmp_path / "home")})
    assert result.returncode == 1
    assert "nothing to serve: churn has no champion: no version of churn_model is registered" in result.stderr
    assert "Traceback" not in result.stderr


def test_docs_site_builds_with_strict(tmp_path):
    mkdocs = str(Path(sys.executable).with_name("mkdocs"))
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = run(mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site"), cwd=PROJECT_ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "index.html").exists()


def test_a_bad_config_ends_the_command_with_its_message_not_a_traceback(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "broken.yaml").write_text("name: Broken Name\n")
    env = {"PATH": "/usr/bin:/bin", "MLOPS_HOME": str(tmp_path / "home"), "MLOPS_CONFIGS": str(tmp_path / "configs")}
    result = run(MLOPS, "materialize", env=env)
    assert result.returncode == 1
    assert "broken.yaml" in result.stderr and "must be lowercase" in result.stderr
    assert "Traceback" not in result.stderr


def test_materialize_on_bad_rows_prints_the_failing_check_with_the_rows(tmp_path):
    from tests.datasets import make_loans, write_loans

    frame = make_loans(300)
    frame.loc[4, "income"] = -1.0
    configs = write_loans(tmp_path / "configs", frame)
    env = {"PATH": "/usr/bin:/bin", "MLOPS_HOME": str(tmp_path / "home"), "MLOPS_CONFIGS": str(configs)}
    result = run(MLOPS, "materialize", env=env)
    assert result.returncode == 1
    assert ("check loans/raw_rows:raw_schema failed: 1 of 300 rows invalid in columns ['income']: income: below "
            "the minimum 0: -1.0 (line 6, row_id 4)") in result.stdout
    assert "step loans__raw_rows failed: loans: raw rows rejected by raw_schema; nothing written" in result.stdout
    assert "Traceback" not in result.stderr
