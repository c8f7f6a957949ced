"""Moving registry aliases: the one door every change of deployment state goes through.

``champion`` serves, ``challenger`` is under test (A/B or shadow), ``previous`` is the
rollback target. The champion asset (automatic promotion) and ``mlops promote`` (by
hand) both call :func:`move_alias`, which refuses a version that failed a gate and
records every move on the version it concerns: who, when, why. A later approval check
(governance) belongs in :func:`move_alias` too, so no path can skip it.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import pandas as pd

from mlops_assets.governance.approvals import require_promotion_allowed
from mlops_assets.config import DatasetConfig
from mlops_assets.errors import PlatformError
from mlops_assets.pipeline.gates import GATES_PASSED_TAG, failed_gates_in_tags
from mlops_assets.settings import Settings
from mlops_assets.training.registry import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    alias_version,
    client,
    delete_alias,
    model_versions,
    set_alias,
    set_version_tags,
)

#: Aliases a person may move by hand; ``previous`` follows the champion.
MOVABLE_ALIASES = (CHAMPION, CHALLENGER)
#: Version tag holding the JSON list of every move that concerned the version.
HISTORY_TAG = "alias_history"


class PromotionError(PlatformError, ValueError):
    """An alias move that is not allowed, with the reason and what to do instead."""


@dataclass(frozen=True)
class AliasMove:
    """One alias change: ``version`` took ``alias`` from ``replaced`` (or lost it, when ``action`` is removed)."""

    at: str
    alias: str
    action: str
    version: str
    replaced: str | None
    by: str
    reason: str

    def describe(self) -> str:
        if self.action == "removed":
            return f"{self.alias} removed from v{self.version}"
        return f"{self.alias} -> v{self.version}" + (f" (was v{self.replaced})" if self.replaced else "")


def current_user() -> str:
    """Who is moving an alias by hand: the OS user, as the environment names it (USER, LOGNAME)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def aliases(settings: Settings, config: DatasetConfig) -> dict[str, str | None]:
    """Which version holds each alias now."""
    return {alias: alias_version(settings, config, alias) for alias in (CHAMPION, CHALLENGER, PREVIOUS)}


def move_alias(settings: Settings, config: DatasetConfig, alias: str, version: str, *, by: str,
               reason: str) -> list[AliasMove]:
    """Give ``alias`` to ``version`` and record the move(s); returns what moved.

    Champion: the old champion becomes ``previous``, and the new one stops being challenger.
    A version that failed a gate, or was never judged by the gates, takes no serving alias.
    """
    if alias not in MOVABLE_ALIASES:
        raise PromotionError(f"alias {alias!r} cannot be moved by hand: choose one of {', '.join(MOVABLE_ALIASES)}")
    if not reason.strip():
        raise PromotionError("an alias move needs a reason (--reason TEXT): it is recorded on the version")
    model = config.registered_model_name
    tags = _version_tags(settings, config, version)
    if alias == CHAMPION:
        # Governance: failed fairness, or (when a roles file requires them) missing approvals or a rejection.
        require_promotion_allowed(settings, config, version)
    failed = failed_gates_in_tags(tags)
    if failed:
        raise PromotionError(f"{model} v{version} failed {failed}: a version that failed a gate cannot be {alias}")
    if tags.get(GATES_PASSED_TAG) != "true":
        raise PromotionError(f"{model} v{version} has no gate results (its run stopped before the gates): "
                             f"it cannot be {alias}")
    holders = aliases(settings, config)
    if holders[alias] == version:
        raise PromotionError(f"{model} v{version} already holds {alias}")
    if alias == CHALLENGER and holders[CHAMPION] == version:
        raise PromotionError(f"{model} v{version} is the {CHAMPION}: it cannot also be its {CHALLENGER}")

    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    moves = []
    if alias == CHAMPION and holders[CHAMPION] is not None:
        moves.append(AliasMove(at, PREVIOUS, "set", holders[CHAMPION], holders[PREVIOUS], by,
                               f"replaced as {CHAMPION} by v{version}"))
    moves.append(AliasMove(at, alias, "set", version, holders[alias], by, reason))
    if alias == CHAMPION and holders[CHALLENGER] == version:
        moves.append(AliasMove(at, CHALLENGER, "removed", version, None, by, f"v{version} became {CHAMPION}"))
    for move in moves:
        _apply(settings, config, move)
    return moves


def alias_history(settings: Settings, config: DatasetConfig) -> list[AliasMove]:
    """Every recorded move of the dataset's model, oldest first (read back from the versions' tags)."""
    moves = [AliasMove(**entry) for v in model_versions(settings, config)
             for entry in json.loads(v.tags.get(HISTORY_TAG, "[]"))]
    # Moves made together share a timestamp: the old champion's step to previous comes first.
    return sorted(moves, key=lambda m: (m.at, m.alias != PREVIOUS, m.action == "removed"))


def history_table(moves: list[AliasMove]) -> pd.DataFrame:
    """The history as a table for people (Dagster metadata, the CLI)."""
    columns = ["at", "alias", "action", "version", "replaced", "by", "reason"]
    return pd.DataFrame([asdict(m) for m in moves], columns=columns).fillna("")


def _version_tags(settings: Settings, config: DatasetConfig, version: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return dict(client(settings).get_model_version(config.registered_model_name, version).tags)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            known = ", ".join(str(v.version) for v in model_versions(settings, config)) or "none"
            raise PromotionError(f"{config.registered_model_name} has no version {version!r} "
                                 f"(registered versions: {known})") from exc
        raise


def _apply(settings: Settings, config: DatasetConfig, move: AliasMove) -> None:
    """Move the alias in the registry, then record the move on the version it concerns."""
    if move.action == "removed":
        delete_alias(settings, config, move.alias)
    else:
        set_alias(settings, config, move.alias, move.version)
    history = json.loads(_version_tags(settings, config, move.version).get(HISTORY_TAG, "[]"))
    history.append(asdict(move))
    set_version_tags(settings, config, move.version, {
        HISTORY_TAG: json.dumps(history),
        f"alias.{move.alias}.{move.action}_by": move.by,
        f"alias.{move.alias}.{move.action}_at": move.at,
        f"alias.{move.alias}.{move.action}_reason": move.reason,
    })
