"""Serving in the lineage graph: the prediction log (external: the service writes it) and the A/B report.

``<dataset>/prediction_log`` is an ``AssetSpec``: Dagster does not make it, the
BentoML service does, and ``prediction_log_observer`` (``sensors.py``) records what is
in it. It depends on ``<dataset>/champion``, so the lineage runs from training through
serving into what reads the log: ``<dataset>/ab_test_report`` here, monitoring next.
"""


import dagster as dg

from mlops_assets.config import DatasetConfig
from mlops_assets.markdown import png_markdown
from mlops_assets.serving.experiment_report import build_report, plot_report, report_markdown
from mlops_assets.serving.experiments import ExperimentStore
from mlops_assets.serving.prediction_log import connect
from mlops_assets.settings import Settings

GROUP = "serving"


def prediction_log_key(config: DatasetConfig) -> dg.AssetKey:
    return dg.AssetKey([config.name, "prediction_log"])


def redacted(url: str) -> str:
    """A database URL without its password, for metadata."""
    import sqlalchemy as sa

    return sa.engine.make_url(url).render_as_string(hide_password=True)


def build_serving_assets(config: DatasetConfig, settings: Settings) -> list[dg.AssetSpec | dg.AssetsDefinition]:
    name = config.name
    log_key = prediction_log_key(config)

    prediction_log = dg.AssetSpec(
        key=log_key,
        deps=[dg.AssetKey([name, "champion"])],
        group_name=GROUP,
        owners=config.owners,
        kinds={"bentoml", "sql"},
        description=f"Every answer of the {name} prediction service: request id, time, entity, experiment, variant, "
        "model version, features, score, decision, latency, and the outcome from POST /feedback. Written by the "
        "service (not by Dagster); the prediction_log_observer sensor records its size as observations.",
        metadata={"table": "predictions", "database": redacted(settings.prediction_log_url)},
    )

    @dg.asset(
        key=[name, "ab_test_report"],
        # The champion too: a run whose pipeline failed upstream skips the report instead of running beside it.
        deps=[log_key, dg.AssetKey([name, "champion"])],
        group_name=GROUP,
        owners=config.owners,
        kinds={"python"},
        automation_condition=dg.AutomationCondition.cron_tick_passed("0 * * * *") & ~dg.AutomationCondition.in_progress(),
        check_specs=[
            dg.AssetCheckSpec("sample_ratio_matches_split", asset=[name, "ab_test_report"],
                              description="Units per variant match the configured split (chi-square, p >= 0.001)."),
            dg.AssetCheckSpec("guardrails_hold", asset=[name, "ab_test_report"],
                              description="The challenger keeps the experiment's guardrails (errors, latency, metrics)."),
        ],
        description=f"The {name} experiment judged from the prediction log and feedback: per-variant figures, "
        "sample-ratio check, the challenger's lift (Welch, always-valid confidence sequence, Bayesian chance to "
        "win, CUPED) and a verdict in words. Refreshed hourly by the automation daemon.",
    )
    def ab_test_report(context: dg.AssetExecutionContext):
        engine = connect(settings.prediction_log_url)
        try:
            experiment = ExperimentStore(engine).active(name)
            report = build_report(engine, name, config.experiment, experiment)
        finally:
            engine.dispose()
        folder = settings.dataset_reports(name)
        png = plot_report(report)
        (folder / "ab_test_report.png").write_bytes(png)
        markdown = report_markdown(report)
        (folder / "ab_test_report.md").write_text(f"# A/B test report: {name}\n\n{markdown}\n\n"
                                                  "![lift](ab_test_report.png)\n")
        context.log.info(f"{name}: {report.verdict.summary}")
        metadata: dict = {
            "verdict": report.verdict.summary,
            "decision": report.verdict.decision,
            "experiment_id": report.experiment_id or "none",
            "report": dg.MetadataValue.md(markdown + "\n\n" + png_markdown(png, "challenger lift")),
            "report_file": dg.MetadataValue.path(str(folder / "ab_test_report.md")),
        }
        for variant in report.variants:
            metadata[f"{variant.variant}_requests"] = dg.MetadataValue.int(variant.requests)
            metadata[f"{variant.variant}_outcomes"] = dg.MetadataValue.int(variant.outcomes)
        if report.primary is not None:
            metadata["relative_lift"] = dg.MetadataValue.float(round(report.primary.relative.estimate, 6))
            metadata["chance_to_win"] = dg.MetadataValue.float(round(report.primary.chance_to_win, 4))
        yield dg.MaterializeResult(metadata=metadata)
        srm = report.sample_ratio
        yield dg.AssetCheckResult(
            check_name="sample_ratio_matches_split", passed=not (srm and srm.mismatch),
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"p_value": dg.MetadataValue.float(srm.p_value) if srm and srm.p_value is not None else "n/a",
                      "observed_challenger_share": (srm.observed_challenger_share if srm and srm.observed_challenger_share
                                                    is not None else "n/a")},
            description=report.verdict.summary if srm and srm.mismatch else "units follow the split (or no experiment)",
        )
        breached = [g for g in report.guardrails if g.breached]
        yield dg.AssetCheckResult(
            check_name="guardrails_hold", passed=not breached, severity=dg.AssetCheckSeverity.WARN,
            metadata={g.name: f"{g.measured} (limit {g.limit})" for g in report.guardrails},
            description="; ".join(f"{g.name} {g.measured} breaks {g.limit}" for g in breached) or "all guardrails hold",
        )

    return [prediction_log, ab_test_report]
