"""The MLflow resource: dagster-mlflow's run-per-Dagster-run, opened in our experiment.

dagster-mlflow's ``mlflow_tracking`` calls ``mlflow.set_experiment``, which would create
the experiment with its artifacts under ``./mlruns`` of whatever directory the process
runs in. This resource first creates the experiment with its artifacts under
``MLOPS_HOME`` and then hands over to dagster-mlflow unchanged. Jobs that use it must
carry the ``end_mlflow_on_run_finished`` hook, or the MLflow run stays RUNNING.
"""

from __future__ import annotations

import dagster as dg
from dagster_mlflow.resources import CONFIG_SCHEMA, MlFlow

from mlops_assets.settings import Settings
from mlops_assets.training.registry import ensure_experiment


@dg.resource(config_schema=CONFIG_SCHEMA, description="MLflow run for this Dagster run (dagster-mlflow).")
def mlflow_tracking_in_home(context: dg.InitResourceContext) -> MlFlow:
    settings = Settings.from_env()
    ensure_experiment(settings)
    return MlFlow(context)


def mlflow_resource(settings: Settings) -> dg.ResourceDefinition:
    """The resource configured for one platform home."""
    return mlflow_tracking_in_home.configured(
        {
            "experiment_name": settings.mlflow_experiment,
            "mlflow_tracking_uri": settings.mlflow_tracking_uri,
            "env_to_tag": ["MLOPS_HOME"],
        }
    )
