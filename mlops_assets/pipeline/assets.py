"""Deployment state of one dataset's model, carried by MLflow registry aliases.

The ``champion`` asset judges each evaluated version (pipeline/release.py) and moves the
alias when it wins; its metadata shows the gates, the comparison with the champion on
the same test rows, who holds each alias and every alias move so far.
"""


import dagster as dg
import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.dagster_metadata import rounded
from mlops_assets.markdown import markdown_table
from mlops_assets.pipeline.aliases import aliases, alias_history, history_table
from mlops_assets.pipeline.gates import GateResult
from mlops_assets.pipeline.release import ChampionDecision, release_candidate
from mlops_assets.settings import Settings
from mlops_assets.training.evaluation import Evaluation
from mlops_assets.training.registry import CHAMPION

GROUP = "pipeline"


def gates_table(gates: list[GateResult]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"gate": g.name, "metric": f"test {g.metric}", "threshold": g.threshold,
          "measured": g.measured if g.measured is not None else "not measured",
          "verdict": "passed" if g.passed else "FAILED"} for g in gates],
        columns=["gate", "metric", "threshold", "measured", "verdict"],
    )


def alias_metadata(settings: Settings, config: DatasetConfig) -> dict[str, dg.MetadataValue]:
    """Who holds each alias now and every move so far: shown after each run and each `mlops promote`."""
    history = history_table(alias_history(settings, config))
    return {
        "aliases": dg.MetadataValue.json({alias: version for alias, version in aliases(settings, config).items()}),
        "alias_moves": dg.MetadataValue.int(len(history)),
        "alias_history": dg.MetadataValue.md(markdown_table(history) if len(history) else "no alias has moved yet"),
    }


def decision_metadata(decision: ChampionDecision) -> dict[str, dg.MetadataValue]:
    metadata: dict[str, dg.MetadataValue] = {
        "champion_version": dg.MetadataValue.text(decision.champion_version or "none"),
        "candidate_version": dg.MetadataValue.text(decision.candidate_version),
        "promoted": dg.MetadataValue.bool(decision.promoted),
        "reason": dg.MetadataValue.text(decision.reason),
        "test_rows": dg.MetadataValue.int(decision.test_rows),
    }
    if decision.candidate_roc_auc is not None:
        metadata["candidate_test_roc_auc"] = rounded(decision.candidate_roc_auc)
    if decision.champion_roc_auc is not None:
        metadata["champion_test_roc_auc_same_rows"] = rounded(decision.champion_roc_auc)
    if decision.gates:
        metadata["gates"] = dg.MetadataValue.md(markdown_table(gates_table(decision.gates)))
    return metadata


def build_pipeline_assets(config: DatasetConfig, settings: Settings) -> list[dg.AssetsDefinition]:
    name = config.name

    @dg.asset(
        key=[name, CHAMPION],
        ins={"evaluation": dg.AssetIn(dg.AssetKey([name, "evaluation"])),
             "training_set": dg.AssetIn(dg.AssetKey([name, "training_set"]))},
        group_name=GROUP,
        owners=config.owners,
        kinds={"mlflow"},
        description=f"The '{CHAMPION}' alias of '{config.registered_model_name}' in the MLflow registry: the "
        "version the BentoML service loads. A newly evaluated version takes it when it passed every quality "
        "gate and its test ROC AUC is at least the champion's on the same test rows; the old champion becomes "
        "'previous'. `mlops promote` moves aliases by hand. Every move is listed in alias_history.",
    )
    def champion(context: dg.AssetExecutionContext, evaluation: Evaluation,
                 training_set: pd.DataFrame) -> dg.Output[ChampionDecision]:
        decision = release_candidate(settings, config, evaluation, training_set, by=f"dagster run {context.run_id}")
        context.log.info(f"{config.registered_model_name}: {decision.reason}")
        return dg.Output(
            decision,
            metadata={**decision_metadata(decision), **alias_metadata(settings, config),
                      "registered_model": config.registered_model_name},
        )

    return [champion]
