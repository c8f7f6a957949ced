"""Monitoring assets of one dataset: data drift between the training rows and a current batch."""

import dagster as dg
import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.dagster_metadata import rounded
from mlops_assets.monitoring.drift import DriftResult
from mlops_assets.monitoring.training_drift import drift_against_training
from mlops_assets.settings import Settings

GROUP = "monitoring"


def build_monitoring_assets(config: DatasetConfig, settings: Settings) -> list[dg.AssetsDefinition]:
    name = config.name

    @dg.asset(
        key=[name, "drift_report"],
        ins={"training_set": dg.AssetIn(dg.AssetKey([name, "training_set"]))},
        group_name=GROUP,
        owners=config.owners,
        kinds={"evidently"},
        description=f"Evidently data-drift report of the {name} model features: the train split is the "
        f"reference; numeric columns are judged by {config.drift.numeric_method}, categorical ones by "
        f"{config.drift.categorical_method}, threshold {config.drift.threshold}. HTML under MLOPS_HOME/reports.",
    )
    def drift_report(context: dg.AssetExecutionContext, training_set: pd.DataFrame) -> dg.Output[DriftResult]:
        drift = drift_against_training(config, training_set, settings.dataset_reports(name) / "drift_report.html")
        result = drift.result
        context.log.info(f"{name}: drift share {result.drift_share:.2f}, drifted {result.drifted_columns}")
        return dg.Output(
            result,
            metadata={
                "drift_share": rounded(result.drift_share),
                "drifted_columns": dg.MetadataValue.json(result.drifted_columns),
                "columns_compared": dg.MetadataValue.int(len(result.columns)),
                "reference_rows": dg.MetadataValue.int(drift.reference_rows),
                "current_rows": dg.MetadataValue.int(drift.current_rows),
                "current_batch": drift.current_origin,
                "columns": dg.MetadataValue.md(result.to_markdown()),
                "report": dg.MetadataValue.path(str(result.html_path)),
            },
        )

    return [drift_report]
