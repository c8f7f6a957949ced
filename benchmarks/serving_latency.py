"""Serving latency: our BentoML service against `mlflow models serve` of the same champion, in one run.

Why: a user choosing how to serve a registered model would try ``mlflow models serve``
first. This script trains and registers the churn champion in a throw-away
``MLOPS_HOME``, serves it both ways (each on its own 127.0.0.1 port, one worker,
``OMP_NUM_THREADS=1``), checks both answer the same probability, then measures
single-client latency, a 100-record batch and throughput with concurrent clients.
The model alone, in this process without HTTP, is the floor both are compared with.

    .venv/bin/python benchmarks/serving_latency.py           # full run, writes results/serving_latency.json
    .venv/bin/python benchmarks/serving_latency.py --quick   # fewer requests, same table, under a minute

Client and servers share this machine's cores: the figures include the client's own
CPU, as a user's load test on one box would.
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
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
from machine import machine_info
from threadpoolctl import threadpool_limits

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULT_PATH = PROJECT_ROOT / "benchmarks" / "results" / "serving_latency.json"
SHIPPED_CONFIGS = PROJECT_ROOT / "configs"
DATASET = "churn"
JSON_HEADERS = {"content-type": "application/json"}
PACKAGES = ("bentoml", "mlflow", "scikit-learn", "numpy", "pandas", "httpx", "uvicorn", "dagster")


@dataclass(frozen=True)
class Plan:
    """How much to measure; everything here goes into the JSON."""

    mode: str
    sequential_requests: int
    clients: int
    concurrent_requests: int
    warmup: int = 20
    batch_size: int = 100
    sample_records: int = 500
    http_timeout_s: float = 30.0
    noisy_cores: float = 0.25     # other processes using more than this make a measurement noisy
    noisy_retries: int = 2
    quiet_wait_s: float = 120.0   # at most this long waiting for quiet before each measurement
    server_start_timeout_s: float = 120.0

    @classmethod
    def for_mode(cls, quick: bool) -> Plan:
        if quick:
            return cls("quick", sequential_requests=150, clients=4, concurrent_requests=600, noisy_retries=0,
                       quiet_wait_s=0.0)  # quick only reports noise: waiting would break its minute
        return cls("full", sequential_requests=1000, clients=8, concurrent_requests=4000)


@dataclass
class Figures:
    """One row of the table: latency percentiles of the successful requests, rate and errors."""

    system: str
    scenario: str
    clients: int
    records_per_request: int
    requests: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    requests_per_s: float
    elapsed_s: float
    other_cpu_cores: float | None = None  # CPU used meanwhile by processes not ours: nonzero means a noisy machine
    attempts: int = 1
    waited_for_quiet_s: float = 0.0


def summarize(system: str, scenario: str, clients: int, records: int, latencies: list[float], errors: int,
              elapsed: float) -> Figures:
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return Figures(system, scenario, clients, records, len(latencies) + errors, errors, round(float(p50), 3),
                   round(float(p95), 3), round(float(p99), 3), round(float(ms.mean()), 3),
                   round(float(ms.max()), 3), round((len(latencies) + errors) / elapsed, 1), round(elapsed, 3))


# Measuring -------------------------------------------------------------------------------------

def own_cpu_seconds() -> float:
    """CPU time of this process and every process it started (the servers and their workers)."""
    total = 0.0
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def busy_cpu_seconds() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def other_cpu_cores(window_s: float) -> float:
    """Cores kept busy by processes that are not this benchmark or its servers, over ``window_s``."""
    own, busy = own_cpu_seconds(), busy_cpu_seconds()
    time.sleep(window_s)
    return max(0.0, (busy_cpu_seconds() - busy) - (own_cpu_seconds() - own)) / window_s


def wait_for_quiet(plan: Plan) -> float:
    """Seconds spent waiting (bounded by plan.quiet_wait_s) for other processes to leave the CPU alone."""
    started = time.perf_counter()
    while time.perf_counter() - started < plan.quiet_wait_s:
        if other_cpu_cores(2.0) < plan.noisy_cores:
            break
    return round(time.perf_counter() - started, 1)


def observed(measure: Callable[[], Figures], plan: Plan) -> Figures:
    """Runs one measurement, recording how many cores other processes used meanwhile.

    On a shared machine a busy neighbour doubles the figures: a noisy measurement is
    repeated (after waiting for quiet) up to ``plan.noisy_retries`` times.
    """
    waited = 0.0
    for attempt in range(1, plan.noisy_retries + 2):
        waited += wait_for_quiet(plan)
        own, busy, started = own_cpu_seconds(), busy_cpu_seconds(), time.perf_counter()
        figures = measure()
        elapsed = time.perf_counter() - started
        other = max(0.0, (busy_cpu_seconds() - busy) - (own_cpu_seconds() - own)) / elapsed
        figures.other_cpu_cores, figures.attempts, figures.waited_for_quiet_s = round(other, 2), attempt, waited
        if other < plan.noisy_cores:
            break
    return figures


def time_calls(call: Callable[[int], bool], count: int, warmup: int) -> tuple[list[float], int, float]:
    """(latencies of good calls, error count, elapsed) for ``count`` calls in a row after ``warmup``."""
    for i in range(warmup):
        call(i)
    latencies, errors = [], 0
    started = time.perf_counter()
    for i in range(count):
        before = time.perf_counter()
        ok = call(warmup + i)
        if ok:
            latencies.append(time.perf_counter() - before)
        else:
            errors += 1
    return latencies, errors, time.perf_counter() - started


def http_call(client: httpx.Client, url: str, bodies: list[bytes]) -> Callable[[int], bool]:
    """Posts the i-th body (cycling) and says whether the answer was a 200."""
    def call(i: int) -> bool:
        try:
            return client.post(url, content=bodies[i % len(bodies)], headers=JSON_HEADERS).status_code == 200
        except httpx.HTTPError:
            return False
    return call


def sequential_http(system: str, scenario: str, url: str, bodies: list[bytes], records: int, plan: Plan) -> Figures:
    """One client, one keep-alive connection, requests back to back."""
    with httpx.Client(timeout=plan.http_timeout_s) as client:
        latencies, errors, elapsed = time_calls(http_call(client, url, bodies), plan.sequential_requests, plan.warmup)
    return summarize(system, scenario, 1, records, latencies, errors, elapsed)


def concurrent_http(system: str, url: str, bodies: list[bytes], plan: Plan) -> Figures:
    """``plan.clients`` threads, one httpx.Client each, sharing a fixed number of requests."""
    clients, total = plan.clients, plan.concurrent_requests
    shares = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]
    results: list[tuple[list[float], int] | None] = [None] * clients
    start = threading.Barrier(clients + 1, timeout=60)

    def worker(index: int) -> None:
        with httpx.Client(timeout=plan.http_timeout_s) as client:
            call = http_call(client, url, bodies[index:] + bodies[:index])
            for i in range(max(1, plan.warmup // clients)):  # opens the connection before the clock starts
                call(i)
            start.wait()
            latencies, errors, _ = time_calls(call, shares[index], 0)
            results[index] = (latencies, errors)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    deadline = started + 600.0  # bounded even if the server stops answering
    for thread in threads:
        thread.join(max(0.0, deadline - time.perf_counter()))
    elapsed = time.perf_counter() - started
    latencies = [t for r in results if r for t in r[0]]
    errors = sum(r[1] for r in results if r) + sum(shares[i] for i, r in enumerate(results) if r is None)
    return summarize(system, f"1 record, {clients} clients", clients, 1, latencies, errors, elapsed)


# Systems under test ----------------------------------------------------------------------------

def mlflow_command(port: int) -> list[str]:
    mlflow = Path(sys.executable).with_name("mlflow")
    return [str(mlflow), "models", "serve", "-m", f"models:/{DATASET}_model@champion", "--env-manager", "local",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


@contextmanager
def mlflow_server(settings, plan: Plan) -> Iterator[str]:
    """`mlflow models serve` of the champion, ready for the block and stopped (its whole group) afterwards."""
    from mlops_assets.serving import RunningServer, free_port, stop_process_group, wait_ready

    port = free_port()
    log_path = settings.home / "logs" / f"mlflow-serve-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # mlflow runs `exec uvicorn ...` through bash: without the venv's bin on PATH it is "not found".
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, **settings.environ(), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PATH": path}
    with log_path.open("w") as log:
        process = subprocess.Popen(mlflow_command(port), cwd=settings.home, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = RunningServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_ready(server, plan.server_start_timeout_s, probe="/ping")
        yield server.url
    finally:
        stop_process_group(process)


def mlflow_probability(prediction: object) -> float:
    """With pyfunc_predict_fn="predict_proba" a row comes back as [p(0), p(1)]; a bare number is a label."""
    if isinstance(prediction, list):
        return float(prediction[1])
    if isinstance(prediction, dict):
        return float(prediction.get("1", prediction.get(1)))
    raise ValueError(f"not a probability pair: {prediction!r}")


# Inputs ----------------------------------------------------------------------------------------

@dataclass
class Inputs:
    """The same real records in the shape each system wants, serialized before any clock starts."""

    raw: list[dict]            # raw feature columns + entity_id, as our service takes them
    frames: list[pd.DataFrame]  # one-row frames for the in-process model
    model_rows: list[dict]     # model features incl. derived ones, as mlflow serve needs them
    ours_single: list[bytes]
    ours_batch: list[bytes]
    mlflow_single: list[bytes]
    mlflow_batch: list[bytes]
    batch_frames: list[pd.DataFrame]
    client_prep_ms_p50: float  # what a mlflow client pays per record to compute the derived features


def dumps(value: object) -> bytes:
    return json.dumps(value, allow_nan=False).encode()


def model_row(config, record: dict) -> dict:
    """One raw record turned into the model's columns, derived features computed client-side."""
    from mlops_assets.features.engineering import derive_features

    raw = {k: v for k, v in record.items() if k != "entity_id"}
    row = derive_features(pd.DataFrame([raw]), config)[config.model_features].iloc[0]
    return {name: (value.item() if hasattr(value, "item") else value) for name, value in row.items()}


