"""Hyperparameter search: an Optuna study over the config's search space, every trial tracked in MLflow.

- **Its own database.** Optuna and MLflow both keep an ``alembic_version`` table, so the
  study lives in its own SQLite file under ``MLOPS_HOME`` (or PostgreSQL, from
  ``MLOPS_OPTUNA_STORAGE``), never in MLflow's.
- **One study, several workers.** A study is named after what defines it (dataset, data
  snapshot, search space, metric, pruner, seed), so every worker on any host that reaches
  the database joins the same one; ``n_trials`` counts the trials of all of them. Each
  worker samples with ``seed + worker``: with one seed, workers repeat parameter sets.
- **Pruning on intermediate scores.** A family with a staged parameter (boosting
  iterations, trees) trains in ``stages`` steps with ``warm_start`` and reports the
  validation score after each; the median or Hyperband pruner stops hopeless trials.
- **A trial that raises is a failed trial**, recorded with its error; the study goes on.
  A killed worker's trial is marked failed by the next worker (Optuna heartbeats).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from mlops_assets.config import DatasetConfig
from mlops_assets.data.snapshots import frame_fingerprint
from mlops_assets.errors import PlatformError
from mlops_assets.features.training_set import binary_target, split_frame
from mlops_assets.settings import Settings
from mlops_assets.training.model_families import FAMILIES, build_pipeline
from mlops_assets.training.search_space import check_search_space, suggest
from mlops_assets.training.tracking import TrialRecord, TrialRecorder

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

#: A dead worker's running trial is marked failed once its heartbeat is this old.
HEARTBEAT_SECONDS = 5
GRACE_SECONDS = 20

METRICS: dict[str, tuple[str, Callable[[np.ndarray, np.ndarray], float]]] = {
    "roc_auc": ("maximize", roc_auc_score),
    "pr_auc": ("maximize", average_precision_score),
    "log_loss": ("minimize", lambda y, p: log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
    "brier": ("minimize", brier_score_loss),
}


class StudyError(PlatformError, RuntimeError):
    """A study that cannot run or produced no usable trial."""


def study_name(config: DatasetConfig, data_snapshot: str) -> str:
    """Same data, space and search settings, same study: a re-run or another worker continues it.

    ``n_trials`` and the timeout are left out on purpose: raising them continues the study.
    """
    definition = {
        "family": config.model.family,
        "params": config.model.params,
        "space": {k: v.model_dump() for k, v in sorted(config.search_space.items())},
        "tuning": config.tuning.model_dump(exclude={"n_trials", "timeout_seconds"}),
        "seed": config.model.seed,
    }
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{config.name}-{data_snapshot[:8]}-{digest}"


def redacted(url: str) -> str:
    """A storage URL without its password, for logs and tags."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def open_storage(settings: Settings) -> optuna.storages.RDBStorage:
    """The Optuna database, refusing MLflow's (both keep an ``alembic_version`` table)."""
    url = settings.optuna_storage
    if url == settings.mlflow_tracking_uri:
        raise StudyError(f"MLOPS_OPTUNA_STORAGE is MLflow's database ({redacted(url)}): give Optuna its own")
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs={"pool_pre_ping": True},
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
            )
    except Exception as exc:  # noqa: BLE001 - any driver error is "cannot open"
        raise StudyError(f"cannot open the Optuna storage {redacted(url)}: {str(exc).splitlines()[0]}") from exc


def make_pruner(config: DatasetConfig) -> optuna.pruners.BasePruner:
    stages = config.tuning.stages
    if config.tuning.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if config.tuning.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=stages, reduction_factor=2)
    return optuna.pruners.NopPruner()


def load_study(settings: Settings, name: str, config: DatasetConfig, worker: int = 0) -> optuna.Study:
    """Create the study or join it; the sampler seed is the config's seed plus the worker index."""
    direction = METRICS[config.tuning.metric][0]
    return optuna.create_study(
        study_name=name,
        storage=open_storage(settings),
        sampler=optuna.samplers.TPESampler(seed=config.tuning.seed + worker),
        pruner=make_pruner(config),
        direction=direction,
        load_if_exists=True,
    )


