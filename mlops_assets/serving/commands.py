"""``mlops experiment start|status|stop``: run an experiment on the service from the command line.

The commands change the experiment state in the prediction log's database, the same
place the admin endpoints write; every worker of a running service picks the change up
within a second. No running service is needed to prepare an experiment, and ``status``
reads the same statistics as ``GET /experiment``.
"""

from __future__ import annotations

import getpass
import json

from typing import TYPE_CHECKING, get_args

import click

from mlops_assets.config import ExperimentMode
from mlops_assets.errors import PlatformError
from mlops_assets.settings import Settings

if TYPE_CHECKING:
    from mlops_assets.config import DatasetConfig
    from mlops_assets.serving.experiments import Experiment, ExperimentStore

MODES = get_args(ExperimentMode)


class UnknownDatasetError(PlatformError, LookupError):
    """The dataset named on the command line has no config."""


def _context(dataset: str) -> tuple[Settings, DatasetConfig, ExperimentStore]:
    # Imported here: `mlops --help` should not wait for pandas, SQLAlchemy and MLflow.
    from mlops_assets.config import load_dataset_configs
    from mlops_assets.serving.experiments import ExperimentStore
    from mlops_assets.serving.prediction_log import connect

    settings = Settings.from_env()
    settings.export()
    configs = {c.name: c for c in load_dataset_configs(settings.configs, require_source=False)}
    if dataset not in configs:
        raise UnknownDatasetError(f"no dataset {dataset!r} in {settings.configs}; known: {', '.join(configs)}")
    store = ExperimentStore(connect(settings.prediction_log_url))
    store.declare(configs[dataset])
    return settings, configs[dataset], store


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def describe(experiment: Experiment) -> str:
    return (f"experiment {experiment.id} on {experiment.dataset}: {experiment.status}, mode {experiment.mode}, "
            f"split {experiment.split} ({experiment.champion_alias} / {experiment.challenger_alias}), "
            f"phase since {experiment.phase_started_at:%Y-%m-%d %H:%M:%S} UTC, last change by {experiment.changed_by}")


@click.group()
def experiment() -> None:
    """Run A/B and shadow experiments between the champion and a challenger on the service."""


@experiment.command()
@click.argument("dataset")
@click.option("--id", "experiment_id", help="experiment id (seeds the assignment); default: the running or declared one")
@click.option("--mode", type=click.Choice(MODES), help="ab: split traffic; shadow: the challenger scores off the "
              "response path; single: champion only")
@click.option("--split", help="champion/challenger traffic in percent, e.g. 90/10")
@click.option("--champion", "champion_alias", help="registry alias of the control (default: champion)")
@click.option("--challenger", "challenger_alias", help="registry alias of the treatment (default: challenger)")
@click.option("--note", help="why: kept with the experiment")
def start(dataset: str, experiment_id: str | None, mode: str | None, split: str | None, champion_alias: str | None,
          challenger_alias: str | None, note: str | None) -> None:
    """Start an experiment on DATASET, or change the running one (a new split or mode starts a new phase)."""
    from mlops_assets.training.registry import alias_version

    settings, config, store = _context(dataset)
    started = store.start(config, experiment_id=experiment_id, mode=mode, split=split, champion=champion_alias,
                          challenger=challenger_alias, by=_who(), note=note)
    click.echo(describe(started))
    if started.mode != "single" and alias_version(settings, config, started.challenger_alias) is None:
        click.echo(f"note: no version of {config.registered_model_name} holds the alias '{started.challenger_alias}' "
                   f"yet; set one (`mlops promote {config.registered_model_name} VERSION --alias "
                   f"{started.challenger_alias}`) and the service starts splitting once it has loaded it")
    else:
        click.echo("a running service applies this within a second (GET /models shows what it serves)")


@experiment.command()
@click.argument("dataset")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON (what GET /experiment answers)")
def status(dataset: str, as_json: bool) -> None:
    """The experiment on DATASET: per-variant figures, the challenger's lift and the verdict."""
    from mlops_assets.serving.experiment_report import build_report, report_markdown

    _, config, store = _context(dataset)
    report = build_report(store.engine, config.name, config.experiment, store.active(config.name))
    if as_json:
        click.echo(json.dumps(report.model_dump(mode="json"), indent=2))
        return
    active = store.active(config.name)
    if active is not None:
        click.echo(describe(active))
        click.echo("")
    click.echo(report_markdown(report))


@experiment.command()
@click.argument("dataset")
@click.option("--note", help="why it stops: kept with the experiment")
def stop(dataset: str, note: str | None) -> None:
    """Stop the experiment on DATASET: the champion answers everyone again."""
    _, _, store = _context(dataset)
    stopped = store.stop(dataset, by=_who(), note=note)
    click.echo(describe(stopped))
