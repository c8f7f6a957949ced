"""Governance in the Dagster graph of one dataset.

- ``fairness``: a blocking check on ``<dataset>/model``. It measures the new version's
  fairness on the test split; when the config sets fairness thresholds and one is
  broken, nothing downstream of the model (evaluation, champion, card) runs, and the
  version is tagged so no later promotion takes it either.
- ``<dataset>/explanations``: global permutation importance and example rows in words.
- ``<dataset>/model_card``: the card of the newest version in Markdown (shown here),
  HTML and JSON, after the champion decision so its deployment history is current.
- ``<dataset>/approvals``: the approval ledger, an external asset: each decision
  recorded by ``mlops approve|reject`` (or the service) appears as an event here.
- ``card_coverage``: a check on the card that every version that ever held champion
  has a complete card.
"""


import dagster as dg
import pandas as pd

from mlops_assets.config import DatasetConfig
from mlops_assets.errors import PlatformError
from mlops_assets.governance.assessment import (
    measure_explanations,
    measure_fairness,
    measure_metrics,
    model_under_test,
    run_folder,
    version_folder,
    version_under_test,
)
from mlops_assets.governance.coverage import card_coverage
from mlops_assets.governance.fairness import check_fairness_config
from mlops_assets.governance.human_sections import load_human_sections
from mlops_assets.governance.model_card import write_card
from mlops_assets.markdown import markdown_table, png_markdown
from mlops_assets.settings import Settings
from mlops_assets.training.evaluation import Evaluation

GROUP = "governance"


def approvals_key(config: DatasetConfig) -> dg.AssetKey:
    return dg.AssetKey([config.name, "approvals"])


