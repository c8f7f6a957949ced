"""Experiment management: tuning throughput, tracking cost, run search, artifact storage, side by side.

- Trials per minute on the churn example with 1 and 2 worker processes (Optuna on
  SQLite, and on PostgreSQL when it answers).
- Tracking cost per trial: the three MLflow store calls that record one trial as a
  nested run, timed inline; and the optimization loop's wall time with and without
  MLflow tracking for the same trials.
- Run search at 1,000 / 10,000 / 100,000 generated runs: ``mlops runs search`` against
  ``mlflow.search_runs`` on the same database (SQLite, PostgreSQL).
- Artifact storage of a realistic series (a study, then repeated retrainings on
  unchanged data): MLflow's own layout against the content-addressed store.

    .venv/bin/python benchmarks/experiments.py           # full run, writes results/experiments.json
    .venv/bin/python benchmarks/experiments.py --quick   # smaller, same table, about a minute

Run the full one alone: ``flock /tmp/mlops-bench.lock .venv/bin/python benchmarks/experiments.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import mlflow
import sqlalchemy as sa
from machine import machine_info

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))
RESULT_PATH = PROJECT_ROOT / "benchmarks" / "results" / "experiments.json"
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
PACKAGES = ("mlflow", "optuna", "scikit-learn", "sqlalchemy", "psycopg2-binary", "pandas")

from mlops_assets.config import load_dataset_config  # noqa: E402
from mlops_assets.data.churn_generator import generate_churn  # noqa: E402
from mlops_assets.features.engineering import build_feature_table  # noqa: E402
from mlops_assets.features.training_set import time_split  # noqa: E402
from mlops_assets.settings import use_home  # noqa: E402
from mlops_assets.training.artifacts import deduplicate, measure  # noqa: E402
from mlops_assets.training.evaluation import evaluate_on_test  # noqa: E402
from mlops_assets.training.registry import client, ensure_experiment  # noqa: E402
from mlops_assets.training.run_search import SearchRequest, search_runs  # noqa: E402
from mlops_assets.training.study import SplitData, load_study, optimize  # noqa: E402
from mlops_assets.training.tracking import TrialRecord, TrialRecorder  # noqa: E402
from mlops_assets.training.train import fit_model, lineage_tags, log_training_run  # noqa: E402
from mlops_assets.training.tuning import tune  # noqa: E402
from tests.run_history import insert_run_history  # noqa: E402

SEARCHES = {
    "all runs": ("", ()),
    "tag filter": ("tags.dataset = 'churn' and tags.run_kind = 'model'", ()),
    "metric filter, ordered": ("metrics.validation_roc_auc > 0.9", ("metrics.validation_roc_auc DESC",)),
    "ordered top 100": ("", ("metrics.validation_roc_auc DESC",)),
}


@contextmanager
def postgres_database():
    """A scratch PostgreSQL database, or None when the server does not answer."""
    admin = sa.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    name = f"mlops_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError:
        admin.dispose()
        yield None
        return
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def churn(folder: Path, rows: int, trials: int):
    import yaml

    raw = yaml.safe_load((PROJECT_ROOT / "configs" / "churn.yaml").read_text())
    raw["source"]["rows"] = rows
    raw["tuning"].update({"n_trials": trials, "timeout_seconds": None})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "churn.yaml").write_text(yaml.safe_dump(raw))
    config = load_dataset_config(folder / "churn.yaml")
    return config, time_split(build_feature_table(generate_churn(rows, seed=7), config), config)


def throughput(root: Path, rows: int, trials: int, workers: int, optuna_url: str | None) -> dict:
    config, training_set = churn(root / "configs", rows, trials)
    extra = {"MLOPS_OPTUNA_STORAGE": optuna_url} if optuna_url else {}
    with use_home(root / "home", root / "configs", **extra) as settings:
        ensure_experiment(settings)
        started = time.perf_counter()
        outcome = tune(settings, config, training_set, workers=workers)
        seconds = time.perf_counter() - started
    return {"workers": workers, "storage": "postgresql" if optuna_url else "sqlite", "trials": outcome.new_trials,
            "seconds": round(seconds, 2), "trials_per_minute": round(60 * outcome.new_trials / seconds, 1),
            "states": outcome.trials}


def tracking_cost(root: Path, rows: int, trials: int) -> dict:
    """The same trials with and without MLflow; and the three store calls per trial, timed inline."""
    config, training_set = churn(root / "configs", rows, trials)
    config = config.model_copy(update={"tuning": config.tuning.model_copy(update={"pruner": "none"})})
    data = SplitData.from_training_set(training_set, config)
    with use_home(root / "home", root / "configs") as settings:
        experiment_id = ensure_experiment(settings)
        tracking = client(settings)
        loop = {}
        for label in ("without MLflow", "with MLflow"):
            study = load_study(settings, f"cost-{label.replace(' ', '-')}", config)
            recorder = None
            if label == "with MLflow":
                parent = tracking.create_run(experiment_id).info.run_id
                recorder = TrialRecorder(tracking, experiment_id, parent, "bench")
            started = time.perf_counter()
            optimize(study, config, data, recorder, threads=1)
            if recorder:
                recorder.close()
            loop[label] = (time.perf_counter() - started) / trials
        parent = tracking.create_run(experiment_id).info.run_id
        recorder = TrialRecorder(tracking, experiment_id, parent, "inline")
        recorder.close()  # only its write() is used below, inline
        now = int(time.time() * 1000)
        record = TrialRecord(0, "COMPLETE", {"learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 20,
                                              "l2_regularization": 1.0}, "roc_auc", {1: 0.8, 2: 0.81, 3: 0.82, 4: 0.83},
                             0.83, now - 200, now, 0)
        writes = []
        for number in range(max(20, trials)):
            record.number = number
            started = time.perf_counter()
            recorder.write(record)
            writes.append(time.perf_counter() - started)
    writes.sort()
    return {"trials": trials, "loop_ms_per_trial_without_mlflow": round(1000 * loop["without MLflow"], 1),
            "loop_ms_per_trial_with_mlflow": round(1000 * loop["with MLflow"], 1),
            "loop_overhead_ms_per_trial": round(1000 * (loop["with MLflow"] - loop["without MLflow"]), 1),
            "inline_record_ms_median": round(1000 * writes[len(writes) // 2], 2),
            "inline_record_ms_p90": round(1000 * writes[int(len(writes) * 0.9)], 2)}


def search_times(root: Path, runs: int, tracking_uri: str | None, with_mlflow: set[str], repeats: int) -> dict:
    """Our search against ``mlflow.search_runs`` for the searches named in ``with_mlflow`` (same rows checked)."""
    extra = {"MLFLOW_TRACKING_URI": tracking_uri} if tracking_uri else {}
    with use_home(root / "home", root, **extra) as settings:
        started = time.perf_counter()
        experiment_id = insert_run_history(settings.mlflow_tracking_uri, runs, seed=runs % 97)
        insert_seconds = time.perf_counter() - started
        mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
        rows = {}
        for name, (filter_string, order_by) in SEARCHES.items():
            limit = 100 if name == "ordered top 100" else None
            ours = []
            for _ in range(repeats):
                started = time.perf_counter()
                found = search_runs(settings, SearchRequest(filter_string, order_by, limit), [experiment_id])
                ours.append(time.perf_counter() - started)
            theirs = None
            if name in with_mlflow:
                started = time.perf_counter()
                reference = mlflow.search_runs([experiment_id], filter_string, order_by=list(order_by) or None,
                                               max_results=limit or 100_000)
                theirs = round(time.perf_counter() - started, 3)
                assert list(reference["run_id"]) == list(found["run_id"]), name
            rows[name] = {"rows": len(found), "ours_seconds": round(min(ours), 3), "mlflow_seconds": theirs}
    return {"runs": runs, "backend": "postgresql" if tracking_uri else "sqlite",
            "insert_seconds": round(insert_seconds, 1), "searches": rows}


def artifact_storage(root: Path, rows: int, trials: int, retrainings: int) -> dict:
    """A study, then ``retrainings`` model runs (train, evaluate, register) on unchanged data."""
    config, training_set = churn(root / "configs", rows, trials)
    with use_home(root / "home", root / "configs") as settings:
        study = tune(settings, config, training_set)
        for _ in range(retrainings):
            fitted = fit_model(training_set, config, study.best_params)
            logged = log_training_run(settings, fitted, config, training_set,
                                      lineage_tags(training_set, config, fitted))
            evaluate_on_test(settings, config, training_set, logged)
        report = measure(settings)
        content = sum(p.stat().st_size for p in (settings.home / "mlflow" / "cas").rglob("*") if p.is_file())
        assert deduplicate(settings).newly_linked == 0  # everything was stored once as it was written
    return {"study_trials": trials, "retrainings": retrainings, "files": report.files,
            "mlflow_layout_bytes": report.logical_bytes, "stored_bytes": report.stored_bytes,
            "content_store_bytes": content, "saved_fraction": round(report.saved_fraction, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, same table, about a minute")
    parser.add_argument("--output", type=Path, default=RESULT_PATH)
    args = parser.parse_args()
    quick = args.quick
    rows = 20_000
    trials = 8 if quick else 120  # long enough that worker start-up does not decide the 1-vs-2 comparison
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
    work = Path(tempfile.mkdtemp(prefix="mlops-bench-experiments-"))
    result: dict = {"benchmark": "experiments", "mode": "quick" if quick else "full",
                    "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "machine": machine_info(PACKAGES)}
    try:
        runs = [throughput(work / "t1", rows, trials, 1, None), throughput(work / "t2", rows, trials, 2, None)]
        with postgres_database() as url:
            if url:
                runs.append(throughput(work / "t3", rows, trials, 2, url))
        result["throughput"] = runs
        result["tracking"] = tracking_cost(work / "cost", rows, 6 if quick else 30)
        searches = []
        for size in sizes:
            # At 100,000 runs mlflow.search_runs needs minutes for the big answers, and its ordering scans a
            # sub-query once per run (quadratic): only the selective, unordered search runs there.
            reference = set(SEARCHES) if size <= 10_000 else {"tag filter"}
            searches.append(search_times(work / f"s{size}", size, None, reference, repeats=3))
            with postgres_database() as url:
                if url:
                    searches.append(search_times(work / f"p{size}", size, url, reference, repeats=3))
        result["search"] = searches
        result["artifacts"] = artifact_storage(work / "a", rows, 6 if quick else 20, 2 if quick else 5)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def worst(size: int, backend: str) -> float | None:
        found = [max(v["ours_seconds"] for v in s["searches"].values()) for s in result["search"]
                 if s["runs"] == size and s["backend"] == backend]
        return found[0] if found else None

    targets = [{"name": "tracking per trial (3 store calls, inline, median)", "measured":
                result["tracking"]["inline_record_ms_median"], "goal": 20, "unit": "ms",
                "met": result["tracking"]["inline_record_ms_median"] < 20}]
    for backend in ("sqlite", "postgresql"):
        for size, goal in ((10_000, 0.5), (100_000, 2.0)):
            measured = worst(size, backend)
            targets.append({"name": f"slowest search at {size:,} runs on {backend}", "measured": measured,
                            "goal": goal, "unit": "s", "met": measured is not None and measured < goal})
    targets.append({"name": "artifact storage saved vs MLflow's layout (study + retrainings)",
                    "measured": result["artifacts"]["saved_fraction"], "goal": 0.5, "unit": "fraction",
                    "met": result["artifacts"]["saved_fraction"] >= 0.5})
    result["targets"] = targets
    print_table(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {args.output}")


def print_table(result: dict) -> None:
    print(f"\nexperiments benchmark ({result['mode']}), load {result['machine']['load_average']}")
    print("\n| tuning | workers | trials | seconds | trials/min |\n| --- | --- | --- | --- | --- |")
    for run in result["throughput"]:
        print(f"| Optuna on {run['storage']} | {run['workers']} | {run['trials']} | {run['seconds']} | "
              f"{run['trials_per_minute']} |")
    t = result["tracking"]
    print("\n| tracking per trial | ms |\n| --- | --- |")
    print(f"| loop without MLflow | {t['loop_ms_per_trial_without_mlflow']} |")
    print(f"| loop with MLflow (trial runs written in the background) | {t['loop_ms_per_trial_with_mlflow']} |")
    print(f"| 3 store calls inline, median / p90 | {t['inline_record_ms_median']} / {t['inline_record_ms_p90']} |")
    print("\n| runs | backend | search | rows | ours s | mlflow.search_runs s |\n| --- | --- | --- | --- | --- | --- |")
    for block in result["search"]:
        for name, row in block["searches"].items():
            print(f"| {block['runs']:,} | {block['backend']} | {name} | {row['rows']} | {row['ours_seconds']} | "
                  f"{row['mlflow_seconds'] if row['mlflow_seconds'] is not None else 'not run'} |")
    a = result["artifacts"]
    print(f"\n| artifacts ({a['study_trials']}-trial study + {a['retrainings']} retrainings) | MB |\n| --- | --- |")
    print(f"| MLflow's layout | {a['mlflow_layout_bytes'] / 1e6:.2f} |\n| stored (content-addressed) | "
          f"{a['stored_bytes'] / 1e6:.2f} |\n| saved | {100 * a['saved_fraction']:.0f}% |")
    print("\n| target | measured | goal | met |\n| --- | --- | --- | --- |")
    for target in result["targets"]:
        print(f"| {target['name']} | {target['measured']} {target['unit']} | {target['goal']} {target['unit']} | "
              f"{'yes' if target['met'] else 'NO'} |")


if __name__ == "__main__":
    main()