@dataclass(frozen=True)
class SplitData:
    """What trials fit on and score against; ``train_rows_available`` is the train split's size before sampling."""

    x_train: pd.DataFrame
    y_train: np.ndarray
    x_validation: pd.DataFrame
    y_validation: np.ndarray
    train_rows_available: int = 0

    @classmethod
    def from_training_set(cls, training_set: pd.DataFrame, config: DatasetConfig) -> SplitData:
        """The splits, the train one sampled down to ``tuning.max_train_rows``.

        Why: a trial compares settings, and their ranking settles long before a million
        rows (the study took 242 s of a 580 s run at 1M rows); the seed makes the sample
        the same in every worker and on every resume.
        """
        train, validation = split_frame(training_set, "train"), split_frame(training_set, "validation")
        available, cap = len(train), config.tuning.max_train_rows
        if cap is not None and available > cap:
            keep = np.random.default_rng(config.tuning.seed).choice(available, size=cap, replace=False)
            train = train.iloc[np.sort(keep)]  # in time order, as the split was
        return cls(train[config.model_features], binary_target(train, config).to_numpy(),
                   validation[config.model_features], binary_target(validation, config).to_numpy(), available)

    def describe(self) -> str:
        """``"all 14,000 training rows"`` or ``"200,000 of 700,000 training rows (seeded sample)"``."""
        used = len(self.x_train)
        if used >= self.train_rows_available:
            return f"all {used:,} training rows"
        return f"{used:,} of {self.train_rows_available:,} training rows (seeded sample)"


def stage_budgets(config: DatasetConfig, params: dict[str, Any]) -> list[int] | None:
    """Values of the staged parameter after each stage, or None for a family trained in one go."""
    staged = FAMILIES[config.model.family].staged_param
    if staged is None:
        return None
    estimator = build_pipeline(config, params).named_steps["model"]
    total = int(estimator.get_params()[staged])
    stages = max(1, min(config.tuning.stages, total))
    return sorted({max(1, math.ceil(total * k / stages)) for k in range(1, stages + 1)})


def make_objective(config: DatasetConfig, data: SplitData, recorder: TrialRecorder | None, worker: int,
                   tags: dict[str, str]) -> Callable[[optuna.Trial], float]:
    metric = config.tuning.metric
    score = METRICS[metric][1]
    staged = FAMILIES[config.model.family].staged_param

    def objective(trial: optuna.Trial) -> float:
        start = time.time()
        params = suggest(trial, config.search_space)
        trial.set_user_attr("worker", worker)
        intermediate: dict[int, float] = {}
        state, value, error = "FAIL", None, None
        try:
            pipeline = build_pipeline(config, params)
            budgets = stage_budgets(config, params)
            if budgets is None:
                pipeline.fit(data.x_train, data.y_train)
                value = float(score(data.y_validation, pipeline.predict_proba(data.x_validation)[:, 1]))
            else:
                pipeline.set_params(model__warm_start=True)
                for step, budget in enumerate(budgets, start=1):
                    pipeline.set_params(**{f"model__{staged}": budget})
                    pipeline.fit(data.x_train, data.y_train)
                    value = float(score(data.y_validation, pipeline.predict_proba(data.x_validation)[:, 1]))
                    intermediate[step] = value
                    trial.report(value, step)
                    if trial.should_prune():
                        state = "PRUNED"
                        raise optuna.TrialPruned(f"pruned at stage {step} with validation {metric} {value:.4f}")
            if not math.isfinite(value):
                raise ValueError(f"validation {metric} is {value}")
            state = "COMPLETE"
            return value
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            error = "".join(traceback.format_exception_only(exc)).strip()
            trial.set_user_attr("error", error)
            raise
        finally:
            if recorder is not None:
                recorder.record(TrialRecord(trial.number, state, params, metric, intermediate,
                                            value if state == "COMPLETE" else None, int(start * 1000),
                                            int(time.time() * 1000), worker, error, tags))

    return objective


