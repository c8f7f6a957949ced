"""What a model was built with: Python, platform, every installed package, the code's commit and state.

Recorded on every training run (an artifact with the package list, tags with its hash)
so that ``mlops reproduce`` can say whether today's environment is the one a model
came from, and if not, which packages differ.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib.metadata import distributions
from pathlib import Path

from mlops_assets.settings import PROJECT_ROOT

ENVIRONMENT_ARTIFACT = "environment/environment.json"
REQUIREMENTS_ARTIFACT = "environment/requirements.txt"


@dataclass(frozen=True)
class Environment:
    python: str
    platform: str
    packages: tuple[str, ...]  # sorted "name==version"
    git_commit: str
    git_dirty: bool
    git_diff_hash: str = ""  # hash of the uncommitted changes to tracked files ("" when clean)

    @property
    def packages_hash(self) -> str:
        """Equal hashes, equal package sets."""
        return hashlib.sha256("\n".join(self.packages).encode()).hexdigest()[:12]

    def tags(self) -> dict[str, str]:
        return {
            "environment_hash": self.packages_hash,
            "python_version": self.python,
            "platform": self.platform,
            "git_commit": self.git_commit,
            "git_dirty": str(self.git_dirty).lower(),
            **({"git_diff_hash": self.git_diff_hash} if self.git_dirty else {}),
        }

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "packages_hash": self.packages_hash}, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Environment:
        raw = json.loads(text)
        return cls(python=raw["python"], platform=raw["platform"], packages=tuple(raw["packages"]),
                   git_commit=raw["git_commit"], git_dirty=bool(raw["git_dirty"]),
                   git_diff_hash=raw.get("git_diff_hash", ""))

    def differences(self, other: Environment) -> list[str]:
        """What differs from ``other``, one short phrase each; empty when they are the same."""
        return self.package_differences(other) + self.code_differences(other)

    def package_differences(self, other: Environment) -> list[str]:
        found = []
        if self.python != other.python:
            found.append(f"Python {self.python} vs {other.python}")
        mine, theirs = _by_name(self.packages), _by_name(other.packages)
        changed = [f"{n} {mine.get(n, 'absent')} vs {theirs.get(n, 'absent')}"
                   for n in sorted(set(mine) | set(theirs)) if mine.get(n) != theirs.get(n)]
        if changed:
            shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            found.append(f"packages differ: {shown}")
        return found

    def code_differences(self, other: Environment) -> list[str]:
        found = []
        if self.git_commit != other.git_commit:
            found.append(f"git commit {self.git_commit} vs {other.git_commit}")
        if (self.git_dirty, self.git_diff_hash) != (other.git_dirty, other.git_diff_hash):
            states = {True: "uncommitted changes", False: "a clean tree"}
            if self.git_dirty and other.git_dirty:
                found.append("the working tree has different uncommitted changes than the recorded run")
            else:
                found.append(f"the recorded run had {states[self.git_dirty]}, the working tree now has "
                             f"{states[other.git_dirty]}")
        return found


def _by_name(packages: tuple[str, ...]) -> dict[str, str]:
    return dict(p.split("==", 1) for p in packages)


def installed_packages() -> tuple[str, ...]:
    # A package installed twice (a stale dist-info) is listed once per version.
    return tuple(sorted({f"{d.metadata['Name'].lower()}=={d.version}" for d in distributions() if d.metadata["Name"]}))


def git_state(folder: Path = PROJECT_ROOT) -> tuple[str, bool, str]:
    """The commit checked out in ``folder``, whether tracked files have uncommitted changes, and their hash.

    The hash lets a run made from a dirty tree still be matched: the same uncommitted
    changes are the same code.
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True,
                                text=True, timeout=5)
        diff = subprocess.run(["git", "diff", "HEAD", "--no-ext-diff", "--binary"], cwd=folder,
                              capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown", False, ""
    if commit.returncode != 0:
        return "unknown", False, ""
    dirty = bool(diff.stdout.strip())
    return commit.stdout.strip(), dirty, hashlib.sha256(diff.stdout).hexdigest()[:12] if dirty else ""


def capture_environment(folder: Path = PROJECT_ROOT) -> Environment:
    commit, dirty, diff_hash = git_state(folder)
    return Environment(
        python=platform.python_version(),
        platform=f"{sys.platform}-{platform.machine()}",
        packages=installed_packages(),
        git_commit=commit,
        git_dirty=dirty,
        git_diff_hash=diff_hash,
    )
