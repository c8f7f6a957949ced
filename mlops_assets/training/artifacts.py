"""Artifacts stored once: a content-addressed store under MLflow's own artifact layout.

MLflow copies every artifact into each run's folder: the same package list, the same
model (retrained on unchanged data), the same plots, again and again. Here each file's
bytes live once in ``$MLOPS_HOME/mlflow/cas/<sha256>``, and every run's file is a hard
link to it. MLflow's layout is untouched, so its UI, ``mlflow.artifacts.download_artifacts``
and ``mlflow gc`` read and delete exactly as before (deleting a run unlinks its names;
the bytes go when the last name goes, or with ``prune``).

Two things make equal content equal bytes:
- skops writes a model with zip timestamps and object ids as names, so the same model
  never has the same bytes twice. ``canonicalize_skops`` rewrites a saved file with
  fixed timestamps and ids numbered in order of appearance; it loads to the same model.
- plots are drawn without run ids or dates in their titles.

Only a local (``file://``) artifact store is de-duplicated; an object store keeps its
own layout (most have their own de-duplication or lifecycle rules).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlparse

from mlops_assets.settings import Settings

_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class StorageReport:
    files: int
    logical_bytes: int  # what MLflow's layout holds: every file counted in full
    stored_bytes: int  # what the disk holds: each distinct inode once
    newly_linked: int

    @property
    def saved_fraction(self) -> float:
        return 1 - self.stored_bytes / self.logical_bytes if self.logical_bytes else 0.0


def content_store(settings: Settings) -> Path:
    return settings.home / "mlflow" / "cas"


def local_artifact_root(settings: Settings) -> Path | None:
    root = settings.mlflow_artifacts
    return root if root.is_dir() else None


def local_artifact_folder(artifact_uri: str, artifact_path: str = "") -> Path | None:
    """The folder of a run's artifacts (or of one artifact path in it) on a local store; None for an object store."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme not in ("", "file"):
        return None
    folder = Path(parsed.path) / artifact_path
    return folder if folder.is_dir() else None


def _digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def deduplicate(settings: Settings, folder: Path | None = None) -> StorageReport:
    """Replace each file under ``folder`` (default: the whole local artifact root) by a link to its content.

    Files already linked (more than one name) are skipped without reading them. A file is
    replaced atomically (link to a temporary name, then rename), so a reader never sees it missing.
    """
    root = folder or local_artifact_root(settings)
    store = content_store(settings)
    linked = 0
    if root is not None and root.is_dir():
        store.mkdir(parents=True, exist_ok=True)
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            if path.stat().st_nlink > 1:
                continue
            digest = _digest(path)
            target = store / digest[:2] / digest
            if not target.exists():
                target.parent.mkdir(exist_ok=True)
                try:
                    os.link(path, target)
                    continue  # this file's bytes are now the stored copy
                except FileExistsError:
                    pass  # another process stored the same content first
            temporary = path.with_name(f".{path.name}.cas")
            os.link(target, temporary)
            os.replace(temporary, path)
            linked += 1
    report = _measure(root) if root is not None and root.is_dir() else StorageReport(0, 0, 0, 0)
    return replace(report, newly_linked=linked)


def measure(settings: Settings) -> StorageReport:
    """Logical size (MLflow's view) and stored size (distinct inodes) of the local artifact root."""
    root = local_artifact_root(settings)
    return _measure(root) if root else StorageReport(0, 0, 0, 0)


def _measure(root: Path) -> StorageReport:
    files, logical, inodes = 0, 0, {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            info = path.stat()
            files += 1
            logical += info.st_size
            inodes[(info.st_dev, info.st_ino)] = info.st_size
    return StorageReport(files, logical, sum(inodes.values()), 0)


def prune(settings: Settings) -> int:
    """Delete stored contents no run links to any more (after ``mlflow gc``); returns how many."""
    removed = 0
    store = content_store(settings)
    for path in store.rglob("*") if store.is_dir() else []:
        if path.is_file() and path.stat().st_nlink == 1:
            path.unlink()
            removed += 1
    return removed


def canonicalize_skops(path: Path) -> None:
    """Rewrite a skops file so that the same model always has the same bytes (loads to the same model)."""
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: (archive.read(info), info.compress_type) for info in archive.infolist()}
    schema = json.loads(entries["schema.json"][0])
    renumber: dict[int, int] = {}

    def walk(node):
        if isinstance(node, dict):
            if "__id__" in node and isinstance(node["__id__"], int):
                node["__id__"] = renumber.setdefault(node["__id__"], len(renumber) + 1)
            if isinstance(node.get("file"), str) and node["file"].endswith(".npy"):
                old = int(node["file"].removesuffix(".npy"))
                node["file"] = f"{renumber.setdefault(old, len(renumber) + 1)}.npy"
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    files = {}
    for name, (data, compression) in entries.items():
        if name.endswith(".npy") and name.removesuffix(".npy").isdigit():
            name = f"{renumber[int(name.removesuffix('.npy'))]}.npy"
        files[name] = (data, compression)
    files["schema.json"] = (json.dumps(schema, sort_keys=True, indent=2).encode(), entries["schema.json"][1])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            data, compression = files[name]
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = compression
            archive.writestr(info, data)
    temporary = path.with_name(f".{path.name}.canonical")
    temporary.write_bytes(buffer.getvalue())
    os.replace(temporary, path)


def canonicalize_logged_model(model_uri_location: str) -> None:
    """Canonicalize every skops file of a logged model stored on the local file system."""
    parsed = urlparse(model_uri_location)
    if parsed.scheme not in ("", "file"):
        return
    for path in Path(parsed.path).rglob("*.skops"):
        canonicalize_skops(path)
