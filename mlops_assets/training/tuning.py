"""Running a study: the study's MLflow run, its workers (this process or several), its plots.

Used by the ``study`` asset (one worker, in the Dagster step) and by ``mlops tune``
(one or several worker processes). A worker process caps its OpenMP threads at
cores / workers: two HistGradientBoosting fits that each spin on every core made
throughput collapse 6-13x here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from mlops_assets.config import DatasetConfig, load_dataset_config
from mlops_assets.settings import Settings
from mlops_assets.training.artifacts import deduplicate
from mlops_assets.training.registry import client as tracking_client
from mlops_assets.training.registry import ensure_experiment
from mlops_assets.training.study import (
    SplitData,
    StudyError,
    StudyOutcome,
    check_tunable,
    data_snapshot_of,
    load_study,
    optimize,
    outcome_of,
    redacted,
    study_name,
    study_plots,
    trial_counts,
    untuned_outcome,
)
from mlops_assets.training.tracking import DESCRIPTION_TAG, TrialRecorder, now_label

#: Progress callback: (finished trials, trials wanted).
Progress = Callable[[int, int], None]


def tune(settings: Settings, config: DatasetConfig, training_set: pd.DataFrame, *, workers: int = 1,
         worker_offset: int = 0, n_trials: int | None = None, parent_run_id: str | None = None,
         progress: Progress | None = None) -> StudyOutcome:
    """Run (or continue) the dataset's study and record it as one MLflow run with a nested run per trial."""
    check_tunable(config)
    if not config.search_space:
        return untuned_outcome(config)
    if workers < 1:
        raise StudyError(f"--workers must be at least 1, got {workers}")
    limit = n_trials or config.tuning.n_trials
    snapshot = data_snapshot_of(training_set)
    name = study_name(config, snapshot)
    study = load_study(settings, name, config, worker=worker_offset)
    before = len(study.get_trials(deepcopy=False))

    experiment_id = ensure_experiment(settings)
    client = tracking_client(settings)
    cap = config.tuning.max_train_rows
    tags = {MLFLOW_RUN_NAME: f"{config.name} study {now_label()}", "dataset": config.name, "run_kind": "study",
            "optuna.study": name, "optuna.storage": redacted(settings.optuna_storage),
            "data_snapshot": snapshot,
            DESCRIPTION_TAG: f"Optuna study of `{config.model.family}` on `{config.name}`: TPE sampler "
                             f"(seed {config.tuning.seed}+worker), {config.tuning.pruner} pruning on "
                             f"{config.tuning.stages} intermediate validation {config.tuning.metric} scores, "
                             f"up to {limit} trials, each fitted on {'all' if cap is None else f'at most {cap:,}'} "
                             "training rows. Each trial is a nested run."}
    if parent_run_id:
        tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    run = client.create_run(experiment_id, tags=tags)
    run_id = run.info.run_id
    started = time.time()
    try:
        data = SplitData.from_training_set(training_set, config)
        client.set_tag(run_id, "tuning_rows", data.describe())
        if workers == 1:
            recorder = TrialRecorder(client, experiment_id, run_id, config.name)
            on_trial = (lambda s, _t: progress(len(s.get_trials(deepcopy=False)), limit)) if progress else None
            try:
                optimize(study, config, data, recorder,
                         worker=worker_offset, tags={"dataset": config.name, "optuna.study": name},
                         n_trials=limit, on_trial=on_trial)
            finally:
                recorder.close()
        else:
            _run_worker_processes(settings, config, training_set, name, run_id, workers, worker_offset, limit,
                                  study, progress)
        outcome = outcome_of(study, config, settings.optuna_storage,
                             len(study.get_trials(deepcopy=False)) - before, time.time() - started)
        outcome.mlflow_run_id = run_id
        outcome.tuning_rows = data.describe()
        outcome.plots = study_plots(study, settings.dataset_reports(config.name) / "study" / name)
        _log_outcome(settings, client, run_id, config, outcome, limit, workers)
        client.set_terminated(run_id, "FINISHED")
    except BaseException as exc:
        client.set_tag(run_id, "error", str(exc)[:5000])
        client.set_terminated(run_id, "FAILED")
        raise
    return outcome


