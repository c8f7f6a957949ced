"""The whole HTTP API fuzzed from its own OpenAPI document with schemathesis, every check on.

``st run`` with ``--checks all`` runs its examples, coverage and fuzzing phases against
a real server: responses must match the documented schemas and status codes,
schema-valid requests must be accepted, invalid ones refused, no 5xx. The admin token
is given, so the admin endpoints are exercised too (on a prediction log of this test's
own). Any failure fails the test, and the service must still answer afterwards.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mlops_assets.serving import running_server
from tests.serving_support import ADMIN_TOKEN, churn_record

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 8


def test_schemathesis_finds_no_failure_with_all_checks_and_the_service_still_answers(serving_home, tmp_path):
    log_url = f"sqlite:///{tmp_path / 'fuzz_log.db'}"
    with serving_home.entered(MLOPS_PREDICTION_LOG_URL=log_url, MLOPS_ADMIN_TOKEN=ADMIN_TOKEN) as (settings, configs):
        with running_server(settings, list(configs.values())) as server:
            result = subprocess.run(
                [str(Path(sys.executable).with_name("st")), "run", f"{server.url}/docs.json", "--checks", "all",
                 "--max-examples", str(MAX_EXAMPLES), "--seed", "20261129", "--workers", "2", "--no-color",
                 "--generation-database", "none", "--request-timeout", "30", "--suppress-health-check", "too_slow",
                 "--header", f"Authorization: Bearer {ADMIN_TOKEN}"],
                capture_output=True, text=True, timeout=600, cwd=tmp_path,
            )
            assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
            after = httpx.post(f"{server.url}/predict", json={"dataset": "churn", "record": churn_record(1)}, timeout=30)
            assert after.status_code == 200, after.text
