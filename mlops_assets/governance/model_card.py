"""The model card of one version: the standard sections, in Markdown, self-contained HTML and JSON.

A card is built as data first (sections made of text, lists, tables and images), then
rendered: Markdown for the Dagster UI and the reports folder, one HTML file with every
plot embedded (to send to someone who has neither), and JSON for tools. The measured
parts come from the evidence the assessment wrote for the version; the live parts
(approvals, lineage, aliases) are read when the card is rendered, so rendering it again
after an approval or a promotion brings it up to date. Sections only a person can write
come from the reviewed file beside the config; when missing they say so.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from mlops_assets.config import DatasetConfig
from mlops_assets.governance.approvals import fairness_state, model_version, version_approval_state
from mlops_assets.governance.assessment import read_evidence, read_fairness, split_description, version_folder
from mlops_assets.governance.gates import gate_results
from mlops_assets.governance.human_sections import MISSING, SECTIONS, load_human_sections
from mlops_assets.governance.lineage import alias_history, version_lineage
from mlops_assets.settings import Settings
from mlops_assets.training.registry import attach_to_version

_METRIC_ORDER = ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1")
#: Version tags that carry a warning about the version (the experiments system writes the threshold one).
WARNING_TAG_PREFIXES = ("decision_threshold_warning", "threshold_warning", "warning")


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _interval(entry: dict) -> str:
    low, high = entry.get("low"), entry.get("high")
    if low is None or high is None or any(isinstance(v, float) and math.isnan(v) for v in (low, high)):
        return "n/a"
    return f"{low:.3f} to {high:.3f}"


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _list(items: list[str]) -> dict:
    return {"type": "list", "items": items}


def _table(columns: list[str], rows: list[list]) -> dict:
    return {"type": "table", "columns": columns, "rows": [[_fmt(c) for c in row] for row in rows]}


def _image(caption: str, file: str) -> dict:
    return {"type": "image", "caption": caption, "file": file}


def _human(key: str, sections) -> list[dict]:
    text = sections.section(key)
    return [{"type": "human", "text": text}] if text else [{"type": "missing", "text": MISSING}]


def build_card(settings: Settings, config: DatasetConfig, version: str,
               instance: dg.DagsterInstance | None = None) -> dict:
    """The card as data: {"model", "version", "sections": [{"key", "title", "blocks"}], "summary": {...}}."""
    version = str(version)
    details = model_version(settings, config, version)
    tags = details.tags
    metrics = read_evidence(settings, config, version, "metrics.json")
    fairness = read_fairness(settings, config, details.run_id)
    explanations = read_evidence(settings, config, version, "explanations.json")
    human = load_human_sections(config)
    approvals = version_approval_state(settings, config, version)
    lineage = version_lineage(settings, config, version, instance, with_approvals=False)
    facts = {stage.stage: stage.facts for stage in lineage}
    history = [e for e in alias_history(settings, config, instance) if e.version == version]
    measured = {k: v["value"] for k, v in metrics["metrics"].items()} if metrics else {}
    gates = gate_results(config, tags, measured)
    warnings = {k: v for k, v in tags.items() if k.startswith(WARNING_TAG_PREFIXES)}
    threshold = tags.get("decision_threshold", "?")

    sections: list[tuple[str, str, list[dict]]] = []
    sections.append(("model_details", "Model details", [_list([
        f"**Model:** `{config.registered_model_name}` version {version}, registered {facts['model version'].get('registered', '?')}",
        f"**Dataset:** `{config.name}`: {config.description.strip() or 'no description'}",
        f"**Family:** `{config.model.family}` (scikit-learn pipeline), parameters `{config.model.params}`",
        f"**Decision threshold:** {threshold} (rule `{config.model.decision_threshold}`, chosen on the validation split)",
        f"**MLflow run:** `{details.run_id}`; trained by `{facts['MLflow run and environment'].get('trained by', '?')}`",
        f"**Owners:** {', '.join(config.owners)}",
    ])]))
    sections.append(("intended_use", SECTIONS["intended_use"], _human("intended_use", human)))
    sections.append(("out_of_scope", SECTIONS["out_of_scope"], _human("out_of_scope", human)))

    data_blocks = [_list([
        f"**Target:** `{config.target}` (positive class: {config.positive_label})",
        f"**Features ({len(config.model_features)}):** " + ", ".join(f"`{f}`" for f in config.model_features),
        "**Sensitive attributes (not model inputs unless listed above):** "
        + (", ".join(f"`{s}`" for s in config.sensitive_attributes) or "none declared"),
        f"**Split:** {metrics['split'] if metrics else split_description(config)}",
        f"**Data snapshot:** training set `{tags.get('data_snapshot', '?')}`, feature version "
        f"`{tags.get('feature_version', '?')}`, raw rows `{facts['source data snapshot'].get('raw snapshot', 'not recorded')}`",
    ])]
    if metrics:
        rows = metrics["split_summary"]
        data_blocks.append(_table(["split", "rows", "from", "to", "positive rate"],
                                  [[r["split"], r["rows"], r["from"], r["to"], r["positive_rate"]] for r in rows]))
    sections.append(("data", "Training and evaluation data", data_blocks))

    if metrics:
        ordered = [m for m in _METRIC_ORDER if m in metrics["metrics"]]
        metric_blocks = [
            _text(f"On the {metrics['test_rows']} test rows, at threshold {metrics['threshold']:.4f}; intervals: "
                  f"{metrics['confidence']:.0%} bootstrap percentile intervals over {metrics['resamples']} resamples."),
            _table(["metric", "test set", f"{metrics['confidence']:.0%} interval"],
                   [[m, metrics["metrics"][m]["value"], _interval(metrics["metrics"][m])] for m in ordered]),
        ]
    else:
        metric_blocks = [_text("Not measured: the model card asset has not assessed this version.")]
    for key, value in warnings.items():
        metric_blocks.append(_text(f"**Warning ({key}):** {value}"))
    metric_blocks += [_image("ROC curve", "roc.png"), _image("Calibration", "calibration.png")]
    sections.append(("metrics", "Metrics", metric_blocks))

    if gates:
        gate_blocks = [
            _text("Each gate in the dataset config against the measured test metric. "
                  + ("The pipeline's own verdict is in the last column." if any(g["recorded"] for g in gates)
                     else "The pipeline recorded no verdict on this version.")),
            _table(["gate", "metric", "threshold", "measured", "result", "recorded by the pipeline"],
                   [[g["name"], g["metric"], g["threshold"], g["measured"],
                     {True: "pass", False: "FAIL", None: "not measured"}[g["passed"]], g["recorded"] or "-"]
                    for g in gates]),
        ]
    else:
        gate_blocks = [_text("No gates are configured for this dataset.")]
    sections.append(("gates", "Gate results", gate_blocks))

    sections.append(("fairness", "Fairness", _fairness_blocks(fairness)))
    sections.append(("explanations", "Explanations", _explanation_blocks(explanations)))

    found = _platform_caveats(fairness, gates, warnings, tags)
    limitation_blocks = _human("limitations", human)
    if found:
        limitation_blocks += [_text("**Found by the platform** (measured, not written by a person):"), _list(found)]
    sections.append(("limitations", SECTIONS["limitations"], limitation_blocks))
    sections.append(("ethical_considerations", SECTIONS["ethical_considerations"], _human("ethical_considerations", human)))

    approval_blocks = [_text(f"**State:** {approvals.summary()}")]
    if approvals.decisions:
        approval_blocks.append(_table(
            ["#", "when (UTC)", "person", "role", "decision", "comment", "record hash"],
            [[d.seq, d.decided_at[:19].replace("T", " "), d.person, d.role, d.decision, d.comment, d.record_hash[:16]]
             for d in approvals.decisions]))
    sections.append(("approvals", "Approvals", approval_blocks))
    sections.append(("lineage", "Lineage", [_list([
        f"**{stage.stage}:** " + "; ".join(f"{k} `{v}`" for k, v in stage.facts.items()) for stage in lineage if stage.stage != 'aliases over time'])]))
    sections.append(("deployment_history", "Deployment history", [
        _table(["when", "alias", "note"], [[e.at, e.alias, e.note] for e in history]) if history
        else _text("This version has never held an alias.")]))

    complete = bool(metrics and fairness and explanations) and not human.missing
    return {
        "model": config.registered_model_name,
        "dataset": config.name,
        "version": version,
        "generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "summary": {
            "missing_human_sections": human.missing,
            "human_sections_file": str(human.path),
            "reviewed_by": human.reviewed_by,
            "reviewed_on": human.reviewed_on,
            "evidence_missing": [n for n, e in (("metrics", metrics), ("fairness", fairness),
                                                ("explanations", explanations)) if e is None],
            "complete": complete,
            "approval_state": approvals.status,
            "fairness": fairness_state(settings, details) or "not assessed",
            "gates_failed": [g["name"] for g in gates if g["passed"] is False],
            "warnings": warnings,
            "seconds": {n: e.get("seconds") for n, e in (("metrics", metrics), ("fairness", fairness),
                                                         ("explanations", explanations)) if e},
        },
        "data": {"metrics": metrics, "gates": gates, "fairness": fairness, "explanations": explanations,
                 "approvals": [d.to_dict() for d in approvals.decisions],
                 "lineage": [{"stage": s.stage, "facts": s.facts} for s in lineage],
                 "deployment_history": [e.__dict__ for e in history]},
        "sections": [{"key": k, "title": t, "blocks": b} for k, t, b in sections],
    }


def _fairness_blocks(fairness: dict | None) -> list[dict]:
    if fairness is None:
        return [_text("Not assessed: the fairness check on the model has not run for this version.")]
    blocks = [_text(f"**Verdict:** {fairness['verdict']}. Groups with fewer than {fairness['min_group_size']} test rows "
                    "are flagged and left out of the differences; intervals are "
                    f"{fairness['confidence']:.0%} bootstrap intervals over {fairness['resamples']} resamples.")]
    disparities = fairness["disparities"]
    if disparities:
        blocks.append(_table(
            ["attributes", "measure", "value", "interval", "groups compared", "limit", "result"],
            [[d["attribute"], d["measure"].replace("_", " "), d["value"], _interval(d), d["groups_compared"],
              d["limit"] if d["limit"] is not None else "-",
              {True: "pass", False: "FAIL", None: "-"}[d["passed"]]] for d in disparities]))
        singles = [g for g in fairness["groups"] if " × " not in g["attribute"]]
        blocks.append(_table(
            ["attribute", "group", "size", "selection rate", "TPR", "FPR", "precision", "ROC AUC", "flags"],
            [[g["attribute"], g["group"], g["size"], g["selection_rate"], g["tpr"], g["fpr"], g["precision"],
              g["roc_auc"], g["flags"] or "-"] for g in singles]))
        flagged = [f"{g['attribute']} = {g['group']}: {g['flags']}" for g in fairness["groups"]
                   if g["flags"] and " × " in g["attribute"]]
        if flagged:
            blocks += [_text(f"Flagged intersections ({len(flagged)}; all groups with their intervals are in the "
                             "JSON form of this card):"), _list(flagged)]
    else:
        blocks.append(_text("No sensitive attributes are declared in the dataset config."))
    blocks += [_image(f"Fairness: {attribute}", file) for attribute, file in fairness.get("plots", {}).items()]
    return blocks


def _explanation_blocks(explanations: dict | None) -> list[dict]:
    if explanations is None:
        return [_text("Not computed: the explanations asset has not run for this version.")]
    sampled = explanations.get("rows_per_repeat", 0) < explanations.get("test_rows", 0)
    rows = (f", each on a random {explanations['rows_per_repeat']:,} of the {explanations['test_rows']:,} test rows"
            if sampled else "")
    blocks = [
        _text("**Global:** how much the test ROC AUC drops when each raw input column is shuffled "
              f"(mean over {explanations['repeats']} repeats{rows}, with the range). Derived features move with "
              "the raw columns they are computed from."),
        _table(["input column", "importance", "std", "range"],
               [[r["feature"], r["importance"], r["std"], f"{r['low']:.4f} to {r['high']:.4f}"]
                for r in explanations["importance"]]),
        _image("Permutation importance", explanations["plot"]),
    ]
    if explanations["examples"]:
        blocks.append(_text(f"**Local:** example test rows, each score taken apart into what every input added to "
                            f"the average score over {explanations['background_rows']} training rows."))
        blocks.append(_list([f"`{e['entity_id']}` (actual outcome {e['actual']}): {e['sentence']}"
                             for e in explanations["examples"]]))
    return blocks


def _platform_caveats(fairness: dict | None, gates: list[dict], warnings: dict, tags: dict) -> list[str]:
    found = [f"gate {g['name']} failed: {g['metric']} {g['measured']:.4g} against {g['threshold']:g}"
             for g in gates if g["passed"] is False]
    found += [f"{key}: {value}" for key, value in warnings.items()]
    if fairness:
        small = [g for g in fairness["groups"] if g["size"] < fairness["min_group_size"]]
        if small:
            found.append(f"{len(small)} sensitive groups have fewer than {fairness['min_group_size']} test rows; "
                         "their rates are too uncertain to compare")
        if fairness["judged"] and not fairness["passed"]:
            found.append(f"fairness thresholds broken: {fairness['verdict']}")
    found.append("evaluated on one holdout split; later periods are watched by the drift report")
    return found


# Rendering --------------------------------------------------------------------------------------------------------


def render_markdown(card: dict, image_link) -> str:
    """Markdown; ``image_link(file)`` gives each image's link (a file name, or a data URI for the Dagster UI)."""
    summary = card["summary"]
    lines = [f"# Model card: {card['model']} v{card['version']}", "",
             f"_Generated {card['generated_at']} by mlops-assets._", ""]
    missing = summary["missing_human_sections"]
    if missing:
        lines += [f"> **{len(missing)} section(s) {MISSING}:** {', '.join(missing)} "
                  f"(write them in `{summary['human_sections_file']}` and have them reviewed).", ""]
    for section in card["sections"]:
        lines += [f"## {section['title']}", ""]
        for block in section["blocks"]:
            lines += _markdown_block(block, image_link) + [""]
    return "\n".join(lines)