def build_inputs(config, samples: list[dict], batch_size: int) -> Inputs:
    raw = [s["record"] for s in samples]
    features_only = [{k: v for k, v in r.items() if k != "entity_id"} for r in raw]
    prep_times, model_rows = [], []
    for record in raw:
        before = time.perf_counter()
        model_rows.append(model_row(config, record))
        prep_times.append(time.perf_counter() - before)
    batches = [list(range(i, i + batch_size)) for i in range(0, len(raw) - batch_size + 1, batch_size)]
    return Inputs(
        raw=raw,
        frames=[pd.DataFrame([r]) for r in features_only],
        model_rows=model_rows,
        ours_single=[dumps({"dataset": DATASET, "record": r}) for r in raw],
        ours_batch=[dumps({"dataset": DATASET, "records": [raw[i] for i in b]}) for b in batches],
        mlflow_single=[dumps({"dataframe_records": [row]}) for row in model_rows],
        mlflow_batch=[dumps({"dataframe_records": [model_rows[i] for i in b]}) for b in batches],
        batch_frames=[pd.DataFrame([features_only[i] for i in b]) for b in batches],
        client_prep_ms_p50=round(float(np.median(prep_times) * 1000), 3),
    )


# Correctness, before any timing ----------------------------------------------------------------

CHECKED_RECORDS = 20