def _log_outcome(settings: Settings, client, run_id: str, config: DatasetConfig, outcome: StudyOutcome, limit: int, workers: int) -> None:
    now = int(time.time() * 1000)
    counts = outcome.trials
    params = {"model_family": config.model.family, "metric": config.tuning.metric, "pruner": config.tuning.pruner,
              "n_trials": limit, "timeout_seconds": config.tuning.timeout_seconds, "stages": config.tuning.stages,
              "sampler": "TPE", "sampler_seed": config.tuning.seed, "workers": workers,
              "max_train_rows": config.tuning.max_train_rows,
              "search_space": json.dumps({k: v.model_dump(exclude_none=True) for k, v in config.search_space.items()})}
    metrics = {f"best_validation_{outcome.metric}": outcome.best_value, "trials_complete": counts.get("COMPLETE", 0),
               "trials_pruned": counts.get("PRUNED", 0), "trials_failed": counts.get("FAIL", 0),
               "new_trials": outcome.new_trials, "study_seconds": outcome.seconds}
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        params=[Param(k, str(v)[:6000]) for k, v in params.items()],
        tags=[RunTag("best_params", json.dumps(outcome.best_params, sort_keys=True)),
              RunTag("best_trial", str(outcome.best_trial))],
    )
    with tempfile.TemporaryDirectory() as folder:
        best = Path(folder) / "best_params.json"
        best.write_text(json.dumps(outcome.best_params, indent=2, sort_keys=True) + "\n")
        client.log_artifact(run_id, str(best), artifact_path="study")
    for path in outcome.plots.values():
        client.log_artifact(run_id, path, artifact_path="study")
    deduplicate(settings)


def worker_environment(workers: int) -> dict[str, str]:
    """Thread caps for one of ``workers`` processes on this machine."""
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    return {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def _run_worker_processes(settings: Settings, config: DatasetConfig, training_set: pd.DataFrame, name: str,
                          run_id: str, workers: int, offset: int, limit: int, study, progress: Progress | None) -> None:
    if config.path is None:
        raise StudyError(f"dataset {config.name!r}: worker processes read the config from its file; it has none")
    folder = settings.home / "optuna" / "work"
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.parquet"
    training_set.to_parquet(data)
    env = {**os.environ, **settings.environ(), **worker_environment(workers)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "mlops_assets.training.tuning", str(config.path), name, str(offset + k), run_id,
             str(data), str(limit)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        for k in range(workers)
    ]
    try:
        while any(p.poll() is None for p in processes):
            if progress:
                progress(len(study.get_trials(deepcopy=False)), limit)
            time.sleep(0.5)
    except BaseException:
        for process in processes:
            process.terminate()
        raise
    if progress:
        progress(len(study.get_trials(deepcopy=False)), limit)
    failed = [(k, p.stderr.read().strip().splitlines()[-1:] if p.stderr else []) for k, p in enumerate(processes)
              if p.returncode != 0]
    for process in processes:
        if process.stderr:
            process.stderr.close()
    if failed and trial_counts(study)["COMPLETE"] == 0:
        raise StudyError(f"study {name}: worker(s) failed: {failed}")


def work(config_path: str, name: str, worker: int, parent_run_id: str, data_path: str, limit: int) -> None:
    """One worker process: join the study and run trials until it holds ``limit`` or times out."""
    settings = Settings.from_env()
    config = load_dataset_config(config_path)
    training_set = pd.read_parquet(data_path)
    study = load_study(settings, name, config, worker=worker)
    client = tracking_client(settings)
    experiment_id = ensure_experiment(settings)
    recorder = TrialRecorder(client, experiment_id, parent_run_id, config.name)
    threads = int(os.environ.get("OMP_NUM_THREADS", "0")) or None
    try:
        optimize(study, config, SplitData.from_training_set(training_set, config), recorder, worker=worker,
                 tags={"dataset": config.name, "optuna.study": name}, n_trials=limit, threads=threads)
    finally:
        recorder.close()


if __name__ == "__main__":
    work(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6]))
