"""Monitoring assets of one dataset: data drift between the training rows and a current batch."""


import dagster as dg
import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.dagster_metadata import markdown_table
from mlops_assets.data.sources import generate_current_batch
from mlops_assets.features.engineering import build_feature_table
from mlops_assets.features.training_set import split_frame
from mlops_assets.monitoring.drift import DriftResult, compute_drift
from mlops_assets.settings import Settings

GROUP = "monitoring"


def current_features(config: DatasetConfig, training_set: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The batch to compare with the training rows, and where it came from."""
    batch = generate_current_batch(config)
    if batch is None:
        return split_frame(training_set, "test"), "the newest (test) rows of the source"
    drift = config.drift
    return (
        build_feature_table(batch, config),
        f"{drift.current_rows} generated rows after the training period "
        f"(covariate_drift={drift.covariate_drift}, concept_drift={drift.concept_drift})",
    )


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
        reference = split_frame(training_set, "train")
        current, origin = current_features(config, training_set)
        result = compute_drift(
            reference,
            current,
            numeric_columns=config.numeric_features,
            categorical_columns=config.categorical_features,
            numeric_method=config.drift.numeric_method,
            categorical_method=config.drift.categorical_method,
            threshold=config.drift.threshold,
            html_path=settings.dataset_reports(name) / "drift_report.html",
        )
        context.log.info(f"{name}: drift share {result.drift_share:.2f}, drifted {result.drifted_columns}")
        return dg.Output(
            result,
            metadata={
                "drift_share": dg.MetadataValue.float(result.drift_share),
                "drifted_columns": dg.MetadataValue.json(result.drifted_columns),
                "columns_compared": dg.MetadataValue.int(len(result.columns)),
                "reference_rows": dg.MetadataValue.int(len(reference)),
                "current_rows": dg.MetadataValue.int(len(current)),
                "current_batch": origin,
                "columns": dg.MetadataValue.md(result.to_markdown()),
                "report": dg.MetadataValue.path(str(result.html_path)),
            },
        )

    return [drift_report]
