"""Deployment state of one dataset's model, carried by MLflow registry aliases.

For now the first evaluated version becomes ``champion`` when none exists; quality
gates, challenger promotion and rollback build on this asset.
"""


from dataclasses import dataclass

import dagster as dg

from mlops_assets.config import DatasetConfig
from mlops_assets.settings import Settings
from mlops_assets.training.evaluation import Evaluation
from mlops_assets.training.registry import CHAMPION, alias_version, set_alias

GROUP = "pipeline"


@dataclass(frozen=True)
class Deployment:
    champion_version: str
    candidate_version: str
    promoted: bool
    reason: str


def decide_champion(current_champion: str | None, candidate: str) -> Deployment:
    """The first evaluated version becomes champion; an existing champion is never replaced here."""
    if current_champion is None:
        return Deployment(candidate, candidate, True, "no champion existed")
    return Deployment(current_champion, candidate, False, f"champion v{current_champion} kept (gated promotion comes later)")


def build_pipeline_assets(config: DatasetConfig, settings: Settings) -> list[dg.AssetsDefinition]:
    name = config.name

    @dg.asset(
        key=[name, "champion"],
        ins={"evaluation": dg.AssetIn(dg.AssetKey([name, "evaluation"]))},
        group_name=GROUP,
        owners=config.owners,
        kinds={"mlflow"},
        description=f"The '{CHAMPION}' alias of '{config.registered_model_name}' in the MLflow registry: the "
        "version the BentoML service loads. The evaluated version takes it when no champion exists.",
    )
    def champion(context: dg.AssetExecutionContext, evaluation: Evaluation) -> dg.Output[Deployment]:
        decision = decide_champion(alias_version(settings, config, CHAMPION), evaluation.model.version)
        if decision.promoted:
            set_alias(settings, config, CHAMPION, decision.champion_version)
        context.log.info(f"{config.registered_model_name}: {decision.reason}")
        return dg.Output(
            decision,
            metadata={
                "champion_version": decision.champion_version,
                "candidate_version": decision.candidate_version,
                "promoted": decision.promoted,
                "reason": decision.reason,
                "registered_model": config.registered_model_name,
                "candidate_test_roc_auc": dg.MetadataValue.float(evaluation.metrics["roc_auc"]),
            },
        )

    return [champion]
