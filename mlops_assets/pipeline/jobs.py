"""Jobs: the main job materializes the whole lineage graph."""

from __future__ import annotations

import dagster as dg
from dagster_mlflow import end_mlflow_on_run_finished

MAIN_JOB = "mlops_main"

main_job = dg.define_asset_job(
    MAIN_JOB,
    selection=dg.AssetSelection.all(),
    # Ends the MLflow run dagster-mlflow opened for this Dagster run (else it stays RUNNING).
    hooks={end_mlflow_on_run_finished},
    # Runs in one process: definitions.py makes the in-process executor every job's default.
    description="Materialize every dataset's graph: raw rows -> features -> training set -> model -> "
    "evaluation -> champion alias, model card and drift report.",
)
