"""What does Dagster cost? The main job's wall time as the churn dataset grows, next to a plain script.

The alternative a user would pick is the same steps as a plain Python script: call the
same domain functions in order, keep every value in memory, log to MLflow directly. Both
runners call the same functions, so the difference is what Dagster's lineage, checks,
metadata and IO manager add: run and event storage, asset values pickled and read back
between steps, table fingerprints and previews, the MLflow run per Dagster run.

Every measurement runs in its own child process (this script with ``--measure``) and its
own fresh MLOPS_HOME, so imports, caches and memory never leak from one to the next.

    .venv/bin/python benchmarks/main_job.py            # full: 20,000 / 200,000 / 1,000,000 rows
    .venv/bin/python benchmarks/main_job.py --quick    # 5,000 rows and 8 tuning trials, the same table, about a minute
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from machine import machine_info, meminfo_kb, warm_memory
from mlops_assets.settings import HOME_VARIABLES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "main_job.json"
CHURN_CONFIG = PROJECT_ROOT / "configs" / "churn.yaml"

RUNNERS = ("dagster", "plain")
FULL_SIZES = (20_000, 200_000, 1_000_000)
QUICK_SIZES = (5_000,)
QUICK_TRIALS = 8  # the shipped 20 trials made --quick take two minutes; the table is the same
# The brief's budget for one runner at one size; a slower measurement is reported as a finding.
BUDGET_SECONDS = 360
FULL_TIMEOUT_SECONDS = 600
QUICK_TIMEOUT_SECONDS = 240
# A child is killed when its RSS passes this share of the machine's available memory.
MEMORY_CAP_SHARE = 0.8
POLL_SECONDS = 0.2
NOISY_CORES = 0.25  # other processes' CPU (in cores) above which a measurement is flagged
LOG_TAIL_LINES = 25
DAGSTER_LOG_LEVEL = "WARNING"  # what `mlops demo` uses; INFO adds console logging to every event
PACKAGES = ("dagster", "dagster-mlflow", "mlflow", "scikit-learn", "pandas", "numpy", "evidently", "pandera")


# --------------------------------------------------------------------------------------------
# Child side: one runner, one size, one fresh home. Prints nothing useful; writes a JSON file.
# --------------------------------------------------------------------------------------------

def peak_rss_mb() -> float:
    """Peak resident set of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_dagster() -> dict:
    """The main job exactly as `mlops demo` runs it (run_main_job), then its step stats from the instance."""
    started = time.perf_counter()
    import dagster as dg

    dagster_import = time.perf_counter() - started
    # Everything run_main_job will import: the asset modules, dagster-mlflow, and through them
    # pandas, pandera, scikit-learn, mlflow, evidently, matplotlib.
    import definitions  # noqa: F401  (builds the Definitions once at import, as the code location does)
    from mlops_assets.pipeline.runs import run_main_job
    from mlops_assets.settings import Settings

    import_s = time.perf_counter() - started
    rss_after_import = peak_rss_mb()

    started = time.perf_counter()
    settings = Settings.from_env()
    settings.export()
    instance = dg.DagsterInstance.get()
    summary = run_main_job(settings, instance=instance, log_level=DAGSTER_LOG_LEVEL)
    job_s = time.perf_counter() - started

    steps = {}
    for stat in instance.get_run_step_stats(summary.run_id):
        if stat.start_time is not None and stat.end_time is not None:
            steps[stat.step_key.split("__", 1)[-1]] = round(stat.end_time - stat.start_time, 3)
    events = instance.get_records_for_run(summary.run_id, limit=100_000).records
    # Only blocking (ERROR) checks fail the measurement; WARN checks (drift, card coverage on a fresh home) are noted.
    failed_checks = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in summary.check_evaluations
                     if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    warned_checks = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in summary.check_evaluations
                     if not e.passed and e.severity != dg.AssetCheckSeverity.ERROR]
    return {
        "success": summary.success and not failed_checks,
        "error": None if summary.success else "run failed:\n" + summary.table(),
        "failed_checks": failed_checks,
        "warned_checks": warned_checks,
        "import_s": round(import_s, 3),
        "dagster_import_s": round(dagster_import, 3),
        "job_s": round(job_s, 3),
        "steps": steps,
        "outside_steps_s": round(job_s - sum(steps.values()), 3),
        "event_log_records": len(events),
        "rss_after_import_mb": round(rss_after_import, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "mlflow_runs": mlflow_run_states(settings),
    }


def mlflow_run_states(settings) -> dict[str, int]:
    """How many MLflow runs ended in each state: a run left RUNNING is a leak worth reporting."""
    from mlflow.tracking import MlflowClient

    tracking = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    experiment_ids = [e.experiment_id for e in tracking.search_experiments()]
    runs = tracking.search_runs(experiment_ids, max_results=100)
    states: dict[str, int] = {}
    for run in runs:
        states[run.info.status] = states.get(run.info.status, 0) + 1
    return states


# The domain modules the plain script calls, in import order. Any that pulls in Dagster is
# found and timed apart: a plain script should not pay for an orchestrator it does not use.
PLAIN_MODULES = (
    "mlflow",
    "mlops_assets.settings",
    "mlops_assets.config",
    "mlops_assets.data.sources",
    "mlops_assets.data.schemas",
    "mlops_assets.data.validation",
    "mlops_assets.data.raw_checks",
    "mlops_assets.features.engineering",
    "mlops_assets.features.store",
    "mlops_assets.features.training_set",
    "mlops_assets.training.registry",
    "mlops_assets.training.evaluation",
    "mlops_assets.training.train",
    "mlops_assets.monitoring.batch",
    "mlops_assets.governance.assessment",
    "mlops_assets.governance.model_card",
)


def import_plain_modules() -> dict:
    """Import PLAIN_MODULES one by one; say which one brought Dagster in and what that import cost."""
    import importlib

    started = time.perf_counter()
    pulled_in_by, pulled_in_s = None, 0.0
    for module in PLAIN_MODULES:
        had_dagster = "dagster" in sys.modules
        before = time.perf_counter()
        importlib.import_module(module)
        if not had_dagster and "dagster" in sys.modules:
            pulled_in_by, pulled_in_s = module, time.perf_counter() - before
    return {"import_s": time.perf_counter() - started, "dagster_pulled_in_by": pulled_in_by,
            "dagster_import_s": round(pulled_in_s, 3)}


def measure_plain() -> dict:
    """The same steps with no orchestration: the same domain functions in order, values kept in memory."""
    imported = import_plain_modules()
    import mlflow

    from mlops_assets.config import load_dataset_configs
    from mlops_assets.data.raw_checks import check_raw_rows
    from mlops_assets.data.sources import load_source, row_locator
    from mlops_assets.features.store import FeatureStore
    from mlops_assets.features.training_set import build_training_set, label_events
    from mlops_assets.governance.assessment import (
        measure_explanations,
        measure_fairness,
        measure_metrics,
        model_under_test,
        version_under_test,
    )
    from mlops_assets.governance.model_card import write_card
    from mlops_assets.monitoring.batch import monitor_current_batch
    from mlops_assets.monitoring.monitor import ModelUnderWatch
    from mlops_assets.settings import Settings
    from mlops_assets.training.evaluation import evaluate_on_test
    from mlops_assets.training.registry import CHAMPION, alias_version, ensure_experiment, load_version, set_alias
    from mlops_assets.training.train import fit_model, lineage_tags, log_training_run
    from mlops_assets.training.tuning import tune

    rss_after_import = peak_rss_mb()
    steps: dict[str, float] = {}
    started = clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        steps[name] = round(now - clock, 3)
        clock = now

    settings = Settings.from_env()
    settings.export()
    (config,) = load_dataset_configs(settings.configs)
    name = config.name
    # Creating the MLflow database (seconds of migrations) is resource setup in Dagster too, outside its steps.
    mlflow.set_experiment(experiment_id=ensure_experiment(settings))
    lap("setup")

    verdict = check_raw_rows(config, load_source(config), row_locator(config))
    assert verdict.passed, verdict.failed_checks
    raw = verdict.valid
    lap("raw_rows")

    store = FeatureStore(config)
    for view in store.views:  # compute, validate and append to the Delta tables, as the view assets do
        store.materialize(view.name, raw)
    lap("features")

    store.publish_online()
    lap("online_features")

    training_set, _ = build_training_set(store, label_events(raw, config))
    lap("training_set")

    study = tune(settings, config, training_set)
    lap("study")

    fitted = fit_model(training_set, config, study.best_params)
    tags = lineage_tags(training_set, config, fitted)
    logged = log_training_run(settings, fitted, config, training_set, tags)
    lap("model")

    fairness = measure_fairness(settings, model_under_test(settings, config, logged, training_set))
    assert fairness.passed, fairness.verdict()  # a blocking check in the graph
    lap("fairness")

    # Same function as the asset: it loads the logged model back, evaluates it, then registers it.
    evaluation = evaluate_on_test(settings, config, training_set, logged)
    registered = evaluation.model
    lap("evaluation")

    if alias_version(settings, config, CHAMPION) is None:
        set_alias(settings, config, CHAMPION, registered.version)
    lap("champion")

    served = load_version(settings, config, registered.version)
    watched = ModelUnderWatch(f"{registered.name} v{registered.version}", served.score, registered.decision_threshold)
    monitor_current_batch(config, training_set, watched, settings.dataset_reports(name) / "drift")
    lap("drift_report")

    measure_explanations(settings, version_under_test(settings, config, registered.version, training_set))
    lap("explanations")

    subject = version_under_test(settings, config, registered.version, training_set)
    measure_metrics(settings, subject, training_set)
    write_card(settings, config, registered.version)
    lap("model_card")
    job_s = time.perf_counter() - started

    timed = {k: v for k, v in steps.items() if k != "setup"}
    return {
        "success": True,
        "error": None,
        "failed_checks": [],
        "import_s": round(imported["import_s"], 3),
        "dagster_import_s": imported["dagster_import_s"],
        "dagster_pulled_in_by": imported["dagster_pulled_in_by"],
        "job_s": round(job_s, 3),
        "steps": timed,
        "outside_steps_s": round(job_s - sum(timed.values()), 3),
        "rss_after_import_mb": round(rss_after_import, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "mlflow_runs": mlflow_run_states(settings),
    }


def run_child(runner: str, result_path: Path) -> None:
    """Entry point of one measurement; a failure is written down, not raised past the parent."""
    sys.path.insert(0, str(PROJECT_ROOT))
    try:
        result = measure_dagster() if runner == "dagster" else measure_plain()
    except Exception as exc:  # the parent reports it; the traceback is in the child's log
        import traceback

        traceback.print_exc()
        result = {"success": False, "error": f"{type(exc).__name__}: {exc}"[:2000], "peak_rss_mb": round(peak_rss_mb(), 1)}
    result_path.write_text(json.dumps(result))
    # Measured and written: skip interpreter teardown (seconds of GC, atexit and thread joins).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# --------------------------------------------------------------------------------------------
# Parent side: spawn, watch (time and memory), collect, print, write.
# --------------------------------------------------------------------------------------------

def write_config(folder: Path, rows: int, trials: int | None = None) -> None:
    """The shipped churn config with only source.rows changed (and tuning.n_trials, for --quick)."""
    import yaml

    config = yaml.safe_load(CHURN_CONFIG.read_text())
    config["source"]["rows"] = rows
    if trials is not None:
        config["tuning"]["n_trials"] = trials
    folder.mkdir(parents=True)
    (folder / "churn.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def folder_mb(path: Path) -> float:
    if not path.exists():
        return 0.0
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1)


def machine_busy_s() -> float:
    """CPU seconds all processes have spent busy since boot (every core; from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and of every child it has reaped."""
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def log_tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
    except OSError:
        return ""


def measure(runner: str, rows: int, timeout: float, memory_cap_mb: float, trials: int | None = None) -> dict:
    """One child process in one fresh home; killed (with its process group) past timeout or memory cap."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-main-job-{runner}-{rows}-"))
    try:
        write_config(workdir / "configs", rows, trials)
        env = {k: v for k, v in os.environ.items() if k not in HOME_VARIABLES}
        env.update({"MLOPS_HOME": str(workdir / "home"), "MLOPS_CONFIGS": str(workdir / "configs"),
                    "PYTHONHASHSEED": "0"})
        result_path, log_path = workdir / "result.json", workdir / "child.log"
        command = [sys.executable, str(Path(__file__).resolve()), "--measure", runner, "--result", str(result_path)]
        busy_before, own_before = machine_busy_s(), own_cpu_s()
        started = time.perf_counter()
        with log_path.open("w") as log:
            child = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
            killed, watched_peak = None, 0.0
            while child.poll() is None:
                elapsed = time.perf_counter() - started
                watched_peak = max(watched_peak, rss_mb(child.pid))
                if elapsed > timeout:
                    killed = f"timeout: still running after {timeout:.0f} s"
                elif watched_peak > memory_cap_mb:
                    killed = f"memory: RSS passed {memory_cap_mb:,.0f} MB after {elapsed:.0f} s"
                if killed:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()
                    break
                time.sleep(POLL_SECONDS)
        process_s = time.perf_counter() - started
        own = own_cpu_s() - own_before
        other_cores = max(0.0, machine_busy_s() - busy_before - own) / process_s
        if killed:
            result = {"success": False, "error": killed, "peak_rss_mb": round(watched_peak, 1)}
        elif result_path.exists():
            result = json.loads(result_path.read_text())
        else:
            result = {"success": False, "error": f"child exited {child.returncode} without a result",
                      "peak_rss_mb": round(watched_peak, 1)}
        if not result.get("success"):
            result["log_tail"] = log_tail(log_path)
        home = workdir / "home"
        result.update({
            "runner": runner,
            "rows": rows,
            "process_s": round(process_s, 3),
            "total_s": round(result["import_s"] + result["job_s"], 3) if "job_s" in result else None,
            "over_budget": process_s > BUDGET_SECONDS,
            "cpu_s": round(own, 1),
            # Cores other processes kept busy meanwhile: nonzero means a noisy machine, and
            # HistGradientBoosting's OpenMP threads slow down several-fold when they compete for cores.
            "other_cpu_cores": round(other_cores, 2),
            "disk_mb": {"dagster_storage": folder_mb(home / "dagster"), "asset_values": folder_mb(home / "assets"),
                        "mlflow": folder_mb(home / "mlflow"), "reports": folder_mb(home / "reports")},
        })
        return result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def slowest(steps: dict[str, float], count: int = 3) -> list[str]:
    ranked = sorted(steps.items(), key=lambda item: item[1], reverse=True)[:count]
    return [f"{name} {seconds:.1f}" for name, seconds in ranked] + [""] * (count - len(ranked))


def table(results: list[dict]) -> str:
    """One row per size x runner; the same columns in --quick and full mode."""
    header = ("rows", "runner", "total s", "import s", "job s", "outside steps s",
              "slowest step", "2nd", "3rd", "peak RSS MB")
    lines = [header]
    for r in results:
        if r.get("success"):
            lines.append((f"{r['rows']:,}", r["runner"], f"{r['total_s']:.1f}", f"{r['import_s']:.1f}",
                          f"{r['job_s']:.1f}", f"{r['outside_steps_s']:.1f}", *slowest(r["steps"]),
                          f"{r['peak_rss_mb']:,.0f}"))
        else:
            reason = (r.get("error") or "failed").splitlines()[0][:60]
            lines.append((f"{r['rows']:,}", r["runner"], "-", "-", "-", "-", f"FAILED: {reason}", "", "",
                          f"{r.get('peak_rss_mb', 0):,.0f}"))
    widths = [max(len(row[i]) for row in lines if i < len(row)) for i in range(len(header))]
    right = {2, 3, 4, 5, 9}
    out = []
    for row in lines:
        cells = [cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        out.append("  ".join(cells).rstrip())
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def budget_targets(results: list[dict]) -> list[dict]:
    """One target per runner and size: the whole process (imports included) within the brief's budget."""
    return [{"name": f"main job, {r['runner']}, {r['rows']:,} rows: process time, imports included",
             "measured": r.get("process_s"), "goal": BUDGET_SECONDS, "unit": "s",
             "met": bool(r.get("success") and not r.get("over_budget", True))} for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}, {QUICK_TRIALS} tuning trials (about a minute)")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON results")
    parser.add_argument("--measure", choices=RUNNERS, help=argparse.SUPPRESS)  # internal: child process
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        run_child(args.measure, args.result)
        return

    mode = "quick" if args.quick else "full"
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    timeout = QUICK_TIMEOUT_SECONDS if args.quick else FULL_TIMEOUT_SECONDS
    memory_cap_mb = MEMORY_CAP_SHARE * meminfo_kb("MemAvailable") / 1024
    # The Dagster runner goes first at each size: without this it alone would pay the VM's first touch of memory.
    warmed = warm_memory(3 if mode == "full" else 1)
    started = time.perf_counter()
    results: list[dict] = []
    broken: dict[str, str] = {}
    for rows in sizes:
        for runner in RUNNERS:
            if runner in broken:
                results.append({"runner": runner, "rows": rows, "success": False,
                                "error": f"skipped: {broken[runner]}"})
                continue
            print(f"measuring {runner} at {rows:,} rows ...", file=sys.stderr, flush=True)
            result = measure(runner, rows, timeout, memory_cap_mb, QUICK_TRIALS if args.quick else None)
            results.append(result)
            if not result["success"]:
                broken[runner] = f"failed at {rows:,} rows"
                print(f"  FAILED: {result.get('error')}\n{result.get('log_tail', '')}", file=sys.stderr, flush=True)
            else:
                print(f"  {result['total_s']:.1f} s (process {result['process_s']:.1f} s, other processes kept "
                      f"{result['other_cpu_cores']:.2f} cores busy)", file=sys.stderr, flush=True)
    wall_s = time.perf_counter() - started

    print(table(results))
    print(f"\n{mode} run: {wall_s:.1f} s wall for {len(sizes)} sizes x {len(RUNNERS)} runners")
    noisy = [f"{r['runner']} at {r['rows']:,}: {r['other_cpu_cores']:.2f} cores" for r in results
             if r.get("other_cpu_cores", 0) > NOISY_CORES]
    if noisy:
        print(f"WARNING: other processes were busy during: {'; '.join(noisy)}; figures are inflated")
    working = [rows for rows in sizes
               if all(r["success"] and not r["over_budget"] for r in results if r["rows"] == rows)]
    report = {
        "benchmark": "main_job",
        "mode": mode,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(wall_s, 1),
        "noisy_measurements": noisy,
        "memory_warmed_first": warmed,
        "parameters": {
            "sizes": list(sizes),
            "largest_size_that_works": max(working) if working else None,
            "capped": len(working) < len(sizes),
            "runners": {
                "dagster": "mlops_assets.pipeline.runs.run_main_job (execute_in_process, SQLite instance under "
                           f"a fresh MLOPS_HOME, log_level={DAGSTER_LOG_LEVEL}); steps from get_run_step_stats",
                "plain": "the same domain functions in order (load_source, validate, FeatureStore.materialize, "
                         "build_training_set, tune, fit_model, lineage_tags, log_training_run, evaluate_on_test, set_alias, "
                         "monitor_current_batch, publish_online, measure_fairness, measure_explanations, write_card), values kept "
                         "in memory; no Dagster run, "
                         "event log, IO manager pickles, metadata or second (inline) model card",
            },
            "config": "configs/churn.yaml with source.rows set (and tuning.n_trials "
                      f"{QUICK_TRIALS if args.quick else 'as shipped'}); drift.current_rows stays "
                      "at the shipped value, so the drift reference grows and the current batch does not",
            "timeout_s": timeout,
            "budget_s": BUDGET_SECONDS,
            "memory_cap_mb": round(memory_cap_mb),
            "isolation": "one child process and one fresh temp MLOPS_HOME per measurement",
            "total_s": "import_s + job_s, measured inside the child (process_s adds interpreter start/exit)",
        },
        "machine": machine_info(PACKAGES),
        "results": results,
        "table": table(results),
        "targets": budget_targets(results),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
