"""Feature-store assets of one dataset: raw rows, feature views, online store, catalog, training set.

Bad rows are stopped before they are written: the asset records a failing (blocking)
check naming the offending rows and columns, then fails, so nothing downstream,
in this run or a later one, can read them.
"""


import dagster as dg
import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.dagster_metadata import column_descriptions, table_metadata
from mlops_assets.data.raw_checks import RuleResult, check_raw_rows
from mlops_assets.data.schemas import raw_schema
from mlops_assets.data.snapshots import frame_fingerprint
from mlops_assets.data.sources import load_source, row_locator
from mlops_assets.data.validation import ValidationReport
from mlops_assets.features.catalog import build_catalog, catalog_markdown, statistics_table
from mlops_assets.features.definitions import FeatureView, feature_views
from mlops_assets.features.definitions import validate as validate_features
from mlops_assets.features.store import FeatureStore
from mlops_assets.features.training_set import build_training_set, label_events, split_description, split_summary
from mlops_assets.markdown import markdown_table
from mlops_assets.settings import Settings

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
    """Raw rows, one asset per feature view, the online store, the catalog and the training set of one dataset.

    Building them validates the feature definitions (ConfigError naming the file).
    """
    validate_features(config)
    name = config.name
    raw_key = dg.AssetKey([name, "raw_rows"])
    raw_model = raw_schema(config)
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

    view_assets = [_view_asset(config, view, raw_key) for view in feature_views(config)]
    view_keys = [a.key for a in view_assets]
    return [raw_rows, *view_assets, _online_asset(config, view_keys), _catalog_asset(config, view_keys),
            _training_set_asset(config, raw_key, view_keys)]


def view_asset_key(config: DatasetConfig, view: FeatureView) -> dg.AssetKey:
    return dg.AssetKey([config.name, f"{view.name}_features"])


def _view_metadata(view: FeatureView, raw_key: dg.AssetKey, config: DatasetConfig) -> dict[str, dg.MetadataValue]:
    """Column schema with descriptions, and column-level lineage (source columns -> features)."""
    described = column_descriptions(config)
    columns = [dg.TableColumn(view.entity_column, "entity id", description=described.get(view.entity_column) or None),
               dg.TableColumn(view.time_column, "event time", description=described.get(view.time_column) or None)]
    columns += [dg.TableColumn(f.name, f.type, description=f.description or None, tags={t: "" for t in f.tags})
                for f in view.features]
    lineage = dg.TableColumnLineage(deps_by_column={
        name: [dg.TableColumnDep(asset_key=raw_key, column_name=c) for c in inputs]
        for name, inputs in {view.entity_column: [view.entity_column], view.time_column: [view.time_column],
                             **view.lineage()}.items()
    })
    return {"dagster/column_schema": dg.MetadataValue.table_schema(dg.TableSchema(columns=columns)),
            "dagster/column_lineage": dg.MetadataValue.column_lineage(lineage)}


def _view_asset(config: DatasetConfig, view: FeatureView, raw_key: dg.AssetKey) -> dg.AssetsDefinition:
    key = view_asset_key(config, view)
    schema_check, distribution_check = f"{view.name}_schema", f"{view.name}_distribution"

    @dg.asset(
        key=key,
        ins={"raw": dg.AssetIn(raw_key)},
        group_name=GROUP,
        owners=[view.owner] if view.owner.startswith("team:") or "@" in view.owner else config.owners,
        kinds={"deltalake", "pandera"},
        tags={k: v for k, v in view.tags.items()},
        check_specs=[
            dg.AssetCheckSpec(schema_check, asset=key, blocking=True,
                              description=f"Every computed row of view {view.name!r} satisfies its pandera schema "
                              "(declared types, the config's ranges and values, derived features finite); checked "
                              "before anything is written."),
            dg.AssetCheckSpec(distribution_check, asset=key, blocking=True,
                              description="The view's latest values per entity against the version served before: "
                              "null-rate jump, mean and quantile shift, new categories. A failure keeps training "
                              "and the online store on the previous version."),
        ],
        description=f"Feature view {view.name!r} of {config.name}: {view.description} "
        f"{len(view.features)} features ({', '.join(view.feature_names)}) about each {view.entity_column}, TTL "
        f"{view.ttl_text}, version {view.version}. Every materialization appends what changed to a Delta table "
        "under MLOPS_HOME/feature_store (time travel by table version).",
        metadata={"view_version": view.version, **_view_metadata(view, raw_key, config)},
    )
    def view_asset(context: dg.AssetExecutionContext, raw: pd.DataFrame):
        store = FeatureStore(config)
        batch = store.compute_view(view.name, raw)
        report = store.validate_view(view.name, batch)
        yield schema_check_result(report, schema_check)
        if not report.passed:
            raise dg.Failure(description=f"{config.name}/{view.name}: rows rejected, nothing written. {report.summary()}")
        done = store.write_view(view.name, batch)
        write, stats = done.write, done.stats
        yield dg.AssetCheckResult(
            check_name=distribution_check,
            passed=done.distribution.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=done.distribution.summary(),
            metadata={
                "compared_with_table_version": dg.MetadataValue.int(done.distribution.compared_with)
                if done.distribution.compared_with is not None else dg.MetadataValue.text("none (first)"),
                "failing_columns": dg.MetadataValue.json(sorted({f["column"] for f in done.distribution.failures})),
                "failures": dg.MetadataValue.json(done.distribution.failures),
            },
        )
        if not done.validated:
            context.log.warning(f"{view.name}: table version {write.table_version} failed its distribution checks; "
                                "training and serving stay on the previous validated version")
        yield dg.MaterializeResult(
            metadata={
                **_view_metadata(view, raw_key, config),
                "dagster/row_count": dg.MetadataValue.int(stats["entities"]),
                "view_version": view.version,
                "table_version": dg.MetadataValue.int(write.table_version),
                "validated": done.validated,
                "rows_appended": dg.MetadataValue.int(write.rows_appended),
                "corrections": dg.MetadataValue.int(write.corrections),
                "duplicate_keys_in_source": dg.MetadataValue.int(write.duplicate_keys_in_batch),
                "entities": dg.MetadataValue.int(stats["entities"]),
                "newest_event_time": stats["newest_event_time"],
                "ttl": view.ttl_text,
                "statistics": dg.MetadataValue.md(markdown_table(statistics_table(stats))),
                "delta_table": dg.MetadataValue.path(str(store.offline.path(view.name, view.version))),
            }
        )

    return view_asset


