"""Card coverage: every model version that has ever held the champion alias must have a complete card.

Complete means the card exists in its three forms, its measured evidence (metrics,
fairness, explanations) is there, and no human section is missing. The coverage check
on ``model_card`` and ``mlops governance report`` both read this table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import dagster as dg

from mlops_assets.config import DatasetConfig
from mlops_assets.governance.lineage import champion_versions
from mlops_assets.settings import Settings
from mlops_assets.training.registry import client

CARD_FILES = ("model_card.md", "model_card.html", "model_card.json")


@dataclass
class CoverageRow:
    dataset: str
    version: str
    aliases: list[str]
    card: bool
    missing_human_sections: list[str] = field(default_factory=list)
    evidence_missing: list[str] = field(default_factory=list)
    approval_state: str = "?"
    fairness: str = "?"

    @property
    def complete(self) -> bool:
        return self.card and not self.missing_human_sections and not self.evidence_missing

    def gap(self) -> str | None:
        if not self.card:
            return f"{self.dataset} v{self.version}: no model card (`mlops governance card {self.dataset} {self.version}`)"
        problems = []
        if self.missing_human_sections:
            problems.append(f"human sections missing: {', '.join(self.missing_human_sections)}")
        if self.evidence_missing:
            problems.append(f"not measured: {', '.join(self.evidence_missing)}")
        return f"{self.dataset} v{self.version}: {'; '.join(problems)}" if problems else None


def card_coverage(settings: Settings, config: DatasetConfig, instance: dg.DagsterInstance | None = None) -> list[CoverageRow]:
    """One row per version that has held the champion alias, oldest first."""
    rows = []
    tracking = client(settings)
    for version in champion_versions(settings, config, instance):
        folder = settings.reports / config.name / f"v{version}"
        has_card = all((folder / name).exists() for name in CARD_FILES)
        aliases = sorted(tracking.get_model_version(config.registered_model_name, version).aliases)
        row = CoverageRow(config.name, version, aliases, has_card)
        if has_card:
            summary = json.loads((folder / "model_card.json").read_text())["summary"]
            row.missing_human_sections = summary["missing_human_sections"]
            row.evidence_missing = summary["evidence_missing"]
            row.approval_state = summary["approval_state"]
            row.fairness = summary["fairness"]
        rows.append(row)
    return rows


def format_coverage(rows: list[CoverageRow]) -> str:
    header = f"{'dataset':<12} {'version':>7}  {'aliases now':<18} {'card':<5} {'complete':<8} {'fairness':<11} {'approvals':<13} gaps"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row.dataset:<12} {row.version:>7}  {','.join(row.aliases) or '-':<18} "
                     f"{'yes' if row.card else 'NO':<5} {'yes' if row.complete else 'NO':<8} {row.fairness:<11} "
                     f"{row.approval_state:<13} {(row.gap() or '-').split(': ', 1)[-1]}")
    return "\n".join(lines)
