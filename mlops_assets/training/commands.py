"""``mlops tune``, ``mlops reproduce``, ``mlops compare``, ``mlops runs search``, ``mlops artifacts``.

Each command reads the platform as it is (the materialized training set in the Dagster
instance, the runs in MLflow) and prints what a person acts on. Errors are one line.
"""

from __future__ import annotations

import time

import click
import pandas as pd

from mlops_assets.config import DatasetConfig, load_dataset_configs
from mlops_assets.errors import PlatformError
from mlops_assets.settings import Settings


class DatasetNotFoundError(PlatformError, LookupError):
    """A dataset name with no config, or a dataset whose training set was never materialized."""


def _settings() -> Settings:
    settings = Settings.from_env()
    settings.export()
    return settings


def dataset_config(settings: Settings, name: str) -> DatasetConfig:
    configs = {c.name: c for c in load_dataset_configs(settings.configs)}
    if name not in configs:
        raise DatasetNotFoundError(f"no dataset {name!r} in {settings.configs}; known: {', '.join(sorted(configs))}")
    return configs[name]


def materialized_training_set(settings: Settings, config: DatasetConfig) -> pd.DataFrame:
    """The dataset's training set as the platform last materialized it."""
    import dagster as dg

    from mlops_assets.pipeline.runs import load_definitions

    instance = dg.DagsterInstance.get()
    key = dg.AssetKey([config.name, "training_set"])
    if instance.get_latest_materialization_event(key) is None:
        raise DatasetNotFoundError(f"{config.name}/training_set was never materialized in {settings.dagster_storage}: "
                                   "run `mlops materialize` first")
    return load_definitions(settings).load_asset_value(key, instance=instance)


def print_mlflow_link(settings: Settings, port: int) -> None:
    """Where to open the MLflow UI so that it shows the runs (model training view)."""
    from mlops_assets.training.registry import ensure_experiment
    from mlops_assets.training.tracking import experiment_url

    click.echo(f"open {experiment_url(f'http://127.0.0.1:{port}', ensure_experiment(settings))}")


@click.command()
@click.argument("dataset")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="worker processes on this machine (each caps its threads at cores/workers)")
@click.option("--trials", type=click.IntRange(min=1), help="trials in the study, all workers together "
              "[default: tuning.n_trials of the config]")
@click.option("--worker-offset", default=0, show_default=True, type=click.IntRange(min=0),
              help="first worker index here (seed = tuning.seed + index); give each host its own range")
def tune(dataset: str, workers: int, trials: int | None, worker_offset: int) -> None:
    """Run (or continue) DATASET's Optuna study on its materialized training set."""
    from mlops_assets.training.study import check_tunable
    from mlops_assets.training.tuning import tune as run_study

    settings = _settings()
    config = dataset_config(settings, dataset)
    check_tunable(config)
    if not config.search_space:
        raise DatasetNotFoundError(f"dataset {dataset!r} has no search_space in {config.path}: nothing to tune")
    training_set = materialized_training_set(settings, config)
    wanted = trials or config.tuning.n_trials
    click.echo(f"tuning {dataset}: up to {wanted} trials, {workers} worker(s), study storage "
               f"{settings.optuna_storage.split('@')[-1]}")
    with click.progressbar(length=wanted, label="trials", show_pos=True) as bar:
        def progress(done: int, total: int) -> None:
            bar.update(min(done, total) - bar.pos)

        outcome = run_study(settings, config, training_set, workers=workers, worker_offset=worker_offset,
                            n_trials=trials, progress=progress)
    click.echo(outcome.summary)
    click.echo(f"study run: {outcome.mlflow_run_id} ({outcome.new_trials} new trials in {outcome.seconds:.1f} s); "
               "the next `mlops materialize` trains the model with these parameters")


@click.command()
@click.argument("run_id")
def reproduce(run_id: str) -> None:
    """Retrain RUN_ID's model from its records; report environment, data, metrics, predictions."""
    from mlops_assets.training.reproduce import model_run, reproduce_run

    settings = _settings()
    run = model_run(settings, run_id)
    config = dataset_config(settings, run.data.tags["dataset"])
    result = reproduce_run(settings, run_id, config, materialized_training_set(settings, config))
    click.echo(result.report())
    if not result.exact:
        raise SystemExit(1)