def check_ours(url: str, inputs: Inputs, expected: np.ndarray, batch_size: int) -> dict:
    """200, a score in [0, 1] equal to the in-process model's, for single records and one batch."""
    scores, statuses = [], set()
    with httpx.Client(timeout=30) as client:
        for body in inputs.ours_single[:CHECKED_RECORDS]:
            response = client.post(f"{url}/predict", content=body, headers=JSON_HEADERS)
            statuses.add(response.status_code)
            scores.append(response.json()["score"] if response.status_code == 200 else float("nan"))
        batch = client.post(f"{url}/predict_batch", content=inputs.ours_batch[0], headers=JSON_HEADERS)
    batch_scores = [p["score"] for p in batch.json()["predictions"]] if batch.status_code == 200 else []
    scores_arr = np.asarray(scores)
    diff = float(np.max(np.abs(scores_arr - expected[:CHECKED_RECORDS])))
    batch_diff = float(np.max(np.abs(np.asarray(batch_scores) - expected[:batch_size]))) if batch_scores else None
    passed = (statuses == {200} and bool(np.all((scores_arr >= 0) & (scores_arr <= 1))) and diff <= 1e-9
              and batch.status_code == 200 and len(batch_scores) == batch_size and batch_diff <= 1e-9)
    return {"records": CHECKED_RECORDS, "statuses": sorted(statuses), "first_score": scores[0],
            "max_abs_diff_vs_in_process": diff, "batch_status": batch.status_code,
            "batch_max_abs_diff_vs_in_process": batch_diff, "scores": scores, "passed": passed}