@dataclass
class StudyOutcome:
    """What a study found, as handed to the ``model`` asset."""

    study_name: str
    storage: str
    metric: str
    direction: str
    best_params: dict[str, Any]
    best_value: float | None
    best_trial: int | None
    trials: dict[str, int]
    new_trials: int
    seconds: float
    mlflow_run_id: str | None = None
    plots: dict[str, str] = field(default_factory=dict)
    tuned: bool = True
    tuning_rows: str = ""  # what the trials fitted on: SplitData.describe()

    @property
    def summary(self) -> str:
        if not self.tuned:
            return "no search space: the config's fixed parameters are used"
        counts = ", ".join(f"{n} {s.lower()}" for s, n in self.trials.items() if n)
        return (f"study {self.study_name}: {counts}; best validation {self.metric} {self.best_value:.4f} "
                f"(trial {self.best_trial}) with {self.best_params}")


def trial_counts(study: optuna.Study) -> dict[str, int]:
    counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def optimize(study: optuna.Study, config: DatasetConfig, data: SplitData, recorder: TrialRecorder | None,
             worker: int = 0, tags: dict[str, str] | None = None, n_trials: int | None = None,
             on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
             threads: int | None = None) -> None:
    """Run trials until the study holds ``n_trials`` (all workers together) or the timeout passes.

    ``threads`` caps OpenMP/BLAS threads for the fits (default: all cores): several processes
    whose fits each spin on every core collapse throughput (6-13x measured here).
    """
    from threadpoolctl import threadpool_limits

    limit = n_trials or config.tuning.n_trials
    if len(study.get_trials(deepcopy=False)) >= limit:
        return
    callbacks = [optuna.study.MaxTrialsCallback(limit, states=None)]
    if on_trial is not None:
        callbacks.append(on_trial)
    with threadpool_limits(threads or os.cpu_count() or 1):
        study.optimize(make_objective(config, data, recorder, worker, tags or {}), n_trials=limit,
                       timeout=config.tuning.timeout_seconds, catch=(Exception,), callbacks=callbacks,
                       gc_after_trial=False)


def outcome_of(study: optuna.Study, config: DatasetConfig, storage: str, new_trials: int, seconds: float) -> StudyOutcome:
    counts = trial_counts(study)
    if counts["COMPLETE"] == 0:
        errors = [t.user_attrs.get("error") for t in study.get_trials(deepcopy=False) if t.user_attrs.get("error")]
        cause = f"; first error: {errors[0]}" if errors else ""
        raise StudyError(f"study {study.study_name}: no trial completed ({counts['PRUNED']} pruned, "
                         f"{counts['FAIL']} failed){cause}")
    best = study.best_trial
    return StudyOutcome(study.study_name, redacted(storage), config.tuning.metric, METRICS[config.tuning.metric][0],
                        dict(best.params), float(best.value), best.number, counts, new_trials, seconds)


def untuned_outcome(config: DatasetConfig) -> StudyOutcome:
    return StudyOutcome("", "", config.tuning.metric, METRICS[config.tuning.metric][0], {}, None, None, {}, 0, 0.0,
                        tuned=False)


def study_plots(study: optuna.Study, folder: Path) -> dict[str, str]:
    """Optimization history, parameter importances, parallel coordinates: PNG files in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    folder.mkdir(parents=True, exist_ok=True)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    makers = {"optimization_history": optuna_plots.plot_optimization_history,
              "parallel_coordinates": optuna_plots.plot_parallel_coordinate}
    # Importances need two completed trials that differ in some parameter.
    if len(complete) >= 2 and len({json.dumps(t.params, sort_keys=True) for t in complete}) >= 2:
        makers["param_importances"] = lambda s: optuna_plots.plot_param_importances(
            s, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    paths = {}
    for name, make in makers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            axes = make(study)
        figure = (axes.flat[0] if isinstance(axes, np.ndarray) else axes).get_figure()
        figure.set_size_inches(7, 4.5)
        figure.tight_layout()
        path = folder / f"{name}.png"
        # Fixed metadata: the same study draws the same bytes (artifacts are stored once by content).
        figure.savefig(path, format="png", dpi=90, metadata={"Software": None})
        plt.close(figure)
        paths[name] = str(path)
    return paths


def data_snapshot_of(training_set: pd.DataFrame) -> str:
    return frame_fingerprint(training_set)


def check_tunable(config: DatasetConfig) -> None:
    """Everything about the config a study needs, checked before any work starts."""
    check_search_space(config)
