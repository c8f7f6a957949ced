"""Feature-store assets of one dataset: validated raw rows, the feature table, the training set.

Bad rows are stopped before they are written: the asset records a failing (blocking)
check naming the offending rows and columns, then fails, so nothing downstream,
in this run or a later one, can read them.
"""


import dagster as dg
import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.dagster_metadata import table_metadata
from mlops_assets.data.raw_checks import RuleResult, check_raw_rows
from mlops_assets.data.schemas import raw_schema
from mlops_assets.data.snapshots import frame_fingerprint
from mlops_assets.data.sources import load_source, row_locator
from mlops_assets.data.validation import ValidationReport, validate
from mlops_assets.features.engineering import build_feature_table
from mlops_assets.features.schemas import feature_schema
from mlops_assets.features.training_set import split_summary, time_split
from mlops_assets.markdown import markdown_table

GROUP = "features"


def schema_check_result(report: ValidationReport, check_name: str) -> dg.AssetCheckResult:
    """A check result a person can act on: which rows, which columns, which values."""
    metadata: dict[str, dg.MetadataValue] = {
        "rows_checked": dg.MetadataValue.int(report.rows_checked),
        "schema": dg.MetadataValue.text(report.schema_name),
    }
    if not report.passed:
        metadata.update(
            {
                "failing_rows": dg.MetadataValue.int(report.failing_row_count),
                "failing_columns": dg.MetadataValue.json(report.failing_columns),
                "offending_rows": dg.MetadataValue.json(report.failing_entities[:100]),
                **({"offending_lines": dg.MetadataValue.json(report.failing_locations[:100])}
                   if report.failing_locations else {}),
                "failure_cases": dg.MetadataValue.md(markdown_table(report.failure_table())),
                "summary": dg.MetadataValue.text(report.summary()),
            }
        )
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,
        description=report.summary(),
    )


def rule_check_result(rule: RuleResult) -> dg.AssetCheckResult:
    """A whole-table check (row count, target classes) with the sentence that explains its verdict."""
    return dg.AssetCheckResult(
        check_name=rule.name,
        passed=rule.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"summary": dg.MetadataValue.text(rule.message), **rule.metadata},
        description=rule.message,
    )


def build_feature_assets(config: DatasetConfig) -> list[dg.AssetsDefinition]:
    """The raw, features and training_set assets of one dataset."""
    name = config.name
    raw_key = dg.AssetKey([name, "raw_rows"])
    features_key = dg.AssetKey([name, "features"])
    raw_model = raw_schema(config)
    features_model = feature_schema(config)
    source = config.source.path or f"generator:{config.source.generator} (rows={config.source.rows}, seed={config.source.seed})"

    @dg.asset(
        key=raw_key,
        group_name=GROUP,
        owners=config.owners,
        kinds={"pandas", "pandera"},
        check_specs=[dg.AssetCheckSpec("raw_schema", asset=raw_key, blocking=True,
                                       description=f"Every raw row satisfies {raw_model.__name__} (from the dataset config)."),
                     dg.AssetCheckSpec("row_count", asset=raw_key, blocking=True,
                                       description="Enough rows for the train/validation/test split."),
                     dg.AssetCheckSpec("target_classes", asset=raw_key, blocking=True,
                                       description=f"The target {config.target!r} holds exactly two classes and the "
                                       "positive one is known.")],
        description=f"Raw rows of the {name} dataset, read from {source} and validated against the "
        f"pandera schema the config declares. {config.description}",
        metadata={"source": source, "config": str(config.path)},
    )
    def raw_rows(context: dg.AssetExecutionContext):
        verdict = check_raw_rows(config, load_source(config), row_locator(config))
        yield schema_check_result(verdict.schema, "raw_schema")
        for rule in verdict.rules:
            yield rule_check_result(rule)
        if not verdict.passed:
            raise dg.Failure(
                description=f"{name}: raw rows rejected by {', '.join(verdict.failed_checks)}; nothing written",
                metadata={"failed_checks": verdict.failed_checks, "failing_columns": verdict.schema.failing_columns},
            )
        valid = verdict.valid
        yield dg.Output(
            valid,
            metadata={**table_metadata(valid, config=config), "data_snapshot": frame_fingerprint(valid), "source": source},
        )

    @dg.asset(
        key=features_key,
        ins={"raw": dg.AssetIn(raw_key)},
        group_name=GROUP,
        owners=config.owners,
        kinds={"pandas", "pandera"},
        check_specs=[dg.AssetCheckSpec("feature_schema", asset=features_key, blocking=True,
                                       description="Feature values in range and derived features finite.")],
        description=f"Engineered feature table of {name}: one row per entity snapshot with the "
        f"{len(config.model_features)} model features ({len(config.derived_features)} derived), "
        "sensitive attributes and the target.",
        metadata={"feature_version": config.feature_version},
    )
    def features(context: dg.AssetExecutionContext, raw: pd.DataFrame):
        table = build_feature_table(raw, config)
        report = validate(features_model, table, config.entity_column)
        yield schema_check_result(report, "feature_schema")
        if not report.passed:
            raise dg.Failure(description=f"{name}: feature table rejected, nothing written. {report.summary()}")
        valid = report.valid
        yield dg.Output(
            valid,
            metadata={
                **table_metadata(valid, config=config),
                "feature_version": config.feature_version,
                "derived_features": dg.MetadataValue.json(config.derived_features),
                "data_snapshot": frame_fingerprint(valid),
            },
        )

    @dg.asset(
        key=[name, "training_set"],
        ins={"features": dg.AssetIn(features_key)},
        group_name=GROUP,
        owners=config.owners,
        kinds={"pandas"},
        description=f"Time-ordered train / validation / test split of the {name} features: the test "
        "rows are the newest, so every evaluation is on rows later than anything trained on.",
    )
    def training_set(context: dg.AssetExecutionContext, features: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        split = time_split(features, config)
        summary = split_summary(split, config)
        return dg.Output(
            split,
            metadata={
                **table_metadata(split, preview_rows=5, config=config),
                "splits": dg.MetadataValue.md(markdown_table(summary.reset_index(names="split"))),
                **{f"{s}_rows": dg.MetadataValue.int(int(summary.loc[s, "rows"])) for s in summary.index},
                "train_until": str(summary.loc["train", "to"]),
                "test_from": str(summary.loc["test", "from"]),
                "data_snapshot": frame_fingerprint(split),
                "feature_version": config.feature_version,
            },
        )

    return [raw_rows, features, training_set]