def check_mlflow(url: str, inputs: Inputs, ours_scores: list[float], expected: np.ndarray, batch_size: int) -> dict:
    """200 and a probability equal to ours (and the in-process model) within 1e-9 for the same records."""
    probabilities, statuses, raw_first = [], set(), None
    with httpx.Client(timeout=30) as client:
        for body in inputs.mlflow_single[:CHECKED_RECORDS]:
            response = client.post(f"{url}/invocations", content=body, headers=JSON_HEADERS)
            statuses.add(response.status_code)
            if response.status_code == 200:
                prediction = response.json()["predictions"][0]
                raw_first = raw_first if raw_first is not None else prediction
                probabilities.append(mlflow_probability(prediction))
            else:
                probabilities.append(float("nan"))
        batch = client.post(f"{url}/invocations", content=inputs.mlflow_batch[0], headers=JSON_HEADERS)
    batch_probabilities = ([mlflow_probability(p) for p in batch.json()["predictions"]]
                           if batch.status_code == 200 else [])
    arr = np.asarray(probabilities)
    diff_ours = float(np.max(np.abs(arr - np.asarray(ours_scores))))
    diff_model = float(np.max(np.abs(arr - expected[:CHECKED_RECORDS])))
    batch_diff = (float(np.max(np.abs(np.asarray(batch_probabilities) - expected[:batch_size])))
                  if batch_probabilities else None)
    passed = (statuses == {200} and diff_ours <= 1e-9 and diff_model <= 1e-9 and batch.status_code == 200
              and len(batch_probabilities) == batch_size and batch_diff <= 1e-9)
    return {"records": CHECKED_RECORDS, "statuses": sorted(statuses), "first_prediction_as_returned": raw_first,
            "max_abs_diff_vs_ours": diff_ours, "max_abs_diff_vs_in_process": diff_model,
            "batch_status": batch.status_code, "batch_max_abs_diff_vs_in_process": batch_diff, "passed": passed}


BAD_INPUTS: dict[str, Callable[[dict], None]] = {
    "missing field (tenure_months)": lambda r: r.pop("tenure_months"),
    "wrong type (monthly_charges='lots')": lambda r: r.update(monthly_charges="lots"),
    "unknown category (contract_type='weekly')": lambda r: r.update(contract_type="weekly"),
    "out of range (tenure_months=-3)": lambda r: r.update(tenure_months=-3),
    "unknown field (favourite_colour)": lambda r: r.update(favourite_colour="blue"),
}


def probe_bad_inputs(url: str, route: str, make_body: Callable[[dict], dict], good: dict) -> dict:
    """What a server answers when one field is wrong: status and the start of the body."""
    answers = {}
    with httpx.Client(timeout=30) as client:
        for name, change in BAD_INPUTS.items():
            record = dict(good)
            change(record)
            response = client.post(f"{url}{route}", content=dumps(make_body(record)), headers=JSON_HEADERS)
            answers[name] = {"status": response.status_code, "body": response.text[:240]}
    return answers


def probe_raw_record(url: str, inputs: Inputs) -> dict:
    """What a client that sends what our service takes (raw columns) gets from mlflow serve."""
    raw = {k: v for k, v in inputs.raw[0].items() if k != "entity_id"}
    response = httpx.post(f"{url}/invocations", content=dumps({"dataframe_records": [raw]}), headers=JSON_HEADERS,
                          timeout=30)
    return {"status": response.status_code, "body": response.text[:240]}


# Machine -------------------------------------------------------------------------------------

# Run -----------------------------------------------------------------------------------------

@contextmanager
def temporary_platform(configs: Path) -> Iterator:
    """A throw-away MLOPS_HOME that every part of the platform (and every child process) points at."""
    from mlops_assets.settings import use_home

    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as home, use_home(Path(home), configs) as settings:
        yield settings


def sequential_in_process(model, frames: list[pd.DataFrame], records: int, scenario: str, plan: Plan) -> Figures:
    def call(i: int) -> bool:
        model.score(frames[i % len(frames)])
        return True

    latencies, errors, elapsed = time_calls(call, plan.sequential_requests, plan.warmup)
    return summarize("model in-process", scenario, 1, records, latencies, errors, elapsed)


def in_process(inputs: Inputs, plan: Plan, model) -> list[Figures]:
    """The champion alone (derive features + predict_proba), one OpenMP thread like the servers."""
    batch = f"{plan.batch_size} records, 1 client"
    with threadpool_limits(limits=1):
        return [
            observed(lambda: sequential_in_process(model, inputs.frames, 1, "1 record, 1 client", plan), plan),
            observed(lambda: sequential_in_process(model, inputs.batch_frames, plan.batch_size, batch, plan), plan),
        ]


