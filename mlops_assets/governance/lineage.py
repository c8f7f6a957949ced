"""The chain from data to deployment for one model version, as `mlops lineage` prints it and the card shows it.

source data snapshot -> feature versions -> training-set hash -> MLflow run and
environment -> model version -> gates, fairness and approvals -> aliases held over time.

The registry's version tags carry what the version was built from; the Dagster
instance adds what the run read: the materializations of ``raw_rows``, ``features``
and ``training_set`` that were the newest when the version's ``model`` step ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import dagster as dg
from mlflow.exceptions import MlflowException

from mlops_assets.config import DatasetConfig
from mlops_assets.governance.approvals import fairness_state, model_version, version_approval_state
from mlops_assets.governance.gates import gate_results
from mlops_assets.pipeline.aliases import alias_history as pipeline_alias_history
from mlops_assets.settings import Settings
from mlops_assets.training.registry import client


@dataclass
class LineageStage:
    stage: str
    facts: dict[str, str] = field(default_factory=dict)


@dataclass
class AliasEvent:
    at: str
    alias: str
    version: str
    note: str


def _when(timestamp: float | int | None) -> str:
    if timestamp is None:
        return "?"
    seconds = timestamp / 1000 if timestamp > 1e11 else timestamp  # MLflow: ms; Dagster: s
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _instance() -> dg.DagsterInstance | None:
    try:
        return dg.DagsterInstance.get()
    except Exception:  # noqa: BLE001 - no instance configured: lineage then comes from MLflow alone
        return None


def _model_materialization(instance: dg.DagsterInstance, config: DatasetConfig, version: str):
    records = instance.fetch_materializations(dg.AssetKey([config.name, "model"]), limit=1000).records
    for record in records:
        metadata = record.asset_materialization.metadata
        if "model_version" in metadata and str(metadata["model_version"].value) == str(version):
            return record
    return None


def _upstream(instance: dg.DagsterInstance, config: DatasetConfig, asset: str, before: int):
    """The newest materialization of ``asset`` written before the model step: the one it read."""
    found = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey([config.name, asset]), before_storage_id=before), limit=1).records
    return found[0] if found else None


def _meta(record, *keys: str) -> dict[str, str]:
    if record is None:
        return {}
    metadata = record.asset_materialization.metadata
    return {k: str(metadata[k].value) for k in keys if k in metadata}


def alias_history(settings: Settings, config: DatasetConfig, instance: dg.DagsterInstance | None = None) -> list[AliasEvent]:
    """Every alias move the pipeline recorded on the versions (``pipeline/aliases.py``), oldest first."""
    return [AliasEvent(move.at.replace("T", " ").replace("+00:00", " UTC"), move.alias, move.version,
                       f"{move.action} by {move.by}: {move.reason}")
            for move in pipeline_alias_history(settings, config)]


def champion_versions(settings: Settings, config: DatasetConfig, instance: dg.DagsterInstance | None = None) -> list[str]:
    """Every version that has ever held the champion alias, in the order they took it."""
    seen = []
    for event in alias_history(settings, config, instance):
        if event.alias == "champion" and event.note.startswith("set ") and event.version not in seen:
            seen.append(event.version)
    return seen


def version_lineage(settings: Settings, config: DatasetConfig, version: str,
                    instance: dg.DagsterInstance | None = None, with_approvals: bool = True) -> list[LineageStage]:
    """The chain for one version; each stage lists what is known and says where a fact is unknown."""
    details = model_version(settings, config, version)
    tags = details.tags
    instance = instance or _instance()
    model_record = _model_materialization(instance, config, version) if instance is not None else None
    before = model_record.storage_id if model_record is not None else None
    raw = _upstream(instance, config, "raw_rows", before) if before else None
    features = _upstream(instance, config, "features", before) if before else None
    training = _upstream(instance, config, "training_set", before) if before else None
    source = config.source.path or f"generator {config.source.generator} (rows {config.source.rows}, seed {config.source.seed})"

    stages = [
        LineageStage("source data snapshot", {"source": source,
                                              **_renamed(_meta(raw, "data_snapshot", "dagster/row_count"),
                                                         {"data_snapshot": "raw snapshot", "dagster/row_count": "rows"}),
                                              **({"materialized": _when(raw.timestamp)} if raw else {})}),
        LineageStage("feature versions", {
            "feature_version": tags.get("feature_version", "?"),
            **{k: v for k, v in tags.items() if k.startswith("feature_view") or k == "feature_versions"},
            **_renamed(_meta(features, "data_snapshot"), {"data_snapshot": "feature table snapshot"})}),
        LineageStage("training set", {"training-set hash": tags.get("data_snapshot", "?"),
                                      **_meta(training, "train_rows", "validation_rows", "test_rows", "train_until",
                                              "test_from")}),
    ]
    try:
        run = client(settings).get_run(details.run_id)
        run_facts = {"run": details.run_id, "run name": run.info.run_name or "?", "started": _when(run.info.start_time),
                     "trained by": run.data.tags.get("mlflow.user", "?")}
    except MlflowException:
        run_facts = {"run": details.run_id, "run name": "(run not found)"}
    stages.append(LineageStage("MLflow run and environment", {
        **run_facts, "git commit": tags.get("git_commit", "?"), "environment hash": tags.get("environment_hash", "?"),
        "dagster run": tags.get("dagster_run_id", model_record.run_id if model_record else "?")}))
    stages.append(LineageStage("model version", {
        "model": config.registered_model_name, "version": str(version), "registered": _when(details.creation_timestamp),
        "family": tags.get("model_family", config.model.family), "decision threshold": tags.get("decision_threshold", "?"),
        "source": details.source}))
    checks = {g["name"]: {True: "passed", False: "FAILED", None: "not measured"}[g["passed"]]
              + f" ({g['metric']} {g['measured']:.4g} vs {g['threshold']:g})"
              for g in gate_results(config, tags, _test_metrics(settings, details.run_id))}
    checks["fairness"] = fairness_state(settings, details) or "not assessed"
    if with_approvals:
        checks["approvals"] = version_approval_state(settings, config, version).summary()
    stages.append(LineageStage("gates, fairness and approvals", checks))
    history = [e for e in alias_history(settings, config, instance) if e.version == str(version)]
    stages.append(LineageStage("aliases over time", {f"{e.at}": f"{e.alias} ({e.note})" for e in history}
                               or {"aliases": "never held an alias"}))
    return stages


def _renamed(facts: dict[str, str], names: dict[str, str]) -> dict[str, str]:
    return {names.get(k, k): v for k, v in facts.items()}


def _test_metrics(settings: Settings, run_id: str) -> dict[str, float]:
    try:
        metrics = client(settings).get_run(run_id).data.metrics
    except MlflowException:
        return {}
    return {k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")}


def format_lineage(stages: list[LineageStage]) -> str:
    """The chain as the terminal shows it: one block per stage, joined by arrows."""
    lines = []
    for i, stage in enumerate(stages):
        if i:
            lines.append("    ↓")
        lines.append(stage.stage)
        width = max((len(k) for k in stage.facts), default=0)
        lines += [f"    {k:<{width}}  {v}" for k, v in stage.facts.items()]
    return "\n".join(lines)
