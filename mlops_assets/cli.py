"""The ``mlops`` command: everything that is not a Dagster materialization from the UI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import click
import dagster as dg

from mlops_assets.errors import PlatformError
from mlops_assets.features.commands import features as features_commands
from mlops_assets.monitoring.commands import monitor
from mlops_assets.pipeline.commands import promote
from mlops_assets.settings import PROJECT_ROOT, Settings

# dagster-mlflow is marked beta by Dagster; it is the integration the design chose, so say it once, in the docs.
warnings.filterwarnings("ignore", category=dg.BetaWarning)


def _settings() -> Settings:
    settings = Settings.from_env()
    settings.export()
    return settings


def _exec(command: list[str], settings: Settings) -> None:
    """Run a long-lived tool in the foreground until it ends.

    Ctrl-C reaches the tool directly (same process group). A SIGTERM or SIGHUP sent to
    this command alone (a supervisor, `kill`) is passed on, so the tool never outlives it.
    """
    env = {**os.environ, **settings.environ()}
    # A child started from a script may inherit an ignored SIGINT (dagster dev then ignores SIGTERM too).
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for passed_on in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(passed_on, lambda signum, _frame: process.send_signal(signum))
    try:
        sys.exit(process.wait())
    except KeyboardInterrupt:
        sys.exit(process.wait())


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


class _Commands(click.Group):
    """Errors the platform raises on purpose end the command with their message, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PlatformError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """mlops-assets: one Dagster lineage graph for the ML lifecycle, served by BentoML.

    State lives under MLOPS_HOME (default ./.mlops); dataset configs under MLOPS_CONFIGS
    (default configs/). See docs/configuration.md for every variable.
    """


@main.command()
def demo() -> None:
    """Materialize the whole graph, serve the champion, send real predictions, stop."""
    from mlops_assets.demo import run_demo

    summary = run_demo(_settings(), echo=click.echo)
    if not summary.success:
        raise click.ClickException(f"the main job failed (run {summary.run_id}); `mlops ui` shows its logs")


@main.command()
@click.option("--verbose", "-v", is_flag=True, help="Print Dagster's log of the run, tracebacks included.")
def materialize(verbose: bool) -> None:
    """Materialize every asset of every dataset once (the main job), in this process."""
    if not verbose:  # the summary below says what failed; Dagster's log repeats each traceback several times
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is first imported
    from mlops_assets.pipeline.runs import run_main_job

    summary = run_main_job(_settings(), log_level="INFO" if verbose else "CRITICAL")
    click.echo(summary.table())
    click.echo(summary.models_table())
    if not summary.success:
        raise click.ClickException(f"{summary.first_failure or 'a check failed'}; run {summary.run_id} failed after "
                                   f"{summary.duration:.1f} s: `mlops materialize --verbose` prints Dagster's log, "
                                   "`mlops ui` shows it")
    click.echo(f"run {summary.run_id}: success in {summary.duration:.1f} s")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="interface to listen on")
@click.option("--port", default=3001, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="API worker processes")
def serve(host: str, port: int, workers: int) -> None:
    """Serve each dataset's champion model over HTTP (BentoML) until Ctrl-C."""
    from mlops_assets.config import load_dataset_configs
    from mlops_assets.serving import check_prediction_log, check_servable, serve_command, server_environment

    settings = _settings()
    served = check_servable(settings, load_dataset_configs(settings.configs))
    check_prediction_log(settings)
    os.environ.update(server_environment(settings, workers))  # BentoML takes the worker count from the service
    click.echo(f"serving {', '.join(served)} on http://{host}:{port} with {workers} worker(s) "
               "(POST /predict, /predict_batch, /feedback; GET /models, /experiment; docs at /)")
    _exec(serve_command(host, port), settings)


@main.command()
@click.option("--port", default=3000, show_default=True, type=int)
def ui(port: int) -> None:
    """The Dagster UI and daemon (`dagster dev`) on this project's workspace and instance."""
    settings = _settings()
    _exec([_tool("dagster"), "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)], settings)


@main.command("mlflow-ui")
@click.option("--port", default=5000, show_default=True, type=int)
def mlflow_ui(port: int) -> None:
    """The MLflow UI on this home's tracking database and artifacts."""
    settings = _settings()
    from mlops_assets.training.commands import print_mlflow_link

    print_mlflow_link(settings, port)
    _exec([_tool("mlflow"), "ui", "--backend-store-uri", settings.mlflow_tracking_uri,
           "--default-artifact-root", settings.mlflow_artifacts.as_uri(), "--host", "127.0.0.1", "--port", str(port)],
          settings)


main.add_command(features_commands)
main.add_command(promote)
from mlops_assets.training import commands as training_commands  # noqa: E402

main.add_command(training_commands.tune)
main.add_command(training_commands.reproduce)
main.add_command(training_commands.compare)
main.add_command(training_commands.runs)
main.add_command(training_commands.artifacts)
main.add_command(monitor)

from mlops_assets.governance import commands as governance_commands  # noqa: E402

main.add_command(governance_commands.approve)
main.add_command(governance_commands.reject)
main.add_command(governance_commands.explain)
main.add_command(governance_commands.lineage)
main.add_command(governance_commands.governance)

from mlops_assets.serving.commands import experiment  # noqa: E402

main.add_command(experiment)

if __name__ == "__main__":
    main()
