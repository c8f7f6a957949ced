"""The MLflow resource: dagster-mlflow's run-per-Dagster-run, opened in our experiment, always closed.

dagster-mlflow's ``mlflow_tracking`` calls ``mlflow.set_experiment``, which would create
the experiment with its artifacts under ``./mlruns`` of whatever directory the process
runs in. This resource first creates the experiment with its artifacts under
``MLOPS_HOME``, then hands over to dagster-mlflow's ``MlFlow`` unchanged.

dagster-mlflow closes its run only through the ``end_mlflow_on_run_finished`` hook,
which ``mlops_main`` carries; but "Materialize" in the UI runs Dagster's implicit asset
job, which carries no hook, and the MLflow run would stay RUNNING forever. So when the
resource is torn down (the end of the run, with the in-process executor) it closes a
run still open: FAILED if a step failed, FINISHED otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import mlflow
from dagster_mlflow.resources import CONFIG_SCHEMA, MlFlow

from mlops_assets.settings import Settings
from mlops_assets.training.registry import ensure_experiment
from mlops_assets.training.tracking import DESCRIPTION_TAG, now_label


@dg.resource(config_schema=CONFIG_SCHEMA, description="MLflow run for this Dagster run (dagster-mlflow).")
def mlflow_tracking_in_home(context: dg.InitResourceContext) -> Iterator[MlFlow]:
    settings = Settings.from_env()
    ensure_experiment(settings)
    tracking = MlFlow(context)
    run_id = mlflow.active_run().info.run_id  # MlFlow leaves its mlflow_run_id None for a new run
    # dagster-mlflow names the run after the job (`__ASSET_JOB`, `mlops_main`): say what and when as well.
    job = context.dagster_run.job_name if context.dagster_run else "dagster"
    job = "asset materialization" if job.startswith("__ASSET_JOB") else job
    dagster_run_id = context.dagster_run.run_id if context.dagster_run else "?"
    mlflow.set_tags({"mlflow.runName": f"{job} {now_label()} (dagster {dagster_run_id[:8]})",
                     DESCRIPTION_TAG: f"Dagster run of job `{job}`. Nested: each dataset's "
                                      "study (with its trials) and model run; the headline test metrics of each "
                                      "dataset evaluated in this run are logged here."})
    try:
        yield tracking
    finally:
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run_id:
            failed = context.instance is not None and bool(
                context.instance.all_logs(context.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
            )
            mlflow.end_run(status="FAILED" if failed else "FINISHED")


def mlflow_resource(settings: Settings) -> dg.ResourceDefinition:
    """The resource configured for one platform home."""
    return mlflow_tracking_in_home.configured(
        {
            "experiment_name": settings.mlflow_experiment,
            "mlflow_tracking_uri": settings.mlflow_tracking_uri,
            "env_to_tag": ["MLOPS_HOME"],
        }
    )
