"""Which variant answers a request: a deterministic hash of the experiment id and the entity id.

The same entity lands in the same variant on every worker and after every restart (no
state, no coordination), for as long as the experiment id is the same. The hash maps each
(experiment, entity) to a fixed point in [0, 1); the challenger gets the points below its
share. Raising the share from 10% to 20% therefore moves only entities from champion to
challenger, never back, and a new experiment id reshuffles everyone.

A request without an entity id has nothing to stick to: it is routed by its request id,
so its variant is random but still follows the split.
"""

from __future__ import annotations

import hashlib
from typing import Literal

Variant = Literal["champion", "challenger"]
CHAMPION: Variant = "champion"
CHALLENGER: Variant = "challenger"
VARIANTS: tuple[Variant, Variant] = (CHAMPION, CHALLENGER)

_SCALE = float(2**64)


def bucket(experiment_id: str, unit_id: str) -> float:
    """A uniform, reproducible point in [0, 1) for this unit in this experiment.

    SHA-256 rather than Python's ``hash()``: the latter is salted per process, so two
    workers would disagree.
    """
    digest = hashlib.sha256(f"{experiment_id}\x1f{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def assign(experiment_id: str, unit_id: str, challenger_share: float) -> Variant:
    """The variant of ``unit_id``: the challenger below its share of [0, 1), the champion above."""
    return CHALLENGER if bucket(experiment_id, unit_id) < challenger_share else CHAMPION
