"""`mlops ui` and a plain `dagster dev` in the project folder load workspace.yaml and the instance under MLOPS_HOME."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mlops_assets.serving import free_port
from mlops_assets.settings import PROJECT_ROOT

pytestmark = pytest.mark.slow

QUERY = """{
  workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } }
  assetNodes { assetKey { path } groupName description kinds
    assetMaterializations(limit: 1) { runId metadataEntries { label } }
    assetChecksOrError { ... on AssetChecks { checks { name blocking executionForLatestMaterialization { status } } } } }
  repositoryOrError(repositorySelector: {repositoryLocationName: "mlops_assets", repositoryName: "__repository__"}) {
    ... on Repository { pipelines { name runs(limit: 5) { runId } } } }
}"""


def ui_command(how: str, port: int) -> tuple[list[str], dict[str, str]]:
    """`mlops ui` with the full environment, or a bare `dagster dev` that has only MLOPS_HOME."""
    if how == "mlops ui":
        return [str(Path(sys.executable).with_name("mlops")), "ui", "--port", str(port)], os.environ.copy()
    bare = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "MLOPS_DAGSTER_STORAGE")}
    return [str(Path(sys.executable).with_name("dagster")), "dev", "-p", str(port)], bare


@pytest.mark.parametrize("how", ["mlops ui", "plain dagster dev"])
def test_dagster_ui_loads_the_code_location_and_shows_materialized_assets(in_home, how):
    settings, summary = in_home
    port = free_port()
    command, env = ui_command(how, port)
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline, data = time.monotonic() + 120, None
        while time.monotonic() < deadline and data is None:
            time.sleep(1)
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": QUERY}, timeout=10).json()
            except (httpx.TransportError, ValueError):
                continue
            entries = answer["data"]["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["loadStatus"] == "LOADED":
                data = answer["data"]
        assert data is not None, "the Dagster UI did not load the code location within 120 s"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)

    (entry,) = data["workspaceOrError"]["locationEntries"]
    assert entry["name"] == "mlops_assets"
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert len(nodes) == 16  # 14 assets, the external approvals ledger and the external prediction log
    groups = {n["groupName"] for n in nodes.values()}
    assert groups == {"features", "training", "pipeline", "governance", "monitoring", "serving"}
    model = nodes["churn/model"]
    assert model["assetMaterializations"][0]["runId"] == summary.run_id
    labels = {e["label"] for e in model["assetMaterializations"][0]["metadataEntries"]}
    # The model is logged, not yet a version: the version exists once the evaluation is done.
    assert {"mlflow_run", "mlflow_run_id", "model_uri"} <= labels and "model_version" not in labels
    # The quality gates are blocking checks on the evaluation, green for this run.
    checks = nodes["churn/evaluation"]["assetChecksOrError"]["checks"]
    assert {(c["name"], c["blocking"], c["executionForLatestMaterialization"]["status"]) for c in checks} == {
        ("gate_min_roc_auc", True, "SUCCEEDED"), ("gate_max_brier", True, "SUCCEEDED")}
    # The run the CLI started is in the job's Runs tab (the UI filters by job and code location).
    jobs = {p["name"]: [r["runId"] for r in p["runs"]] for p in data["repositoryOrError"]["pipelines"]}
    assert summary.run_id in jobs["mlops_main"]
