"""Stopping the server in the middle of a steady load loses no answered request (prediction log on PostgreSQL).

The server runs two workers (``--workers 2`` really starts two: BentoML 1.4 ignores
``--api-workers``), writes its log to a scratch PostgreSQL database, and gets a SIGTERM
while six clients are sending. Every request that got a 200 must be in the log after
the server has exited, exactly once.
"""

from __future__ import annotations

import signal
import threading
import time

import httpx
import psutil
import pytest

from mlops_assets.serving import running_server
from mlops_assets.serving.prediction_log import connect, read_predictions
from tests.serving_support import churn_record, steady_load
from tests.test_postgres import scratch_database

pytestmark = pytest.mark.slow


def worker_processes(server_pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(server_pid).children(recursive=True)
            if "_bentoml_impl.worker.service" in " ".join(p.cmdline())]


def test_sigterm_in_the_middle_of_a_load_loses_no_answered_request(serving_home):
    with scratch_database("mlops_predlog") as url, serving_home.entered(MLOPS_PREDICTION_LOG_URL=url) as (settings, configs):
        assert settings.prediction_log_url == url
        with running_server(settings, [configs["churn"]], workers=2) as server:
            assert len(worker_processes(server.process.pid)) == 2
            stop = threading.Event()

            def send(client: httpx.Client, i: int) -> httpx.Response:
                record = {**churn_record(i), "entity_id": f"T{i}"}
                return client.post(f"{server.url}/predict", json={"dataset": "churn", "record": record})

            threads, load = steady_load(send, clients=6, stop=stop, max_requests=5000)
            deadline = time.monotonic() + 60
            while len(load.answers) < 150 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(load.answers) >= 150, load.failures[:5]
            server.process.send_signal(signal.SIGTERM)  # to `bentoml serve`, as a supervisor would
            assert server.process.wait(60) is not None
            stop.set()
            for thread in threads:
                thread.join(30)
        answered = [a["request_id"] for a in load.answers]
        logged = read_predictions(connect(url), "churn", columns=["request_id"])["request_id"]
        assert logged.is_unique
        missing = set(answered) - set(logged)
        assert not missing, f"{len(missing)} of {len(answered)} answered requests are not in the log"
        assert len(answered) >= 150
