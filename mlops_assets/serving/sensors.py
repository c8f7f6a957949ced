"""The observation sensor that keeps the external ``<dataset>/prediction_log`` asset current in Dagster.

The service writes the log; Dagster learns what is in it from this sensor: an
``AssetObservation`` per dataset whenever the row count or the number of outcomes
changed (rows, rows per variant, outcomes, the newest answer). Running by default, so
``mlops ui`` shows the log growing without anyone switching the sensor on.
"""


import json

import dagster as dg

from mlops_assets.config import DatasetConfig
from mlops_assets.serving.assets import prediction_log_key
from mlops_assets.serving.prediction_log import LogSummary, connect, summarize
from mlops_assets.settings import Settings


def observation(config: DatasetConfig, summary: LogSummary) -> dg.AssetObservation:
    return dg.AssetObservation(
        asset_key=prediction_log_key(config),
        metadata={
            "dagster/row_count": dg.MetadataValue.int(summary.rows),
            "rows_with_outcome": dg.MetadataValue.int(summary.with_outcome),
            "last_logged_at": summary.last_logged_at.isoformat() if summary.last_logged_at else "never",
            **{f"rows_{variant}": dg.MetadataValue.int(count) for variant, count in sorted(summary.by_variant.items())},
        },
    )


def observe_prediction_logs(configs: list[DatasetConfig], settings: Settings, cursor: str | None
                            ) -> tuple[list[dg.AssetObservation], str]:
    """Observations for the datasets whose log changed since ``cursor``, and the new cursor."""
    seen = json.loads(cursor) if cursor else {}
    engine = connect(settings.prediction_log_url)
    events = []
    try:
        for config in configs:
            summary = summarize(engine, config.name)
            fingerprint = f"{summary.rows}:{summary.with_outcome}"
            if seen.get(config.name) == fingerprint:
                continue
            seen[config.name] = fingerprint
            events.append(observation(config, summary))
    finally:
        engine.dispose()
    return events, json.dumps(seen, sort_keys=True)


def build_prediction_log_sensor(configs: list[DatasetConfig], settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(
        name="prediction_log_observer",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Records the size of each dataset's prediction log (written by the BentoML service) as an "
        "observation of its external asset, once a minute when it changed.",
    )
    def prediction_log_observer(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        events, cursor = observe_prediction_logs(configs, settings, context.cursor)
        return dg.SensorResult(asset_events=events, cursor=cursor)

    return prediction_log_observer