def _online_asset(config: DatasetConfig, view_keys: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        key=[config.name, "online_features"],
        deps=view_keys,
        group_name=GROUP,
        owners=config.owners,
        kinds={"sqlite", "redis"},
        description=f"The latest value of every {config.name} feature per {config.entity_column} in the online "
        "store (SQLite under MLOPS_HOME, or Redis when MLOPS_ONLINE_STORE=redis://...), published from the newest "
        "table version of each view that passed its checks; the service reads it by entity id. A publication "
        "is atomic: the service sees the previous one until the new one is complete.",
    )
    def online_features(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        store = FeatureStore(config)
        outcome = store.publish_online()
        summary = pd.DataFrame([{"view": v, **o} for v, o in outcome.items()])
        return dg.MaterializeResult(metadata={
            "online_store": store.online.url.split("@")[-1],
            "views": dg.MetadataValue.md(markdown_table(summary)),
            "entities": dg.MetadataValue.int(max((o["entities"] for o in outcome.values()), default=0)),
        })

    return online_features


def _catalog_asset(config: DatasetConfig, view_keys: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        key=[config.name, "feature_catalog"],
        deps=view_keys,
        group_name=GROUP,
        owners=config.owners,
        kinds={"markdown"},
        description=f"Catalog of the {config.name} features: name, view, type, description, owner, version, "
        "freshness, null rate and basic statistics, and the features defined twice (same source columns and "
        "transformation under another name). Markdown under MLOPS_HOME/reports; `mlops features list` prints it.",
    )
    def feature_catalog(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        store = FeatureStore(config)
        catalog = build_catalog(store)
        path = Settings.from_env().dataset_reports(config.name) / "feature_catalog.md"
        text = catalog_markdown(store, catalog)
        path.write_text(text)
        return dg.MaterializeResult(metadata={
            "catalog": dg.MetadataValue.md(text),
            "features": dg.MetadataValue.int(len(catalog.rows)),
            "duplicates": dg.MetadataValue.json(catalog.duplicates),
            "path": dg.MetadataValue.path(str(path)),
        })

    return feature_catalog


def _training_set_asset(config: DatasetConfig, raw_key: dg.AssetKey, view_keys: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        key=[config.name, "training_set"],
        ins={"raw": dg.AssetIn(raw_key)},
        deps=view_keys,
        group_name=GROUP,
        owners=config.owners,
        kinds={"duckdb", "pandas"},
        description=f"Training set of {config.name}: every label event joined point-in-time with the model's "
        "features from the offline store (values as they were at the label's time, within each view's TTL, "
        f"explicit nulls otherwise), then split. {split_description(config)} Records the exact view and table "
        "versions and a content hash, so it can be rebuilt byte for byte.",
    )
    def training_set(context: dg.AssetExecutionContext, raw: pd.DataFrame) -> dg.Output[pd.DataFrame]:
        store = FeatureStore(config)
        split, manifest = build_training_set(store, label_events(raw, config))
        summary = split_summary(split, config)
        return dg.Output(
            split,
            metadata={
                **table_metadata(split, preview_rows=5, config=config),
                "splits": dg.MetadataValue.md(markdown_table(summary.reset_index(names="split"))),
                **{f"{s}_rows": dg.MetadataValue.int(int(summary.loc[s, "rows"])) for s in summary.index},
                "train_until": str(summary.loc["train", "to"]),
                "test_from": str(summary.loc["test", "from"]),
                "split": split_description(config),
                "data_snapshot": frame_fingerprint(split),
                "content_hash": manifest["content_hash"],
                "feature_views": dg.MetadataValue.json(manifest["views"]),
                "labels_table_version": dg.MetadataValue.int(manifest["labels"]["table_version"]),
                "manifest": dg.MetadataValue.json(manifest),
                "null_features": dg.MetadataValue.json(
                    {c: int(n) for c, n in split[config.model_features].isna().sum().items() if n}),
            },
        )

    return training_set
