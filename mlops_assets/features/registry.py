"""The feature registry: every view version's definition and what each materialization of it looked like.

Plain JSON files under ``MLOPS_HOME/feature_store/<dataset>/registry/<view>/<version>.json``
(written atomically), so a definition stays readable after the config moved on: that
is what ``mlops features diff`` compares, what the catalog lists, and where the
feature assets record whether a table version passed its checks. Only a validated
table version is read by training and published online.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from mlops_assets.features.definitions import FeatureError, FeatureView


class FeatureRegistry:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _path(self, view: str, version: str) -> Path:
        return self.root / view / f"{version}.json"

    def record_definition(self, view: FeatureView) -> dict:
        """Register the view version if new; returns its entry."""
        entry = self.entry(view.name, view.version)
        if entry is None:
            entry = {
                "view": view.name,
                "version": view.version,
                "dataset": view.dataset,
                "registered_at": datetime.now(timezone.utc).isoformat(),
                "description": view.description,
                "owner": view.owner,
                "tags": view.tags,
                "ttl": None if view.ttl is None else str(view.ttl),
                "entity": view.entity_column,
                "event_time": view.time_column,
                "source": view.source,
                "features": [{k: v for k, v in asdict(f).items()} for f in view.features],
                "transformations": {t.name: t.source for t in view.transformations},
                "definition": view.definition(),
                "materializations": {},
            }
            self._write(view.name, view.version, entry)
        return entry

    def entry(self, view: str, version: str) -> dict | None:
        path = self._path(view, version)
        return json.loads(path.read_text()) if path.exists() else None

    def versions(self, view: str | None = None) -> list[dict]:
        """Every registered view version (of one view, or all), oldest first."""
        folders = [self.root / view] if view else sorted(p for p in self.root.glob("*") if p.is_dir())
        entries = [json.loads(p.read_text()) for folder in folders for p in folder.glob("*.json")]
        return sorted(entries, key=lambda e: e["registered_at"])

    def find_version(self, prefix: str) -> dict:
        """A view version by its hash or a unique prefix of it, optionally written as ``view@hash``."""
        view, _, version = prefix.rpartition("@")
        matches = [e for e in self.versions(view or None) if e["version"].startswith(version)]
        if len(matches) != 1:
            known = ", ".join(f"{e['view']}@{e['version']}" for e in self.versions())
            raise FeatureError(f"{'no' if not matches else 'more than one'} registered view version matches "
                                 f"{prefix!r}; registered: {known or '(none: materialize the features first)'}")
        return matches[0]

    def record_materialization(self, view: str, version: str, table_version: int, record: dict) -> None:
        entry = self.entry(view, version)
        assert entry is not None, "record_definition first"
        previous = entry["materializations"].get(str(table_version), {})
        entry["materializations"][str(table_version)] = {**previous, **record}
        self._write(view, version, entry)

    def materialization(self, view: str, version: str, table_version: int) -> dict | None:
        entry = self.entry(view, version)
        return None if entry is None else entry["materializations"].get(str(table_version))

    def latest_validated(self, view: str, version: str) -> int | None:
        """The newest table version that passed every check: what training reads and the service serves."""
        entry = self.entry(view, version)
        if entry is None:
            return None
        passed = [int(v) for v, m in entry["materializations"].items() if m.get("validated")]
        return max(passed) if passed else None

    def _write(self, view: str, version: str, entry: dict) -> None:
        path = self._path(view, version)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "w") as out:
            json.dump(entry, out, indent=1, default=str)
        os.replace(temporary, path)
