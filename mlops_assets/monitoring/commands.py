"""``mlops monitor ...``: the monitoring engine from the command line, on any two files of a dataset's rows."""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from mlops_assets.errors import PlatformError


class MonitorInputError(PlatformError, ValueError):
    """A window file that cannot be read or lacks what the dataset config needs."""


def read_window_file(path: Path, config) -> tuple[pd.DataFrame, list[str]]:
    """Rows from a CSV or Parquet file, typed by the config's strict rules, derived features added.

    A value that does not fit its column's type becomes missing (and counts in the missing share);
    the second element says how many there were, per column.
    """
    from mlops_assets.data.coercion import coerce_column
    from mlops_assets.data.sources import with_identity_columns
    from mlops_assets.features.engineering import derive_features

    if not path.is_file():
        raise MonitorInputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise MonitorInputError(f"{path}: a window file is .csv or .parquet")
    try:
        if suffix == ".csv":
            # As the source reader does: text and dates as text, the strict typing below parses them.
            text = {c: str for c, spec in config.columns.items() if spec.type in {"string", "categorical", "datetime"}}
            frame = pd.read_csv(path, dtype=text)
        else:
            frame = pd.read_parquet(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise MonitorInputError(f"{path}: cannot read: {exc}") from exc
    missing = [c for c in config.features if c not in frame.columns]
    if missing:
        raise MonitorInputError(f"{path}: lacks the model features {missing} of dataset {config.name!r}")
    notes = []
    for name, spec in config.columns.items():
        if name in frame.columns:
            frame[name], problems = coerce_column(frame[name], spec)
            unreadable = sum(int(mask.sum()) for _, mask in problems)
            if unreadable:
                notes.append(f"{path.name}: {unreadable:,} values of {name!r} are not a valid {spec.type} "
                             "and count as missing")
    return derive_features(with_identity_columns(frame, config), config), notes


@click.group()
def monitor() -> None:
    """Drift and performance reports (docs/monitoring.md)."""


@monitor.command()
@click.argument("dataset")
@click.option("--reference", type=click.Path(path_type=Path), required=True, help="CSV or Parquet file of rows")
@click.option("--current", type=click.Path(path_type=Path), required=True, help="CSV or Parquet file of rows")
@click.option("--model", "model_version", default=None,
              help="registered version to score both windows with, or 'champion' (default: data drift only)")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="folder for the HTML report (default: MLOPS_HOME/reports/<dataset>/drift)")
@click.option("--fail-on-drift", is_flag=True, help="exit with status 1 when the verdict is drift")
def compare(dataset: str, reference: Path, current: Path, model_version: str | None, output: Path | None,
            fail_on_drift: bool) -> None:
    """Compare a CURRENT window of DATASET's rows with a REFERENCE window; write the HTML report."""
    from mlops_assets.config import load_dataset_configs
    from mlops_assets.monitoring.html_report import write_report
    from mlops_assets.monitoring.monitor import ModelUnderWatch, monitor as run_monitor
    from mlops_assets.monitoring.windows import Window
    from mlops_assets.settings import Settings
    from mlops_assets.training.registry import load_champion, load_version

    settings = Settings.from_env()
    settings.export()
    configs = {c.name: c for c in load_dataset_configs(settings.configs)}
    if dataset not in configs:
        raise MonitorInputError(f"unknown dataset {dataset!r}; configured: {', '.join(sorted(configs))}")
    config = configs[dataset]
    model = None
    if model_version is not None:
        served = (load_champion(settings, config) if model_version == "champion"
                  else load_version(settings, config, model_version))
        model = ModelUnderWatch(f"{config.registered_model_name} v{served.version}", served.score,
                                served.decision_threshold)
    windows, reading_notes = [], []
    for path in (reference, current):
        frame, notes = read_window_file(path, config)
        windows.append(Window(frame, str(path), config.time_column))
        reading_notes += notes
    report = run_monitor(*windows, config, model)
    path = write_report(report, output or settings.dataset_reports(dataset) / "drift")
    click.echo(report.drift.summary())
    for note in reading_notes + report.drift.notes + report.notes:
        click.echo(f"  note: {note}")
    click.echo(f"report: {path}")
    if fail_on_drift and report.verdict == "drift":
        raise SystemExit(1)
