"""Several worker processes on one study (PostgreSQL), and a study that survives a killed worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient

from mlops_assets.settings import use_home
from mlops_assets.training.study import SplitData, load_study, open_storage, optimize, study_name, trial_counts
from mlops_assets.training.tuning import tune, worker_environment
from tests.experiments_support import churn_training_set, write_churn_config
from tests.test_postgres import scratch_database

pytestmark = pytest.mark.slow


def test_two_worker_processes_on_postgres_run_every_trial_once(tmp_path):
    config = write_churn_config(tmp_path / "configs", tuning={"n_trials": 8, "pruner": "none"})
    training_set = churn_training_set(config)
    with scratch_database("mlops_optuna") as optuna_url:
        with use_home(tmp_path / "home", tmp_path / "configs", MLOPS_OPTUNA_STORAGE=optuna_url) as settings:
            outcome = tune(settings, config, training_set, workers=2)
            study = optuna.load_study(study_name=outcome.study_name, storage=open_storage(settings))
            trials = study.get_trials(deepcopy=False)
            client = MlflowClient(settings.mlflow_tracking_uri)
            runs = client.search_runs([client.get_run(outcome.mlflow_run_id).info.experiment_id],
                                      f"tags.mlflow.parentRunId = '{outcome.mlflow_run_id}'")
            storage = open_storage(settings)
            assert storage.url.startswith("postgresql://")
            storage.engine.dispose()

    # Both workers took part; each trial exists once in Optuna and once in MLflow; none is lost.
    assert {t.user_attrs["worker"] for t in trials} == {0, 1}
    numbers = sorted(t.number for t in trials)
    assert numbers == list(range(len(trials))) and len(trials) >= 8
    assert sorted(int(r.data.tags["optuna.trial"]) for r in runs) == numbers
    assert {r.data.tags["optuna.worker"] for r in runs} == {"0", "1"}
    # Each worker sampled with its own seed: no parameter set repeats.
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)
    assert outcome.trials["COMPLETE"] == len(trials)


def test_each_worker_caps_its_threads_at_cores_over_workers():
    cores = os.cpu_count() or 1
    assert worker_environment(1)["OMP_NUM_THREADS"] == str(cores)
    assert worker_environment(2 * cores)["OMP_NUM_THREADS"] == "1"


def test_killing_a_worker_mid_study_leaves_the_study_usable(tmp_path, monkeypatch):
    monkeypatch.setattr("mlops_assets.training.study.HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr("mlops_assets.training.study.GRACE_SECONDS", 2)
    config = write_churn_config(tmp_path / "configs", tuning={"n_trials": 4, "pruner": "none"},
                                model={"params": {"max_iter": 400, "early_stopping": False}})
    training_set = churn_training_set(config)
    data = tmp_path / "training_set.parquet"
    training_set.to_parquet(data)
    with use_home(tmp_path / "home", tmp_path / "configs") as settings:
        name = study_name(config, "killedworker")
        load_study(settings, name, config)  # create it, as `mlops tune` does before starting workers
        worker = subprocess.Popen(
            [sys.executable, "-c", "import sys; import mlops_assets.training.study as s; s.HEARTBEAT_SECONDS = 1; "
             "from mlops_assets.training.tuning import work; work(*sys.argv[1:3], 0, sys.argv[3], sys.argv[4], 4)",
             str(config.path), name, "no-parent-run", str(data)],
            env={**os.environ, **settings.environ(), **worker_environment(1)}, start_new_session=True)
        study = load_study(settings, name, config)
        deadline = time.time() + 120
        while trial_counts(study)["RUNNING"] == 0 and time.time() < deadline:
            time.sleep(0.2)
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        (running,) = [t.number for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
        time.sleep(3)  # past the grace period: the dead worker's heartbeat is stale
        # Another worker (any host) joins the same study by name; quick trials this time.
        fast = config.model_copy(update={"model": config.model.model_copy(
            update={"params": {"max_iter": 20, "early_stopping": False}})})
        resumed = load_study(settings, name, fast, worker=1)
        optimize(resumed, fast, SplitData.from_training_set(training_set, fast), None, worker=1)
        counts = trial_counts(resumed)
        killed = resumed.trials[running]
    assert killed.state == optuna.trial.TrialState.FAIL  # the dead worker's trial, marked by the next worker
    assert counts["RUNNING"] == 0 and counts["FAIL"] == 1 and sum(counts.values()) == 4
