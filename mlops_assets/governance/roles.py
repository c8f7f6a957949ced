"""The roles file: who the people are, which roles they hold, which roles must approve a champion.

It is a reviewed YAML file (kept in git, like the dataset config), for example::

    roles: [data_scientist, reviewer, risk_officer]
    required_approvals: [reviewer, risk_officer]   # before a version may become champion
    allow_self_approval: false                     # no one approves a model they trained
    people:
      alice:
        roles: [data_scientist]
        usernames: [alice]          # the MLflow / OS users this person trains models as
        token_sha256: 3f1c...       # `mlops governance new-token alice` prints both halves

A person proves who they are with a personal token. Only its SHA-256 is stored: the
tokens are 256 random bits, so a fast hash is enough (there is nothing to guess).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_assets.errors import PlatformError

_HEX64 = re.compile(r"[0-9a-f]{64}")


class RolesError(PlatformError, ValueError):
    """A roles file that cannot be used, with the file and the entry named."""


class _PersonEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    roles: list[str] = Field(min_length=1)
    token_sha256: str
    usernames: list[str] = Field(default_factory=list)


class _RolesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    roles: list[str] = Field(min_length=1)
    required_approvals: list[str] = Field(default_factory=list)
    allow_self_approval: bool = False
    people: dict[str, _PersonEntry] = Field(min_length=1)


@dataclass(frozen=True)
class Person:
    name: str
    roles: tuple[str, ...]
    token_sha256: str
    usernames: tuple[str, ...]

    def is_author(self, author: str | None) -> bool:
        return author is not None and author in (self.name, *self.usernames)


@dataclass(frozen=True)
class RolesPolicy:
    path: Path
    roles: tuple[str, ...]
    required: tuple[str, ...]
    allow_self_approval: bool
    people: dict[str, Person]

    @property
    def deciding_roles(self) -> tuple[str, ...]:
        """Roles whose approval or rejection counts: the ones a champion needs."""
        return self.required

    def identify(self, token: str | None) -> Person | None:
        """The person whose token this is (compared in constant time), or None."""
        if not token:
            return None
        digest = token_hash(token)
        found = None
        for person in self.people.values():
            if hmac.compare_digest(person.token_sha256, digest):
                found = person
        return found


def token_hash(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def load_roles(path: Path) -> RolesPolicy:
    """Parse and check a roles file: every role named is declared, every token hash well formed and unique."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RolesError(f"{path}: cannot read roles file: {exc}") from exc
    if not isinstance(raw, dict):
        raise RolesError(f"{path}: a roles file is a YAML mapping with roles, required_approvals and people")
    try:
        parsed = _RolesFile(**raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<top>'}: {e['msg']}" for e in exc.errors())
        raise RolesError(f"{path}: {problems}") from exc
    declared = set(parsed.roles)
    unknown = [r for r in parsed.required_approvals if r not in declared]
    if unknown:
        raise RolesError(f"{path}: required_approvals names unknown roles {unknown}; declared roles: {parsed.roles}")
    seen: dict[str, str] = {}
    people = {}
    for name, entry in parsed.people.items():
        unknown = [r for r in entry.roles if r not in declared]
        if unknown:
            raise RolesError(f"{path}: person {name!r} has unknown roles {unknown}; declared roles: {parsed.roles}")
        digest = entry.token_sha256.lower()
        if not _HEX64.fullmatch(digest):
            raise RolesError(f"{path}: person {name!r}: token_sha256 must be 64 hex digits "
                             "(`mlops governance new-token NAME` prints one)")
        if digest in seen:
            raise RolesError(f"{path}: people {seen[digest]!r} and {name!r} share a token; each person needs their own")
        seen[digest] = name
        people[name] = Person(name, tuple(entry.roles), digest, tuple(entry.usernames))
    return RolesPolicy(path, tuple(parsed.roles), tuple(parsed.required_approvals), parsed.allow_self_approval, people)
