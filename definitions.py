"""The code location: one Definitions assembled from each system's assets, jobs and resources.

No logic lives here. Every dataset config under MLOPS_CONFIGS (default ``configs/``)
contributes its own copy of the graph, keyed by the dataset name.
"""

from __future__ import annotations

import dagster as dg

from mlops_assets.config import load_dataset_configs
from mlops_assets.features.assets import build_feature_assets
from mlops_assets.governance.assets import build_governance_assets
from mlops_assets.io_manager import ParquetJsonIOManager
from mlops_assets.monitoring.assets import build_monitoring_assets
from mlops_assets.pipeline.assets import build_pipeline_assets
from mlops_assets.pipeline.checks import build_gate_checks
from mlops_assets.pipeline.jobs import main_job
from mlops_assets.serving.assets import build_serving_assets
from mlops_assets.serving.sensors import build_prediction_log_sensor
from mlops_assets.settings import Settings
from mlops_assets.training.assets import build_training_assets
from mlops_assets.training.resources import mlflow_resource


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    assets: list[dg.AssetsDefinition | dg.AssetSpec] = []
    checks: list[dg.AssetChecksDefinition] = []
    configs = load_dataset_configs(settings.configs)
    for config in configs:
        assets += build_feature_assets(config)
        assets += build_training_assets(config, settings)
        assets += build_pipeline_assets(config, settings)
        checks += build_gate_checks(config, settings)
        governance = build_governance_assets(config, settings)
        assets += [g for g in governance if not isinstance(g, dg.AssetChecksDefinition)]
        checks += [g for g in governance if isinstance(g, dg.AssetChecksDefinition)]
        assets += build_monitoring_assets(config, settings)
        assets += build_serving_assets(config, settings)
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[main_job],
        sensors=[build_prediction_log_sensor(configs, settings)],
        # Every job, the UI's implicit asset job too, runs all steps in one process: with the multiprocess
        # default each step re-imported Dagster, MLflow, Evidently and scikit-learn (~8 s each), and the
        # churn graph took 81 s instead of 15 s.
        executor=dg.in_process_executor,
        resources={
            "mlflow": mlflow_resource(settings),
            "io_manager": ParquetJsonIOManager(base_dir=str(settings.asset_storage)),
        },
    )


defs = build_definitions()
