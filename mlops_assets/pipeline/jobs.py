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
    # One process for all steps: each step process would re-import Dagster, MLflow, Evidently and
    # scikit-learn (~8 s each), so the multiprocess default took 81 s for what runs in 15 s here.
    # (definitions.py makes it the default for every job, the UI's implicit asset job too.)
    executor_def=dg.in_process_executor,
    description="Materialize every dataset's graph: raw rows -> features -> training set -> model -> "
    "evaluation -> champion alias, model card and drift report.",
)
