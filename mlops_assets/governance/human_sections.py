"""The parts of a model card only a person can write, read from a reviewed file beside the dataset config.

The platform measures; it does not know what a model is for, where it must not be used,
or what harm it could do. Those sections come from ``<dataset>.card.md`` next to the
config (or the file ``governance.human_sections`` names)::

    ---
    reviewed_by: Jane Doe (model risk)
    reviewed_on: 2026-11-02
    ---
    ## Intended use
    ...
    ## Out-of-scope uses
    ...
    ## Limitations and caveats
    ...
    ## Ethical considerations
    ...

A section that is absent or empty, or a file nobody signed as reviewed, is shown as
"missing: needs a person" and counted; nothing is made up in its place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mlops_assets.config import DatasetConfig
from mlops_assets.errors import PlatformError

MISSING = "missing: needs a person"

#: key -> heading, in card order.
SECTIONS = {
    "intended_use": "Intended use",
    "out_of_scope": "Out-of-scope uses",
    "limitations": "Limitations and caveats",
    "ethical_considerations": "Ethical considerations",
}
_HEADING = re.compile(r"^##\s+(.+?)\s*$", re.MULTILINE)


class HumanSectionsError(PlatformError, ValueError):
    """A human-sections file that cannot be read as the card expects (an unknown heading, bad front matter)."""


@dataclass
class HumanSections:
    path: Path
    text: dict[str, str] = field(default_factory=dict)  # key -> Markdown written by a person
    reviewed_by: str | None = None
    reviewed_on: str | None = None

    @property
    def reviewed(self) -> bool:
        return bool(self.reviewed_by and self.reviewed_on)

    @property
    def missing(self) -> list[str]:
        """Headings still needing a person: absent or empty, or all of them when the file is unreviewed."""
        if not self.reviewed:
            return list(SECTIONS.values())
        return [SECTIONS[k] for k in SECTIONS if not self.text.get(k, "").strip()]

    def section(self, key: str) -> str | None:
        """The reviewed text, or None where the card must say it is missing."""
        text = self.text.get(key, "").strip()
        return text if text and self.reviewed else None


def human_sections_path(config: DatasetConfig) -> Path:
    name = config.governance.human_sections or f"{config.name}.card.md"
    path = Path(name).expanduser()
    if not path.is_absolute() and config.path is not None:
        path = config.path.parent / path
    return path


def load_human_sections(config: DatasetConfig) -> HumanSections:
    """The reviewed sections; an absent file is not an error (every section is then missing)."""
    path = human_sections_path(config)
    if not path.exists():
        return HumanSections(path)
    source = path.read_text()
    front: dict = {}
    if source.startswith("---"):
        parts = source.split("---", 2)
        if len(parts) < 3:
            raise HumanSectionsError(f"{path}: front matter opened with '---' but never closed")
        try:
            front = yaml.safe_load(parts[1]) or {}
        except yaml.YAMLError as exc:
            raise HumanSectionsError(f"{path}: front matter is not YAML: {exc}") from exc
        if not isinstance(front, dict) or set(front) - {"reviewed_by", "reviewed_on"}:
            raise HumanSectionsError(f"{path}: front matter takes only reviewed_by and reviewed_on")
        source = parts[2]
    by_heading = {title.lower(): key for key, title in SECTIONS.items()}
    text: dict[str, str] = {}
    matches = list(_HEADING.finditer(source))
    for i, match in enumerate(matches):
        heading = match.group(1).strip().lower()
        if heading not in by_heading:
            raise HumanSectionsError(f"{path}: unknown section '## {match.group(1)}'; the card takes "
                                     + ", ".join(f"'## {t}'" for t in SECTIONS.values()))
        end = matches[i + 1].start() if i + 1 < len(matches) else len(source)
        text[by_heading[heading]] = source[match.end():end].strip()
    reviewed_on = front.get("reviewed_on")
    return HumanSections(path, text, front.get("reviewed_by"), str(reviewed_on) if reviewed_on else None)
