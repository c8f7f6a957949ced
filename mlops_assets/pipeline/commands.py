"""``mlops promote``: move a serving alias by hand, recorded on the version (who, when, why)."""

from __future__ import annotations

import click
import dagster as dg

from mlops_assets.config import DatasetConfig, load_dataset_configs
from mlops_assets.errors import PlatformError
from mlops_assets.settings import Settings

# Spelled out (pipeline/aliases.py checks them again): importing the registry here would load MLflow
# for every `mlops` command, --help included.
_ALIASES = ("champion", "challenger")


class UnknownModelError(PlatformError, LookupError):
    """A model name that no dataset config registers."""


def config_for_model(configs: list[DatasetConfig], model: str) -> DatasetConfig:
    """The dataset whose registered model is ``model`` (the dataset's own name is accepted too)."""
    for config in configs:
        if model in (config.registered_model_name, config.name):
            return config
    known = ", ".join(f"{c.registered_model_name} (dataset {c.name})" for c in configs)
    raise UnknownModelError(f"unknown model {model!r}: the registered models are {known}")


def report_alias_moves(settings: Settings, config: DatasetConfig, summary: str) -> None:
    """Record the move on the champion asset in the Dagster UI, as a materialization made outside a run.

    The asset is the alias state, and it just changed: its page then shows who holds each
    alias and the whole history, not the last pipeline run's (stale) view.
    """
    from mlops_assets.pipeline.aliases import aliases
    from mlops_assets.pipeline.assets import alias_metadata
    from mlops_assets.training.registry import CHAMPION

    instance = dg.DagsterInstance.get()
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=dg.AssetKey([config.name, CHAMPION]),
        description=summary,
        metadata={"moved_by_hand": dg.MetadataValue.text(summary),
                  "champion_version": dg.MetadataValue.text(aliases(settings, config)[CHAMPION] or "none"),
                  **alias_metadata(settings, config),
                  "registered_model": config.registered_model_name},
    ))


@click.command()
@click.argument("model")
@click.argument("version")
@click.option("--alias", type=click.Choice(_ALIASES), default=_ALIASES[0], show_default=True,
              help="champion serves; challenger is under test (A/B or shadow)")
@click.option("--reason", required=True, help="why: recorded on the version with who and when")
def promote(model: str, version: str, alias: str, reason: str) -> None:
    """Give VERSION of MODEL (e.g. churn_model 3) the champion or challenger alias.

    The old champion becomes `previous` (the rollback target: promote it again to roll
    back). A version that failed a quality gate cannot take either alias. The move is
    recorded on the version (alias.<alias>.set_by/_at/_reason, alias_history) and on the
    champion asset in the Dagster UI.
    """
    from mlops_assets.pipeline.aliases import current_user, move_alias

    settings = Settings.from_env()
    settings.export()
    config = config_for_model(load_dataset_configs(settings.configs), model)
    by = current_user()
    moves = move_alias(settings, config, alias, version, by=by, reason=reason)
    summary = f"{config.registered_model_name}: " + "; ".join(m.describe() for m in moves) + f" by {by}: {reason}"
    report_alias_moves(settings, config, summary)
    click.echo(summary)
    from mlops_assets.governance.workflow import refresh_card

    for moved in sorted({m.version for m in moves}):  # their cards' deployment history, brought up to date
        refresh_card(settings, config, moved)
