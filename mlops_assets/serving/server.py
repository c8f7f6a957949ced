"""Starting and stopping the BentoML prediction server (``bento/service.py``) as a child process.

The CLI and the tests both go through here, so they start the server the same way:
on 127.0.0.1 (``bentoml serve`` would otherwise listen on every interface), with the
platform home in its environment and one OpenMP thread per worker.

The worker count travels in ``MLOPS_SERVE_WORKERS``: BentoML 1.4 takes a service's
worker count from the service's own configuration (``@bentoml.service(workers=...)``)
and silently ignores ``bentoml serve --api-workers``, so the service reads the variable.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from mlops_assets.config import DatasetConfig
from mlops_assets.errors import PlatformError
from mlops_assets.settings import PROJECT_ROOT, Settings
from mlops_assets.training.registry import CHAMPION, alias_version, no_champion_reason

SERVICE = "bento.service:MLOpsPredictor"
WORKERS_VARIABLE = "MLOPS_SERVE_WORKERS"


class ServerError(PlatformError, RuntimeError):
    """The server could not start, or a dataset it should serve has no champion."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_servable(settings: Settings, configs: list[DatasetConfig]) -> list[str]:
    """Datasets that have a champion; fail fast if none has (the service would restart in a loop)."""
    ready = [c.name for c in configs if alias_version(settings, c, CHAMPION) is not None]
    if not ready:
        reasons = "; ".join(no_champion_reason(settings, c) for c in configs)
        raise ServerError(f"nothing to serve: {reasons}")
    return ready


def check_prediction_log(settings: Settings) -> None:
    """Fail fast when the prediction log database cannot be opened: every worker would fail at start."""
    import sqlalchemy as sa

    from mlops_assets.serving.prediction_log import connect

    try:
        connect(settings.prediction_log_url).dispose()
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        url = sa.engine.make_url(settings.prediction_log_url).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
        raise ServerError(f"the prediction log database {url} cannot be used ({reason}); "
                          "fix MLOPS_PREDICTION_LOG_URL or the database") from exc


def serve_command(host: str, port: int) -> list[str]:
    """``bentoml serve`` for our service; the worker count is in the environment (``server_environment``)."""
    bentoml = Path(sys.executable).with_name("bentoml")
    return [str(bentoml), "serve", SERVICE, "--working-dir", str(PROJECT_ROOT), "--host", host, "--port", str(port)]


def server_environment(settings: Settings, workers: int = 1) -> dict[str, str]:
    if workers < 1:
        raise ServerError(f"--workers must be at least 1, got {workers}")
    return {**os.environ, **settings.environ(), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            WORKERS_VARIABLE: str(workers)}


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def wait_ready(server: RunningServer, timeout: float, probe: str = "/readyz") -> None:
    """Until ``probe`` answers 200; a server that exits or stays unready is an error with its log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(f"the server exited with code {server.process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(f"{server.url}{probe}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise ServerError(f"the server was not ready within {timeout:.0f} s:\n{server.log_tail()}")


def stop_process_group(process: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM a process started with ``start_new_session=True`` and its children, then SIGKILL what is left.

    BentoML starts its workers in sessions of their own, out of reach of the group signal:
    they stop when their arbiter does, but a SIGKILLed arbiter would orphan them, so
    whatever descendant is still alive at the end is killed by pid.
    """
    if process.poll() is not None:
        return
    descendants = psutil.Process(process.pid).children(recursive=True)
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
    _, alive = psutil.wait_procs(descendants, timeout=5)
    for leftover in alive:
        leftover.kill()


@contextmanager
def running_server(settings: Settings, configs: list[DatasetConfig], port: int | None = None,
                   workers: int = 1, timeout: float = 600) -> Iterator[RunningServer]:
    """A ready server for the duration of the block, stopped afterwards whatever happens."""
    settings.export()
    check_servable(settings, configs)
    check_prediction_log(settings)
    port = port or free_port()
    log_path = settings.home / "logs" / f"bentoml-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            serve_command("127.0.0.1", port), cwd=PROJECT_ROOT, env=server_environment(settings, workers),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    server = RunningServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_ready(server, timeout)
        yield server
    finally:
        stop_process_group(server.process)
