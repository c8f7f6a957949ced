"""``mlops features ...``: the catalog from the command line (list, describe, diff)."""

from __future__ import annotations

import click

from mlops_assets.config import DatasetConfig, load_dataset_configs
from mlops_assets.errors import PlatformError
from mlops_assets.settings import Settings


def _configs(dataset: str | None) -> list[DatasetConfig]:
    settings = Settings.from_env()
    configs = load_dataset_configs(settings.configs)
    if dataset is None:
        return configs
    chosen = [c for c in configs if c.name == dataset]
    if not chosen:
        raise PlatformError(f"no dataset {dataset!r} in {settings.configs}; datasets: {[c.name for c in configs]}")
    return chosen


def _store(config: DatasetConfig):
    from mlops_assets.features.store import FeatureStore

    return FeatureStore(config)


@click.group("features")
def features() -> None:
    """The feature catalog: views, versions, freshness and statistics (MLOPS_HOME/feature_store)."""


@features.command("list")
@click.option("--dataset", help="only this dataset")
def list_features(dataset: str | None) -> None:
    """Every feature: view, type, owner, version, freshness, null rate and basic statistics."""
    from mlops_assets.features.catalog import build_catalog
    from mlops_assets.markdown import markdown_table

    for config in _configs(dataset):
        store = _store(config)
        catalog = build_catalog(store)
        click.echo(f"{config.name}: {len(catalog.rows)} features in {len(store.views)} views "
                   f"({', '.join(f'{v.name}@{v.version}' for v in store.views)})")
        shown = catalog.rows[["feature", "view", "type", "owner", "table_version", "freshness", "null_rate", "stats"]]
        click.echo(markdown_table(shown))
        for duplicate in catalog.duplicates:
            click.echo(f"defined twice: {', '.join(duplicate['features'])} (same {duplicate['definition']})")
        click.echo("")


@features.command("describe")
@click.argument("name")
@click.option("--dataset", help="the dataset, when several define NAME")
def describe_feature(name: str, dataset: str | None) -> None:
    """One feature (NAME or VIEW:NAME): definition, lineage, each materialization's statistics."""
    from mlops_assets.features.catalog import describe
    from mlops_assets.features.retrieval import RetrievalError

    errors = []
    for config in _configs(dataset):
        try:
            click.echo(describe(_store(config), name))
            return
        except RetrievalError as exc:
            errors.append(f"{config.name}: {exc}")
    raise PlatformError("; ".join(errors))


@features.command("diff")
@click.argument("version_a")
@click.argument("version_b")
@click.option("--dataset", help="the dataset whose registry holds the versions")
def diff_versions(version_a: str, version_b: str, dataset: str | None) -> None:
    """Two versions of a view (hash, unique prefix, or VIEW@HASH) side by side: definition and statistics."""
    from mlops_assets.features.catalog import diff
    from mlops_assets.features.definitions import FeatureError

    errors = []
    for config in _configs(dataset):
        try:
            click.echo(diff(_store(config), version_a, version_b))
            return
        except FeatureError as exc:
            errors.append(f"{config.name}: {exc}")
    raise PlatformError("; ".join(errors))
