"""A Markdown model card: what the model is, what it learned from, how good it is, where it falls short."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.markdown import markdown_table

_METRIC_ORDER = ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1", "threshold")


def render_model_card(
    config: DatasetConfig,
    version: str,
    run_id: str,
    metrics: dict[str, float],
    split_summary: pd.DataFrame,
    version_tags: dict[str, str],
    images: dict[str, str],
) -> str:
    """The card as Markdown; ``images`` maps a caption to the image link to embed."""
    metric_rows = pd.DataFrame(
        {"metric": [m for m in _METRIC_ORDER if m in metrics], "test set": [metrics[m] for m in _METRIC_ORDER if m in metrics]}
    )
    gates = pd.DataFrame(
        [{"gate": gate, "threshold": limit, "measured": _gate_value(gate, metrics)} for gate, limit in config.gates.items()]
    )
    features = ", ".join(f"`{f}`" for f in config.model_features)
    sensitive = ", ".join(f"`{s}`" for s in config.sensitive_attributes) or "none declared"
    lines = [
        f"# Model card: {config.registered_model_name} v{version}",
        "",
        f"_Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by mlops-assets._",
        "",
        "## Model details",
        f"- **Dataset:** `{config.name}`: {config.description or 'no description'}",
        f"- **Family:** `{config.model.family}` (scikit-learn pipeline), parameters `{config.model.params}`",
        f"- **Registry:** `{config.registered_model_name}` version {version}; MLflow run `{run_id}`",
        f"- **Decision threshold:** {metrics.get('threshold', float('nan')):.4f} "
        f"(rule: `{config.model.decision_threshold}`, chosen on the validation split)",
        f"- **Built from:** data snapshot `{version_tags.get('data_snapshot', '?')}`, feature version "
        f"`{version_tags.get('feature_version', '?')}`, git commit `{version_tags.get('git_commit', '?')}`, "
        f"environment `{version_tags.get('environment_hash', '?')}`",
        f"- **Owners:** {', '.join(config.owners)}",
        "",
        "## Intended use",
        f"Scores the probability that `{config.target}` is positive for one `{config.entity_column}` at its "
        "event time. It supports a human decision; it is not meant to act alone.",
        "",
        "## Data",
        f"- **Target:** `{config.target}`",
        f"- **Features ({len(config.model_features)}):** {features}",
        f"- **Sensitive attributes (not model inputs unless listed above):** {sensitive}",
        "- **Split:** by event time; the test rows are the newest.",
        "",
        markdown_table(split_summary.reset_index(names="split")),
        "",
        "## Metrics (test split)",
        markdown_table(metric_rows),
        "",
    ]
    if not gates.empty:
        lines += ["## Quality gates (recorded; enforced by the pipeline)", markdown_table(gates), ""]
    lines += ["## Plots"] + [f"![{caption}]({link})" for caption, link in images.items()] + [""]
    lines += [
        "## Limitations",
        "- Evaluated on one time-ordered holdout; performance on later periods is watched by the drift report.",
        "- Fairness across the sensitive attributes is not yet assessed on this card.",
        "",
    ]
    return "\n".join(lines)


def _gate_value(gate: str, metrics: dict[str, float]) -> float | None:
    metric = gate.removeprefix("min_").removeprefix("max_")
    return metrics.get(metric)