def _markdown_block(block: dict, image_link) -> list[str]:
    kind = block["type"]
    if kind in ("text", "human"):
        return [block["text"]]
    if kind == "missing":
        return [f"**{block['text']}**"]
    if kind == "list":
        return [f"- {item}" for item in block["items"]]
    if kind == "table":
        def cell(value: str) -> str:
            return str(value).replace("|", "\\|").replace("\n", " ")
        return ["| " + " | ".join(block["columns"]) + " |", "| " + " | ".join("---" for _ in block["columns"]) + " |",
                *("| " + " | ".join(cell(c) for c in row) + " |" for row in block["rows"])]
    if kind == "image":
        link = image_link(block["file"])
        return [f"![{block['caption']}]({link})"] if link else [f"_{block['caption']}: image not found_"]
    raise ValueError(f"unknown card block {kind!r}")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #4c72b0;padding-bottom:.3em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f2f4f8}code{background:#f3f3f3;padding:0 .25em;border-radius:3px;font-size:.92em}
.missing{background:#fff3cd;border:1px solid #e0c36a;padding:.5em .8em;border-radius:4px;font-weight:600}
.banner{background:#fdecea;border:1px solid #e3a19b;padding:.6em .9em;border-radius:4px}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}.FAIL{color:#b00020;font-weight:700}.pass{color:#1b7f3a}
figure{margin:.6em .6em .6em 0;display:inline-block;vertical-align:top;max-width:100%}figcaption{font-size:.85em;color:#555}
"""


def _inline(text: str) -> str:
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    escaped = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)
    return re.sub(r"(?<![*\w])\*([^*\s][^*]*)\*(?![*\w])", r"<i>\1</i>", escaped)


def _human_html(text: str) -> str:
    """The reviewed Markdown: paragraphs and bullet lists whose items may wrap (what a person writes here)."""
    parts = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        items: list[str] = []
        prose: list[str] = []
        for line in paragraph.splitlines():
            stripped = line.strip()
            if stripped.startswith(("- ", "* ")):
                items.append(stripped[2:])
            elif items and line.startswith((" ", "\t")):
                items[-1] += " " + stripped  # a wrapped bullet item
            else:
                prose.append(stripped)
        if prose:
            parts.append(f"<p>{_inline(' '.join(prose))}</p>")
        if items:
            parts.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in items) + "</ul>")
    return "".join(parts)


def render_html(card: dict, image_bytes) -> str:
    """One self-contained HTML file: styles inline, every image a data URI; ``image_bytes(file)`` reads them."""
    summary = card["summary"]
    body = [f"<h1>Model card: {html.escape(card['model'])} v{html.escape(card['version'])}</h1>",
            f"<p><i>Generated {html.escape(card['generated_at'])} by mlops-assets.</i></p>"]
    missing = summary["missing_human_sections"]
    if missing:
        body.append(f"<p class='banner'><b>{len(missing)} section(s) {MISSING}:</b> {html.escape(', '.join(missing))} "
                    f"(write them in <code>{html.escape(summary['human_sections_file'])}</code> and have them "
                    "reviewed).</p>")
    for section in card["sections"]:
        body.append(f"<h2 id='{section['key']}'>{html.escape(section['title'])}</h2>")
        for block in section["blocks"]:
            kind = block["type"]
            if kind == "text":
                body.append(f"<p>{_inline(block['text'])}</p>")
            elif kind == "human":
                body.append(_human_html(block["text"]))
            elif kind == "missing":
                body.append(f"<p class='missing'>{html.escape(block['text'])}</p>")
            elif kind == "list":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block["items"]) + "</ul>")
            elif kind == "table":
                head = "".join(f"<th>{html.escape(c)}</th>" for c in block["columns"])
                rows = "".join("<tr>" + "".join(f"<td class='{html.escape(str(c))}'>{_inline(str(c))}</td>"
                                                for c in row) + "</tr>" for row in block["rows"])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif kind == "image":
                data = image_bytes(block["file"])
                if data:
                    uri = "data:image/png;base64," + base64.b64encode(data).decode()
                    body.append(f"<figure><img alt='{html.escape(block['caption'])}' src='{uri}'>"
                                f"<figcaption>{html.escape(block['caption'])}</figcaption></figure>")
    title = f"Model card: {card['model']} v{card['version']}"
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>")

CARD_ARTIFACT_FOLDER = "model_card"  # the card's three forms among the training run's artifacts


@dataclass(frozen=True)
class CardFiles:
    markdown: Path
    html: Path
    json: Path
    inline_markdown: str  # images as data URIs: what the Dagster UI shows
    card: dict


def write_card(settings: Settings, config: DatasetConfig, version: str,
               instance: dg.DagsterInstance | None = None) -> CardFiles:
    """Build the card and write its three forms beside the version's evidence."""
    card = build_card(settings, config, version, instance)
    folder = version_folder(settings, config, version)

    def locate(file: str) -> Path:
        # Plots of the version sit beside the card; fairness plots under runs/<run_id>/ (measured before the
        # version existed), named relative to the dataset's reports folder.
        return folder.parent / file if file.startswith("runs/") else folder / file

    def read(file: str) -> bytes | None:
        path = locate(file)
        return path.read_bytes() if path.exists() else None

    def data_uri(file: str) -> str | None:
        data = read(file)
        return "data:image/png;base64," + base64.b64encode(data).decode() if data else None

    markdown = folder / "model_card.md"
    markdown.write_text(render_markdown(card, lambda f: (f"../{f}" if f.startswith("runs/") else f)
                                        if locate(f).exists() else None))
    page = folder / "model_card.html"
    page.write_text(render_html(card, read))
    document = folder / "model_card.json"
    document.write_text(json.dumps(card, indent=2, default=str))
    # The card also lives with the version's training run: the MLflow UI shows it beside the model.
    attach_to_version(settings, config, version, [markdown, page, document], CARD_ARTIFACT_FOLDER)
    return CardFiles(markdown, page, document, render_markdown(card, data_uri), card)