def measure_http(system: str, single_url: str, batch_url: str, single: list[bytes], batch: list[bytes],
                 plan: Plan) -> list[Figures]:
    return [
        observed(lambda: sequential_http(system, "1 record, 1 client", single_url, single, 1, plan), plan),
        observed(lambda: sequential_http(system, f"{plan.batch_size} records, 1 client", batch_url, batch,
                                         plan.batch_size, plan), plan),
        observed(lambda: concurrent_http(system, single_url, single, plan), plan),
    ]


def table(rows: list[Figures]) -> str:
    header = f"{'system':<22} {'scenario':<24} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>6}"
    lines = [header, "-" * len(header)]
    for f in rows:
        lines.append(f"{f.system:<22} {f.scenario:<24} {f.p50_ms:>8.2f} {f.p95_ms:>8.2f} {f.p99_ms:>8.2f} "
                     f"{f.requests_per_s:>8.1f} {f.errors:>6}")
    return "\n".join(lines)


def run(plan: Plan, echo: Callable[[str], None]) -> dict:
    """Train, serve both ways, check, measure; returns everything the JSON holds."""
    import dagster as dg

    from mlops_assets.config import load_dataset_configs
    from mlops_assets.demo import sample_requests
    from mlops_assets.pipeline.runs import load_definitions, run_main_job
    from mlops_assets.serving import running_server
    from mlops_assets.training.registry import load_champion

    wall_started = time.perf_counter()
    phases: dict[str, float] = {}
    with temporary_platform(SHIPPED_CONFIGS) as settings:
        config = next(c for c in load_dataset_configs(settings.configs) if c.name == DATASET)
        echo(f"training the {DATASET} champion ({config.source.rows} rows, "
             f"max_iter={config.model.params.get('max_iter')}) in {settings.home} ...")
        started = time.perf_counter()
        summary = run_main_job(settings, log_level="WARNING")
        phases["training_s"] = round(time.perf_counter() - started, 1)
        if not summary.success:
            raise RuntimeError(f"the main job failed:\n{summary.table()}")

        training_set = load_definitions(settings).load_asset_value([DATASET, "training_set"],
                                                                   instance=dg.DagsterInstance.get())
        samples = sample_requests(config, training_set, plan.sample_records)
        inputs = build_inputs(config, samples, plan.batch_size)
        champion = load_champion(settings, config)
        with threadpool_limits(limits=1):
            expected = np.concatenate([champion.score(f) for f in inputs.frames])
        echo(f"  trained in {phases['training_s']} s; {len(inputs.raw)} real test records, "
             f"champion v{champion.version}")

        load_before = machine_info(())["load_average"]
        rows = in_process(inputs, plan, champion)

        started = time.perf_counter()
        with running_server(settings, [config], workers=1, timeout=plan.server_start_timeout_s) as server:
            phases["ours_start_s"] = round(time.perf_counter() - started, 1)
            ours_check = check_ours(server.url, inputs, expected, plan.batch_size)
            if not ours_check["passed"]:
                raise RuntimeError(f"our service answered wrongly, not timing it: {ours_check}")
            echo(f"  ours checked: {ours_check['records']} records and a batch of {plan.batch_size} -> 200, "
                 f"scores equal the in-process model's (max diff {ours_check['max_abs_diff_vs_in_process']:.1e})")
            ours_bad = probe_bad_inputs(server.url, "/predict", lambda r: {"dataset": DATASET, "record": r},
                                        inputs.raw[0])
            rows += measure_http("bentoml (ours)", f"{server.url}/predict", f"{server.url}/predict_batch",
                                 inputs.ours_single, inputs.ours_batch, plan)
        phases["ours_total_s"] = round(time.perf_counter() - started, 1)
        echo(f"  ours measured ({phases['ours_total_s']} s)")

        started = time.perf_counter()
        with mlflow_server(settings, plan) as url:
            phases["mlflow_start_s"] = round(time.perf_counter() - started, 1)
            mlflow_check = check_mlflow(url, inputs, ours_check.pop("scores"), expected, plan.batch_size)
            if not mlflow_check["passed"]:
                raise RuntimeError(f"mlflow models serve answered wrongly, not timing it: {mlflow_check}")
            echo(f"  mlflow checked: 200, probabilities equal ours "
                 f"(max diff {mlflow_check['max_abs_diff_vs_ours']:.1e})")
            mlflow_bad = probe_bad_inputs(url, "/invocations", lambda r: {"dataframe_records": [r]},
                                          inputs.model_rows[0])
            mlflow_bad["raw columns only (derived features left to the server)"] = probe_raw_record(url, inputs)
            rows += measure_http("mlflow models serve", f"{url}/invocations", f"{url}/invocations",
                                 inputs.mlflow_single, inputs.mlflow_batch, plan)
        phases["mlflow_total_s"] = round(time.perf_counter() - started, 1)
        echo(f"  mlflow measured ({phases['mlflow_total_s']} s)")
        load_after = machine_info(())["load_average"]
    phases["run_s"] = round(time.perf_counter() - wall_started, 1)
    phases["process_s"] = round(time.time() - psutil.Process().create_time(), 1)  # imports included
    return {
        "benchmark": "serving_latency",
        "mode": plan.mode,
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "parameters": {**asdict(plan), "dataset": DATASET, "source_rows": config.source.rows,
                       "model_params": config.model.params, "workers_per_server": 1, "omp_num_threads": 1,
                       "checked_records": CHECKED_RECORDS,
                       "systems": {
                           "bentoml (ours)": "bentoml serve bento.service:MLOpsPredictor; POST /predict "
                                             '{"dataset", "record": raw columns}; POST /predict_batch',
                           "mlflow models serve": f"{' '.join(mlflow_command(0)[1:])} (port varies); "
                                                  'POST /invocations {"dataframe_records": [model columns]}',
                           "model in-process": "load_champion(...).score(frame): derive_features + predict_proba",
                       }},
        "machine": {**machine_info(PACKAGES), "load_average_before": load_before, "load_average_after": load_after},
        "wall_time_s": phases,
        "correctness": {"ours": ours_check, "mlflow": mlflow_check},
        "bad_input": {"ours": ours_bad, "mlflow": mlflow_bad},
        "mlflow_client_feature_prep_ms_p50": inputs.client_prep_ms_p50,
        "notes": [
            "mlflow models serve needs the client to send the model's columns, derived features included: "
            f"the client computes them (derive_features, ~{inputs.client_prep_ms_p50:.1f} ms per record in pandas, "
            "not included in the mlflow figures since the bodies are serialized before timing).",
            "mlflow models serve checks the input only against the logged signature (column presence and "
            "type); it knows nothing of allowed categories or ranges: see bad_input.",
            "Both modes train from the shipped configs/churn.yaml (quick only sends fewer requests): training "
            "takes ~10 s on a quiet machine, nearly all of it fixed per-run cost, so a smaller config would not "
            "make quick faster.",
            "Latencies are measured by the client on the same machine as the server; percentiles are over "
            "successful requests, req/s over all requests and the wall time of the loop.",
        ],
        "results": [asdict(r) for r in rows],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="150 sequential / 600 concurrent requests (under a minute)")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"where to write the JSON (default {RESULT_PATH.relative_to(PROJECT_ROOT)})")
    args = parser.parse_args(argv)
    plan = Plan.for_mode(args.quick)

    # Dagster's beta notices and MLflow's schema hint would bury the table.
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", message=".*is currently in beta")
    # A SIGTERM becomes SystemExit so every finally runs and no server outlives us.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(plan, echo=lambda line: print(line, flush=True))
    rows = [Figures(**r) for r in result["results"]]
    print()
    print(f"serving latency, {result['mode']} run: {plan.sequential_requests} sequential requests after "
          f"{plan.warmup} warm-up; {plan.concurrent_requests} requests over {plan.clients} clients; "
          f"1 worker each, OMP_NUM_THREADS=1")
    print(table(rows))
    noisy = [f"{r.system} / {r.scenario}: {r.other_cpu_cores}" for r in rows
             if (r.other_cpu_cores or 0) >= plan.noisy_cores]
    if noisy:
        print("WARNING: other processes used CPU during: " + "; ".join(noisy) + " cores (figures are pessimistic)")
    print()
    for system, answers in result["bad_input"].items():
        print(f"bad input -> {system}:")
        for case, answer in answers.items():
            print(f"  {case:<44} {answer['status']}  {answer['body'][:90]!r}")
    print()
    for note in result["notes"]:
        print(f"note: {note}")
    output = args.output or RESULT_PATH
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    phases = result["wall_time_s"]
    print(f"\nwall time {phases['process_s']} s including imports (training {phases['training_s']} s, "
          f"server starts {phases['ours_start_s']} + {phases['mlflow_start_s']} s); wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