@click.command()
@click.argument("run_a")
@click.argument("run_b")
def compare(run_a: str, run_b: str) -> None:
    """Compare two model runs on the same test rows, with paired intervals and p-values (B - A)."""
    from mlops_assets.features.training_set import binary_target, split_frame
    from mlops_assets.markdown import markdown_table
    from mlops_assets.training.comparison import compare_models
    from mlops_assets.training.registry import load_logged
    from mlops_assets.training.reproduce import RunNotFoundError, model_run

    settings = _settings()
    runs = [model_run(settings, run_id) for run_id in (run_a, run_b)]
    datasets = {run.data.tags["dataset"] for run in runs}
    if len(datasets) != 1:
        raise RunNotFoundError(f"runs {run_a} and {run_b} trained different datasets ({', '.join(sorted(datasets))}): "
                               "a paired comparison needs the same test rows")
    config = dataset_config(settings, datasets.pop())
    test = split_frame(materialized_training_set(settings, config), "test")
    y = binary_target(test, config).to_numpy()
    scores = [load_logged(settings, f"runs:/{run.info.run_id}/model").predict_proba(test[config.model_features])[:, 1]
              for run in runs]
    thresholds = [float(run.data.tags.get("decision_threshold", 0.5)) for run in runs]
    result = compare_models(y, scores[0], scores[1], thresholds[0], thresholds[1],
                            significance_level=config.comparison.significance_level,
                            bootstrap_samples=config.comparison.bootstrap_samples, seed=config.comparison.seed,
                            label_a=f"A {run_a[:8]}", label_b=f"B {run_b[:8]}")
    click.echo(f"{config.name}: {len(y)} test rows (the current training set's test split), differences are B - A")
    click.echo(markdown_table(pd.DataFrame(result.table())))
    click.echo(result.summary)


@click.group()
def runs() -> None:
    """The run history in MLflow."""


@runs.command("search")
@click.argument("filter_string", default="", required=False)
@click.option("--order-by", "order_by", multiple=True, help="e.g. 'metrics.test_roc_auc DESC' (repeatable)")
@click.option("--max", "max_results", type=int, default=20, show_default=True, help="rows to print")
@click.option("--columns", help="comma-separated columns to show, e.g. metrics.test_roc_auc,params.learning_rate")
@click.option("--all-experiments", is_flag=True, help="search every active experiment, not only the platform's")
def search(filter_string: str, order_by: tuple[str, ...], max_results: int, columns: str | None,
           all_experiments: bool) -> None:
    """Runs matching FILTER_STRING (MLflow's syntax: metrics., params., tags., attributes.)."""
    from mlops_assets.markdown import markdown_table
    from mlops_assets.training.registry import client
    from mlops_assets.training.run_search import SearchRequest, check_request, results_table, search_runs

    settings = _settings()
    request = SearchRequest(filter_string, order_by, max_results)
    check_request(request)
    experiment_ids = [e.experiment_id for e in client(settings).search_experiments()] if all_experiments else None
    started = time.perf_counter()
    found = search_runs(settings, request, experiment_ids)
    elapsed = time.perf_counter() - started
    wanted = [c.strip() for c in columns.split(",")] if columns else None
    if found.empty:
        click.echo(f"no run matches {filter_string!r} ({elapsed:.2f} s)")
        return
    click.echo(markdown_table(results_table(found, wanted, limit=max_results)))
    click.echo(f"{len(found)} run(s) shown, searched in {elapsed:.2f} s")


@click.group()
def artifacts() -> None:
    """The local artifact store (content-addressed de-duplication)."""


@artifacts.command("dedup")
def dedup() -> None:
    """Store every identical artifact once (hard links into MLOPS_HOME/mlflow/cas); print the saving."""
    from mlops_assets.training.artifacts import deduplicate

    report = deduplicate(_settings())
    click.echo(f"{report.files} artifact files: {report.logical_bytes / 1e6:.1f} MB in MLflow's layout, "
               f"{report.stored_bytes / 1e6:.1f} MB stored ({100 * report.saved_fraction:.0f}% saved, "
               f"{report.newly_linked} files newly linked)")
