"""Monitoring assets of one dataset: drift and performance of a current batch against the held-out reference."""

import dagster as dg
import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.markdown import png_markdown
from mlops_assets.monitoring.batch import monitor_current_batch
from mlops_assets.monitoring.charts import effects_png
from mlops_assets.monitoring.monitor import ModelUnderWatch, MonitoringReport
from mlops_assets.monitoring.rules import drift_rules
from mlops_assets.settings import Settings
from mlops_assets.training.evaluation import Evaluation
from mlops_assets.training.registry import attach_to_version, load_version

GROUP = "monitoring"
DRIFT_CHECK = "no_drift"
DRIFT_ARTIFACT_FOLDER = "drift"  # each drift report of a version, among its training run's artifacts


def performance_metadata(report: MonitoringReport) -> dict[str, dg.MetadataValue]:
    """Realized (with labels) and estimated (CBPE) metrics of the current window, as numbers Dagster can plot."""
    metadata: dict[str, dg.MetadataValue] = {}
    for prefix, performance in (("current", report.current_performance),
                                ("estimated", report.estimated_performance)):
        if performance is None:
            continue
        for name, interval in performance.metrics.items():
            metadata[f"{prefix}_{name}"] = dg.MetadataValue.float(round(interval.value, 4))
    return metadata


def drift_check_result(report: MonitoringReport) -> dg.AssetCheckResult:
    """WARN when the current batch drifted: yellow in the lineage view, without stopping anything."""
    drift = report.drift
    return dg.AssetCheckResult(
        check_name=DRIFT_CHECK,
        passed=drift.verdict != "drift",
        severity=dg.AssetCheckSeverity.WARN,
        description=drift.summary(),
        metadata={
            "verdict": drift.verdict,
            "drifted_columns": dg.MetadataValue.json(drift.drifted_columns),
            "drift_share": dg.MetadataValue.float(round(drift.drift_share, 4)),
        },
    )


def build_monitoring_assets(config: DatasetConfig, settings: Settings) -> list[dg.AssetsDefinition]:
    name = config.name
    key = dg.AssetKey([name, "drift_report"])
    rules = drift_rules(config)  # a drift section that does not fit the columns fails here, when the code loads

    @dg.asset(
        key=key,
        ins={"training_set": dg.AssetIn(dg.AssetKey([name, "training_set"])),
             "evaluation": dg.AssetIn(dg.AssetKey([name, "evaluation"]))},
        group_name=GROUP,
        owners=config.owners,
        kinds={"scipy", "html"},
        check_specs=[dg.AssetCheckSpec(
            DRIFT_CHECK, asset=key,
            description="WARN when a feature, the model score or the target moved by more than a negligible "
            f"margin, with a change of what matters caught {rules.power:.0%} of the time (false-alarm rate "
            f"{rules.alpha:g} per report).")],
        description=f"Drift and performance report of the {name} model: a current batch against the held-out "
        "reference (validation and test rows). Per-column verdicts for the features, the model score and the "
        "target, judged by minimum-effect tests against what the config says matters, with the report-level "
        "false-alarm rate held by Holm; realized performance with bootstrap intervals and the CBPE estimate "
        f"before labels. One HTML report per run under MLOPS_HOME/reports/{name}/drift, kept as history.",
    )
    def drift_report(context: dg.AssetExecutionContext, training_set: pd.DataFrame,
                     evaluation: Evaluation) -> dg.MaterializeResult:
        registered = evaluation.model
        served = load_version(settings, config, registered.version)
        model = ModelUnderWatch(f"{registered.name} v{registered.version}", served.score,
                                registered.decision_threshold)
        report, path = monitor_current_batch(config, training_set, model, settings.dataset_reports(name) / "drift",
                                             context.run.run_id)
        # The report also lives with the version's training run (MLflow UI, download_artifacts).
        attach_to_version(settings, config, registered.version, [path, path.with_suffix(".json")],
                          DRIFT_ARTIFACT_FOLDER)
        drift = report.drift
        context.log.info(f"{name}: {drift.summary()} (report: {path})")
        return dg.MaterializeResult(
            metadata={
                "verdict": drift.verdict,
                "summary": drift.summary(),
                "drifted_columns": dg.MetadataValue.json(drift.drifted_columns),
                "drift_share": dg.MetadataValue.float(round(drift.drift_share, 4)),
                "effect_sizes": dg.MetadataValue.json(
                    [{"column": c, "x_what_matters": e} for c, e in drift.effect_sizes.items()]),
                "effects": dg.MetadataValue.md(png_markdown(effects_png(drift), "effect sizes")),
                "columns": dg.MetadataValue.md(drift.to_markdown()),
                "model_version": registered.version,
                "reference_window": f"{drift.reference.description}, {drift.reference.period}",
                "current_window": f"{drift.current.description}, {drift.current.period}",
                "reference_rows": dg.MetadataValue.int(drift.reference.rows),
                "current_rows": dg.MetadataValue.int(drift.current.rows),
                **performance_metadata(report),
                "report": dg.MetadataValue.path(str(path)),
                "report_url": dg.MetadataValue.url(path.resolve().as_uri()),
                "history": dg.MetadataValue.path(str(path.parent / "index.html")),
            },
            check_results=[drift_check_result(report)],
        )

    return [drift_report]
