"""Governance assets of one dataset: the model card."""


import dagster as dg
import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.features.training_set import split_summary
from mlops_assets.governance.model_card import render_model_card
from mlops_assets.markdown import png_data_uri
from mlops_assets.settings import Settings
from mlops_assets.training.evaluation import Evaluation
from mlops_assets.training.registry import client
from mlops_assets.training.tracking import attach_report

GROUP = "governance"


def build_governance_assets(config: DatasetConfig, settings: Settings) -> list[dg.AssetsDefinition]:
    name = config.name

    @dg.asset(
        key=[name, "model_card"],
        ins={"evaluation": dg.AssetIn(dg.AssetKey([name, "evaluation"])),
             "training_set": dg.AssetIn(dg.AssetKey([name, "training_set"]))},
        group_name=GROUP,
        owners=config.owners,
        kinds={"markdown"},
        description=f"Model card of the newest {name} model version: details, lineage tags, data, test "
        "metrics, gates and plots, written as Markdown under MLOPS_HOME/reports.",
    )
    def model_card(context: dg.AssetExecutionContext, evaluation: Evaluation, training_set: pd.DataFrame) -> dg.Output[str]:
        model = evaluation.model
        tags = client(settings).get_model_version(model.name, model.version).tags
        summary = split_summary(training_set, config)
        folder = evaluation.plots["roc"].parent
        card = render_model_card(
            config, model.version, model.run_id, evaluation.metrics, summary, tags,
            images={caption: path.name for caption, path in evaluation.plots.items()},
        )
        path = folder / "model_card.md"
        path.write_text(card)
        attach_report(settings.mlflow_tracking_uri, model.run_id, str(path), "model_card")  # the card in MLflow too
        inline = render_model_card(
            config, model.version, model.run_id, evaluation.metrics, summary, tags,
            images={caption: png_data_uri(plot.read_bytes()) for caption, plot in evaluation.plots.items()},
        )
        return dg.Output(
            str(path),
            metadata={
                "path": dg.MetadataValue.path(str(path)),
                "model_version": model.version,
                "card": dg.MetadataValue.md(inline),
            },
        )

    return [model_card]
