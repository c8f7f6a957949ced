"""Serving throughput and latency: ours in single, A/B and shadow mode, bare BentoML, `mlflow models serve`.

Why: the prediction service routes, batches and logs every answer; a user would compare
it with the smallest BentoML service that calls the model (what the extras cost) and
with ``mlflow models serve`` (what they would run instead). This script registers the
churn champion and a challenger in a throw-away ``MLOPS_HOME`` (the shipped config,
20,000 rows, trained with the platform's own training code), serves them three ways on
127.0.0.1 (2 workers each, ``OMP_NUM_THREADS=1``), checks every server answers the
same probability for the same record, then drives each with ``wrk`` (a C load
generator; its own CPU is recorded to show it is not the bottleneck) at 1, 16 and 64
concurrent connections:

- ours, ``single``: the champion answers, every answer logged to the prediction log;
- ours, ``ab``: a 90/10 experiment split by a hash of the entity id (the targets);
- ours, ``shadow``: the champion answers, the challenger scores every request too;
- bare BentoML (``benchmarks/bare_service.py``): one ``predict_proba`` per request;
- ``mlflow models serve`` of the champion (the client computes the derived features);
- ours, ``ab (sklearn path)``: the same A/B service with ``MLOPS_COMPILED_SCORING=0``, so
  the same versions are scored by their sklearn pipelines instead of their verified
  compiled forms (the compiled-scoring issue's side-by-side).

In process, one record (and a batch of 64) is scored both ways by the champion the
service loads: its verified compiled form and its sklearn pipeline.

Any answer other than 200 counts as an error (a 503 shed by a batching queue too).

    .venv/bin/python benchmarks/serving.py           # full run, writes results/serving.json
    .venv/bin/python benchmarks/serving.py --quick   # short runs, same table, under a minute

Run full runs one at a time: ``flock /tmp/mlops-bench.lock .venv/bin/python benchmarks/serving.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
from machine import machine_info

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULT_PATH = PROJECT_ROOT / "benchmarks" / "results" / "serving.json"
DATASET = "churn"
ADMIN_TOKEN = "benchmark-admin-token"
WORKERS = 2
CLIENTS = (1, 16, 64)
PACKAGES = ("bentoml", "mlflow", "scikit-learn", "numpy", "pandas", "uvicorn", "sqlalchemy")
JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class Plan:
    mode: str
    duration_s: int  # wrk takes whole seconds
    warmup_s: int
    in_process_calls: int
    records: int = 500
    server_start_timeout_s: float = 180.0

    @classmethod
    def for_mode(cls, quick: bool) -> Plan:
        if quick:
            return cls("quick", duration_s=2, warmup_s=1, in_process_calls=500)
        return cls("full", duration_s=10, warmup_s=2, in_process_calls=5000)


@dataclass
class Row:
    system: str
    clients: int
    requests: int
    errors: int
    non_2xx: int
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_ms: float       # CPU of the server's processes per answered request: robust to a busy machine
    wrk_cpu_share: float       # of one core, over the run: far below 1 means wrk was not the bottleneck
    other_cpu_cores: float     # used meanwhile by processes not started here: > 0.25 means a noisy machine


# Setting up: two registered versions --------------------------------------------------------------

def register_versions(settings, config) -> tuple[dict[str, str], pd.DataFrame]:
    """The champion (config as shipped) and a challenger (other parameters), trained as the pipeline does."""
    from registered import register_trained

    from mlops_assets.data.sources import load_source
    from mlops_assets.features.engineering import build_feature_table
    from mlops_assets.features.training_set import time_split

    rows = time_split(build_feature_table(load_source(config), config), config)
    challenger_params = {**config.model.params, "learning_rate": 0.15, "max_leaf_nodes": 15}
    versions = {}
    for alias, params in (("champion", config.model.params), ("challenger", challenger_params)):
        variant = config.model_copy(update={"model": config.model.model_copy(update={"params": params})})
        versions[alias] = register_trained(settings, variant, rows, alias)
    return versions, rows


def sample_records(config, rows: pd.DataFrame, count: int) -> list[dict]:
    """Real test-split records as a client sends them, each with its own entity id."""
    from mlops_assets.demo import sample_requests

    return [s["record"] for s in sample_requests(config, rows, count)]


# Servers ----------------------------------------------------------------------------------------

@contextmanager
def servers(settings, plan: Plan) -> Iterator[dict]:
    """Ours (compiled and sklearn scoring), bare BentoML and mlflow on free ports, started together (their imports overlap), all stopped after."""
    from mlops_assets.serving import RunningServer, free_port, serve_command, server_environment, stop_process_group
    from mlops_assets.serving import wait_ready

    bentoml = str(Path(sys.executable).with_name("bentoml"))
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    ports = {name: free_port() for name in ("ours", "ours_sklearn", "bare", "mlflow")}
    commands = {
        "ours": serve_command("127.0.0.1", ports["ours"]),
        "ours_sklearn": serve_command("127.0.0.1", ports["ours_sklearn"]),
        "bare": [bentoml, "serve", "bare_service:BarePredictor", "--working-dir", str(PROJECT_ROOT / "benchmarks"),
                 "--host", "127.0.0.1", "--port", str(ports["bare"])],
        "mlflow": [mlflow, "models", "serve", "-m", f"models:/{DATASET}_model@champion", "--env-manager", "local",
                   "--host", "127.0.0.1", "--port", str(ports["mlflow"]), "--workers", str(WORKERS)],
    }
    probes = {"ours": "/readyz", "ours_sklearn": "/readyz", "bare": "/readyz", "mlflow": "/ping"}
    only = {"ours_sklearn": {"MLOPS_COMPILED_SCORING": "0"}}
    # mlflow runs `exec uvicorn ...` through bash: without the venv's bin on PATH it is "not found".
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    environment = {**server_environment(settings, WORKERS), "PATH": path, "PYTHONPATH": str(PROJECT_ROOT),
                   "MLOPS_ADMIN_TOKEN": ADMIN_TOKEN}
    (settings.home / "logs").mkdir(parents=True, exist_ok=True)
    running: dict[str, RunningServer] = {}
    try:
        for name, command in commands.items():
            log_path = settings.home / "logs" / f"{name}.log"
            with log_path.open("w") as log:
                process = subprocess.Popen(command, cwd=PROJECT_ROOT, env={**environment, **only.get(name, {})}, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
            running[name] = RunningServer(f"http://127.0.0.1:{ports[name]}", process, log_path)
        for name, server in running.items():
            wait_ready(server, plan.server_start_timeout_s, probe=probes[name])
        yield running
    finally:
        for server in running.values():
            stop_process_group(server.process)


# Load -------------------------------------------------------------------------------------------

WRK_SCRIPT = """
local bodies = {BODIES}
local counter = 0
local path = "{PATH}"
local headers = {{["Content-Type"] = "application/json"}}
function setup(thread)
  thread:set("offset", math.random(1, #bodies))
end
function init(args)
  counter = tonumber(offset) or 0
end
function request()
  counter = counter + 1
  return wrk.format("POST", path, headers, bodies[(counter % #bodies) + 1])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\\n', summary.requests,
    summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def wrk_script(path: str, bodies: list[str], folder: Path) -> Path:
    script = folder / f"wrk-{abs(hash((path, bodies[0]))) % 10**8}.lua"
    script.write_text(WRK_SCRIPT.format(BODIES="{" + ",".join(lua_string(b) for b in bodies) + "}", PATH=path))
    return script


def own_cpu_seconds() -> float:
    total = 0.0
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            pass
    return total


def busy_cpu_seconds() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def run_wrk(url: str, script: Path, clients: int, duration: float) -> tuple[dict, float]:
    """wrk's summary and its own CPU seconds (from its rusage)."""
    threads = 1 if clients == 1 else 2
    command = ["wrk", f"-t{threads}", f"-c{clients}", f"-d{duration}s", "--timeout", "10s", "-s", str(script), url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    line = next((ln for ln in output.splitlines() if ln.startswith("WRK_JSON ")), None)
    if process.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{output[-2000:]}")
    return json.loads(line.removeprefix("WRK_JSON ")), usage.ru_utime + usage.ru_stime


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a server: its process and every worker it started."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return total
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def measure(system: str, url: str, pid: int, path: str, bodies: list[str], clients: int, plan: Plan,
            folder: Path) -> Row:
    script = wrk_script(path, bodies, folder)
    run_wrk(url, script, clients, plan.warmup_s)
    own, busy, started = own_cpu_seconds(), busy_cpu_seconds(), time.perf_counter()
    server_cpu = tree_cpu_seconds(pid)
    summary, wrk_cpu = run_wrk(url, script, clients, plan.duration_s)
    server_cpu = tree_cpu_seconds(pid) - server_cpu
    elapsed = time.perf_counter() - started
    other = max(0.0, (busy_cpu_seconds() - busy) - (own_cpu_seconds() - own)) / elapsed
    seconds = summary["duration_us"] / 1e6
    errors = summary["connect"] + summary["read"] + summary["write"] + summary["timeout"] + summary["status"]
    answered = max(1, summary["requests"] - summary["status"])
    return Row(system, clients, summary["requests"], errors, summary["status"],
               round(summary["requests"] / seconds, 1), round(summary["p50"] / 1000, 3), round(summary["p90"] / 1000, 3),
               round(summary["p99"] / 1000, 3), round(summary["max"] / 1000, 3), round(server_cpu / answered * 1000, 3),
               round(wrk_cpu / seconds, 3), round(other, 2))


# Checks before timing ---------------------------------------------------------------------------

def model_columns(config, record: dict) -> dict:
    from mlops_assets.features.engineering import derive_features

    raw = {k: v for k, v in record.items() if k != "entity_id"}
    row = derive_features(pd.DataFrame([raw]), config)[config.model_features].iloc[0]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def served_paths(url: str) -> dict:
    """Which scoring path each loaded version uses, as GET /models reports it."""
    models = httpx.get(f"{url}/models", timeout=30).json()["datasets"][DATASET]
    return {alias: models[alias]["inference_path"] for alias in ("champion", "challenger") if models.get(alias)}


def admin(url: str, path: str, body: dict) -> dict:
    response = httpx.post(f"{url}{path}", json=body, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=60)
    response.raise_for_status()
    return response.json()


def settle_mode(url: str, bodies: list[str], mode: str, versions: dict[str, str]) -> dict:
    """Wait until both workers serve ``mode`` (each polls the state every second); returns what answered."""
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=30) as client:
        while True:
            answers = [client.post(f"{url}/predict", content=b, headers=JSON_HEADERS).json() for b in bodies[:60]]
            variants = {a["variant"] for a in answers}
            experiments = {a["experiment_id"] for a in answers}
            ready = {"single": variants == {"champion"} and experiments == {None},
                     "ab": variants == {"champion", "challenger"},
                     "shadow": variants == {"champion"} and experiments == {"bench"}}[mode]
            if ready:
                return {"variants": sorted(variants), "versions": sorted({a["model_version"] for a in answers})}
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not switch to {mode}: {variants}, {experiments}")
            time.sleep(0.5)


def check_scores(urls: dict[str, str], config, records: list[dict], ours_bodies: list[str], expected: np.ndarray) -> dict:
    """Every server answers 200 and the champion's probability for the same records (before any timing)."""
    ours, ours_sklearn, bare, mlflow = [], [], [], []
    with httpx.Client(timeout=30) as client:
        for record, body in zip(records[:20], ours_bodies[:20]):
            ours.append(client.post(f"{urls['ours']}/predict", content=body, headers=JSON_HEADERS).json()["score"])
            ours_sklearn.append(client.post(f"{urls['ours_sklearn']}/predict", content=body,
                                            headers=JSON_HEADERS).json()["score"])
            bare.append(client.post(f"{urls['bare']}/predict", content=body, headers=JSON_HEADERS).json()["score"])
            answer = client.post(f"{urls['mlflow']}/invocations", json={"dataframe_records": [model_columns(config, record)]})
            mlflow.append(float(answer.json()["predictions"][0][1]))
    diffs = {name: float(np.max(np.abs(np.asarray(values) - expected[:20])))
             for name, values in (("ours", ours), ("bare", bare), ("mlflow", mlflow))}
    if max(diffs.values()) > 1e-9:
        raise RuntimeError(f"a server answers other scores than the champion in process: {diffs}")
    return {"records": 20, "max_abs_diff_vs_in_process": diffs}


# In process: the two scoring paths of one version ------------------------------------------------

@dataclass
class InProcessRow:
    path: str
    records_per_call: int
    calls: int
    p50_us: float
    p99_us: float


def percentile_us(seconds: list[float], q: float) -> float:
    return round(float(np.percentile(seconds, q)) * 1e6, 1)


def in_process_rows(settings, config, records: list[dict], calls: int) -> tuple[list[InProcessRow], str]:
    """The champion as the service loads it: its verified compiled form vs its sklearn pipeline, same records."""
    from mlops_assets.serving.deployment import serving_inference_path
    from mlops_assets.training.registry import load_champion

    served = load_champion(settings, config)
    inference = serving_inference_path(settings, served)
    if inference.compiled is None:
        raise RuntimeError(f"the champion is not served compiled: {inference.reason}")
    paths = {"compiled": inference.compiled.score_records, "sklearn": served.score_records}
    raw = [{k: v for k, v in r.items() if k != "entity_id"} for r in records]
    rows = []
    for size in (1, 64):
        batches = [raw[i:i + size] for i in range(0, len(raw) - size + 1, size)] or [raw[:size]]
        for name, score in paths.items():
            for batch in batches[:20]:  # warm-up
                score(batch)
            timings = []
            for i in range(calls if size == 1 else max(50, calls // 10)):
                batch = batches[i % len(batches)]
                before = time.perf_counter()
                score(batch)
                timings.append(time.perf_counter() - before)
            rows.append(InProcessRow(name, size, len(timings), percentile_us(timings, 50), percentile_us(timings, 99)))
    return rows, inference.reason


def in_process_table(rows: list[InProcessRow]) -> str:
    header = f"{'scoring path':<14} {'records/call':>12} {'calls':>6} {'p50 us':>9} {'p99 us':>9}"
    return "\n".join([header, "-" * len(header)] + [
        f"{r.path:<14} {r.records_per_call:>12} {r.calls:>6} {r.p50_us:>9.1f} {r.p99_us:>9.1f}" for r in rows])


# Run --------------------------------------------------------------------------------------------

def table(rows: list[Row]) -> str:
    header = (f"{'system':<22} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>6} "
              f"{'cpu ms/req':>10} {'wrk cpu':>7} {'other cpu':>9}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r.system:<22} {r.clients:>7} {r.requests_per_s:>8.1f} {r.p50_ms:>8.2f} {r.p90_ms:>8.2f} "
                     f"{r.p99_ms:>8.2f} {r.errors:>6} {r.server_cpu_ms:>10.3f} {r.wrk_cpu_share:>7.2f} "
                     f"{r.other_cpu_cores:>9.2f}")
    return "\n".join(lines)


SKLEARN_AB = "ours ab (sklearn path)"


def targets(rows: list[Row], in_process: list[InProcessRow]) -> list[dict]:
    def row(system: str, clients: int) -> Row:
        return next(r for r in rows if r.system == system and r.clients == clients)

    compiled_one = next(r for r in in_process if r.path == "compiled" and r.records_per_call == 1)
    ab64, ab1, bare1, mlflow64 = row("ours ab", 64), row("ours ab", 1), row("bare bentoml", 1), row("mlflow models serve", 64)

    def target(name: str, measured: float, goal: float, unit: str, met: bool) -> dict:
        return {"name": name, "measured": measured, "goal": goal, "unit": unit, "met": met}

    ratio = round(ab1.p50_ms / bare1.p50_ms, 3)
    return [
        target("64 clients, A/B + logging: throughput", ab64.requests_per_s, 1800, "requests/s",
               ab64.requests_per_s >= 1800),
        target("64 clients, A/B + logging: errors (non-200 and 503 sheds included)", ab64.errors, 0, "requests",
               ab64.errors == 0),
        target("64 clients, A/B + logging: p99 latency", ab64.p99_ms, 500, "ms (below)", ab64.p99_ms < 500),
        target("1 client, A/B + logging: p99 latency", ab1.p99_ms, 10, "ms (below)", ab1.p99_ms < 10),
        target("1 client, A/B + logging: p50 over bare BentoML p50", ratio, 1.3, "ratio (below)", ratio < 1.3),
        target("64 clients: A/B + logging over mlflow models serve (about 5x)",
               round(ab64.requests_per_s / mlflow64.requests_per_s, 2), 5, "ratio",
               ab64.requests_per_s / mlflow64.requests_per_s >= 5),
        # The compiled-scoring issue: the same A/B service, compiled scoring on (rows "ours ab").
        target("compiled, in process: one record p99", compiled_one.p99_us, 100, "us (below)",
               compiled_one.p99_us < 100),
        target("compiled, 1 client, A/B + logging over HTTP: p50", ab1.p50_ms, 1.5, "ms (below)", ab1.p50_ms < 1.5),
        target("compiled, 1 client, A/B + logging over HTTP: p99", ab1.p99_ms, 3, "ms (below)", ab1.p99_ms < 3),
        target("compiled, 64 clients, A/B + logging: throughput no lower than the serving issue's 1800",
               ab64.requests_per_s, 1800, "requests/s", ab64.requests_per_s >= 1800),
    ]


def run(plan: Plan, echo) -> dict:
    from mlops_assets.config import load_dataset_configs
    from mlops_assets.serving.prediction_log import connect, predictions
    from mlops_assets.settings import use_home
    from mlops_assets.training.registry import load_champion

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as folder, \
            use_home(Path(folder) / "home", PROJECT_ROOT / "configs") as settings:
        config = next(c for c in load_dataset_configs(settings.configs) if c.name == DATASET)
        if plan.mode == "quick":  # training is not what is measured: a smaller model trains in seconds
            config = config.model_copy(update={
                "source": config.source.model_copy(update={"rows": 6000}),
                "model": config.model.model_copy(update={"params": {**config.model.params, "max_iter": 60}})})
        config_without_experiment = config.experiment is None
        echo(f"registering the {DATASET} champion and a challenger ({config.source.rows} rows) in {settings.home} ...")
        versions, training_rows = register_versions(settings, config)
        records = sample_records(config, training_rows, plan.records)
        ours_bodies = [json.dumps({"dataset": DATASET, "record": r}) for r in records]
        mlflow_bodies = [json.dumps({"dataframe_records": [model_columns(config, r)]}) for r in records]
        champion = load_champion(settings, config)
        expected = np.concatenate([champion.score(pd.DataFrame([{k: v for k, v in r.items() if k != "entity_id"}]))
                                   for r in records[:20]])
        in_process, inference_reason = in_process_rows(settings, config, records, plan.in_process_calls)
        echo(f"  in process, champion {versions['champion']} ({inference_reason}):")
        echo("    " + in_process_table(in_process).replace("\n", "\n    "))
        setup_s = round(time.perf_counter() - started, 1)
        echo(f"  versions {versions} registered in {setup_s} s; starting the four servers ...")
        rows: list[Row] = []
        with servers(settings, plan) as running:
            urls = {name: server.url for name, server in running.items()}
            pids = {name: server.process.pid for name, server in running.items()}
            start_s = round(time.perf_counter() - started - setup_s, 1)
            if config.experiment is not None:  # the shipped config declares one: single mode first
                admin(urls["ours"], "/admin/experiment/stop", {"dataset": DATASET, "note": "benchmark: single first"})
            for name in ("ours", "ours_sklearn"):
                settle_mode(urls[name], ours_bodies, "single", versions)
            check = check_scores(urls, config, records, ours_bodies, expected)
            check["inference_paths"] = {name: served_paths(urls[name]) for name in ("ours", "ours_sklearn")}
            echo(f"  servers ready in {start_s} s; scores equal the in-process champion "
                 f"(max diff {max(check['max_abs_diff_vs_in_process'].values()):.1e})")
            modes = {}
            for mode in ("single", "ab", "shadow"):
                if mode == "ab":
                    admin(urls["ours"], "/admin/experiment/start",
                          {"dataset": DATASET, "experiment_id": "bench", "mode": "ab", "challenger_percent": 10})
                elif mode == "shadow":
                    admin(urls["ours"], "/admin/experiment/start", {"dataset": DATASET, "mode": "shadow"})
                modes[mode] = settle_mode(urls["ours"], ours_bodies, mode, versions)
                for clients in CLIENTS:
                    rows.append(measure(f"ours {mode}", urls["ours"], pids["ours"], "/predict", ours_bodies, clients, plan, Path(folder)))
                    echo(f"  {table(rows[-1:]).splitlines()[-1]}")
                if mode == "ab":  # the same service and versions, scored by the sklearn pipelines
                    settle_mode(urls["ours_sklearn"], ours_bodies, mode, versions)
                    for clients in CLIENTS:
                        rows.append(measure(SKLEARN_AB, urls["ours_sklearn"], pids["ours_sklearn"], "/predict",
                                            ours_bodies, clients, plan, Path(folder)))
                        echo(f"  {table(rows[-1:]).splitlines()[-1]}")
            for clients in CLIENTS:
                rows.append(measure("bare bentoml", urls["bare"], pids["bare"], "/predict", ours_bodies, clients, plan, Path(folder)))
                echo(f"  {table(rows[-1:]).splitlines()[-1]}")
            for clients in CLIENTS:
                rows.append(measure("mlflow models serve", urls["mlflow"], pids["mlflow"], "/invocations", mlflow_bodies, clients, plan,
                                    Path(folder)))
                echo(f"  {table(rows[-1:]).splitlines()[-1]}")
        engine = connect(settings.prediction_log_url)
        with engine.connect() as connection:
            logged = connection.execute(predictions.select().with_only_columns(
                predictions.c.shadow, predictions.c.id).order_by(None)).all()
        engine.dispose()
        answered_by_ours = sum(r.requests - r.non_2xx for r in rows if r.system.startswith("ours"))
    return {
        "benchmark": "serving",
        "mode": plan.mode,
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "parameters": {**asdict(plan), "dataset": DATASET, "source_rows": config.source.rows, "workers": WORKERS,
                       "omp_num_threads": 1, "clients": list(CLIENTS), "load_generator": "wrk 4.1 (-t1 at 1 client, "
                       "-t2 otherwise), keep-alive, --timeout 10s", "versions": versions,
                       "ab_split": "90/10 by SHA-256 of (experiment id, entity id)",
                       "config_declares_experiment": not config_without_experiment},
        "machine": machine_info(PACKAGES),
        "correctness": {**check, "modes": modes},
        "prediction_log": {"rows": len(logged), "shadow_rows": sum(1 for r in logged if r[0]),
                           "answers_counted_by_wrk": answered_by_ours,
                           "note": "rows also include warm-up, checks and requests in flight when wrk stopped"},
        "in_process": {"version": versions["champion"], "inference_check": inference_reason,
                       "results": [asdict(r) for r in in_process]},
        "wall_time_s": round(time.perf_counter() - started, 1),
        "results": [asdict(r) for r in rows],
        "targets": targets(rows, in_process),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{Plan.for_mode(True).duration_s} s per point")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"where to write the JSON (default {RESULT_PATH.relative_to(PROJECT_ROOT)})")
    args = parser.parse_args(argv)
    plan = Plan.for_mode(args.quick)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", message=".*is currently in beta")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # every finally runs: no server outlives us
    result = run(plan, echo=lambda line: print(line, flush=True))
    rows = [Row(**r) for r in result["results"]]
    print(f"\nin process, champion v{result['in_process']['version']} ({result['in_process']['inference_check']}):")
    print(in_process_table([InProcessRow(**r) for r in result["in_process"]["results"]]))
    print(f"\nserving, {result['mode']} run: {plan.duration_s} s per point after {plan.warmup_s} s warm-up, "
          f"{WORKERS} workers per server, OMP_NUM_THREADS=1; GET /models: "
          f"{result['correctness']['inference_paths']}")
    print(table(rows))
    noisy = [f"{r.system}/{r.clients}: {r.other_cpu_cores}" for r in rows if r.other_cpu_cores >= 0.25]
    if noisy:
        print("WARNING: other processes used CPU during " + "; ".join(noisy) + " (cores; figures are pessimistic)")
    print(f"prediction log: {result['prediction_log']['rows']} rows "
          f"({result['prediction_log']['shadow_rows']} shadow) for {result['prediction_log']['answers_counted_by_wrk']} "
          "answers counted by wrk")
    print("\ntargets:")
    for target in result["targets"]:
        print(f"  {'met   ' if target['met'] else 'MISSED'} {target['name']}: {target['measured']} "
              f"(goal {target['goal']} {target['unit']})")
    output = args.output or RESULT_PATH
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwall time {result['wall_time_s']} s; wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
