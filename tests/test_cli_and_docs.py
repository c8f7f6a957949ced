"""The `mlops` command answers --help everywhere, and the docs site builds strictly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_assets.settings import PROJECT_ROOT

MLOPS = str(Path(sys.executable).with_name("mlops"))
COMMANDS = ["demo", "materialize", "serve", "ui", "mlflow-ui"]


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, **kwargs)


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
    assert "has a 'champion' model" in result.stderr and "Traceback" not in result.stderr


def test_docs_site_builds_with_strict(tmp_path):
    mkdocs = str(Path(sys.executable).with_name("mkdocs"))
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = run(mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site"), cwd=PROJECT_ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "index.html").exists()