def build_governance_assets(config: DatasetConfig, settings: Settings) -> list:
    """Assets, checks and the external approvals asset of one dataset (config problems surface at load)."""
    check_fairness_config(config)
    load_human_sections(config)  # a malformed reviewed file is an error when the definitions load
    name = config.name
    model_key = dg.AssetKey([name, "model"])
    training_set_in = dg.AssetIn(dg.AssetKey([name, "training_set"]))
    card_key = dg.AssetKey([name, "model_card"])
    fairness_limits = {k: v for k, v in config.governance.fairness.model_dump().items()
                       if k.startswith(("max_", "min_")) and k != "min_group_size" and v is not None}

    @dg.asset_check(
        asset=model_key,
        name="fairness",
        blocking=True,
        additional_ins={"training_set": training_set_in},
        description="Fairness of the new version on the test split over every sensitive attribute and pair: "
        + ("fails (and blocks evaluation, champion and card) when one of "
           + ", ".join(f"{k} {v:g}" for k, v in fairness_limits.items()) + " is broken."
           if fairness_limits else "measured only; no thresholds configured (governance.fairness)."),
    )
    def fairness(model, training_set: pd.DataFrame) -> dg.AssetCheckResult:
        # ``model`` is registered (a version) or only logged (registered after evaluation): both carry a run.
        try:
            subject = model_under_test(settings, config, model, training_set)
            report = measure_fairness(settings, subject)
        except PlatformError as exc:  # a check that raises records nothing: say what went wrong instead
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, description=str(exc))
        folder = run_folder(settings, config, subject.run_id)
        label = f"v{subject.version}" if subject.version else f"run {subject.run_id}"
        disparities = pd.DataFrame([{"attributes": d.attribute, "measure": d.measure, "value": round(d.value, 4),
                                     "interval": f"{d.low:.3f} to {d.high:.3f}", "limit": d.limit,
                                     "result": {True: "pass", False: "FAIL", None: "-"}[d.passed]}
                                    for d in report.disparities])
        flagged = report.groups[report.groups["flags"] != ""]
        first_plot = next(iter(sorted(folder.glob("fairness_*.png"))), None)
        return dg.AssetCheckResult(
            passed=report.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{label}: {report.verdict()}",
            metadata={
                "model": label,
                "verdict": report.verdict(),
                "disparities": dg.MetadataValue.md(markdown_table(disparities)) if len(disparities) else "none",
                "flagged_groups": dg.MetadataValue.int(len(flagged)),
                "findings": dg.MetadataValue.md("\n".join(f"- {f}" for f in report.findings[:40]) or "none"),
                **({"plot": dg.MetadataValue.md(png_markdown(first_plot.read_bytes(), first_plot.stem))}
                   if first_plot else {}),
                "report": dg.MetadataValue.path(str(folder / "fairness.json")),
            },
        )

    @dg.asset(
        key=[name, "explanations"],
        ins={"evaluation": dg.AssetIn(dg.AssetKey([name, "evaluation"])), "training_set": training_set_in},
        group_name=GROUP,
        owners=config.owners,
        kinds={"sklearn"},
        description=f"Why the newest {name} model scores as it does: permutation importance of each raw input "
        "column on the test split (with its spread over repeats), and example rows explained in plain words. "
        f"Any row on request: `mlops explain {name} --entity ID`.",
    )
    def explanations(context: dg.AssetExecutionContext, evaluation: Evaluation, training_set: pd.DataFrame) -> dg.MaterializeResult:
        subject = version_under_test(settings, config, evaluation.model.version, training_set)
        payload = measure_explanations(settings, subject)
        folder = version_folder(settings, config, subject.version)
        importance = pd.DataFrame(payload["importance"]).round(4)
        return dg.MaterializeResult(
            metadata={
                "model_version": subject.version,
                "importance": dg.MetadataValue.md(markdown_table(importance)),
                "importance_plot": dg.MetadataValue.md(png_markdown((folder / "importance.png").read_bytes(),
                                                                    "permutation importance")),
                "examples": dg.MetadataValue.md("\n".join(f"- `{e['entity_id']}`: {e['sentence']}"
                                                          for e in payload["examples"]) or "none"),
                "seconds": dg.MetadataValue.float(payload["seconds"]),
                "report": dg.MetadataValue.path(str(folder / "explanations.json")),
            },
        )

    @dg.asset(
        key=card_key,
        ins={"evaluation": dg.AssetIn(dg.AssetKey([name, "evaluation"])), "training_set": training_set_in},
        # Read from the version's report folder, not passed as values: the card is files, and its "path"
        # metadata must be the card's own (an IO manager would put its storage path there).
        deps=[dg.AssetKey([name, "explanations"]), dg.AssetKey([name, "champion"]), approvals_key(config)],
        group_name=GROUP,
        owners=config.owners,
        kinds={"markdown", "html"},
        description=f"Model card of the newest {name} model version: details, intended use, data and split, "
        "metrics with confidence intervals, gate results, fairness, explanations, limitations, approvals, "
        "lineage and deployment history; as Markdown (shown here), a self-contained HTML file and JSON "
        "under MLOPS_HOME/reports. Sections only a person can write come from the reviewed file beside "
        "the dataset config.",
    )
    def model_card(context: dg.AssetExecutionContext, evaluation: Evaluation,
                   training_set: pd.DataFrame) -> dg.MaterializeResult:
        version = evaluation.model.version
        subject = version_under_test(settings, config, version, training_set)
        measure_metrics(settings, subject, training_set)
        files = write_card(settings, config, version, context.instance)
        summary = files.card["summary"]
        missing = summary["missing_human_sections"]
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(files.markdown)),
                "html": dg.MetadataValue.path(str(files.html)),
                "json": dg.MetadataValue.path(str(files.json)),
                "model_version": version,
                "missing_human_sections": dg.MetadataValue.int(len(missing)),
                "approval_state": summary["approval_state"],
                "fairness": summary["fairness"],
                "card": dg.MetadataValue.md(files.inline_markdown),
            },
        )

    @dg.asset_check(asset=card_key, name="card_coverage",
                    description="Every version that has ever held the champion alias has a complete model card "
                    "(three forms, measured evidence, every human section reviewed).")
    def coverage(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        rows = card_coverage(settings, config, context.instance)
        gaps = [row.gap() for row in rows if row.gap()]
        table = pd.DataFrame([{"version": r.version, "card": r.card, "complete": r.complete,
                               "missing human sections": len(r.missing_human_sections), "approvals": r.approval_state}
                              for r in rows])
        return dg.AssetCheckResult(
            passed=not gaps,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{len(rows) - len(gaps)} of {len(rows)} champion versions have a complete card"
            + (": " + "; ".join(gaps) if gaps else ""),
            metadata={"champion_versions": dg.MetadataValue.int(len(rows)),
                      "gaps": dg.MetadataValue.int(len(gaps)),
                      "coverage": dg.MetadataValue.md(markdown_table(table)) if len(table) else "no champion yet"},
        )

    approvals = dg.AssetSpec(
        approvals_key(config),
        group_name=GROUP,
        owners=config.owners,
        kinds={"sql"},
        description=f"Approval decisions on {config.registered_model_name} versions: the append-only, hash-chained "
        "ledger (SQLite under MLOPS_HOME, or MLOPS_APPROVALS_DB). Written by `mlops approve|reject` and the "
        "service, never by a run; each decision appears here as an event with the version's approval state.",
    )
    return [fairness, explanations, model_card, coverage, approvals]
