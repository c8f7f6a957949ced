"""What the prediction service reads from its environment (the table in ``mlops_assets/settings.py``).

Read once per worker at start. Production deployments set these in the container's
environment; ``mlops serve`` sets the worker count from ``--workers``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mlops_assets.errors import PlatformError


class OptionError(PlatformError, ValueError):
    """A serving environment variable that cannot be used."""


def _number(name: str, default: float, minimum: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise OptionError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise OptionError(f"{name}={raw!r} must be at least {minimum:g}")
    return value


@dataclass(frozen=True)
class ServingOptions:
    workers: int = 1
    admin_token: str | None = None
    max_body_bytes: int = 1_048_576
    reload_interval_s: float = 10.0
    state_poll_interval_s: float = 1.0
    log_flush_interval_s: float = 0.2
    max_batch_size: int = 128
    #: Serve versions through their verified compiled form (docs/serving.md); 0 keeps every version on sklearn.
    compiled_scoring: bool = True

    @classmethod
    def from_env(cls) -> ServingOptions:
        return cls(
            workers=int(_number("MLOPS_SERVE_WORKERS", 1, 1)),
            admin_token=os.environ.get("MLOPS_ADMIN_TOKEN") or None,
            max_body_bytes=int(_number("MLOPS_MAX_BODY_BYTES", 1_048_576, 1024)),
            reload_interval_s=_number("MLOPS_RELOAD_INTERVAL_S", 10.0, 0.5),
            log_flush_interval_s=_number("MLOPS_LOG_FLUSH_INTERVAL_S", 0.2, 0.01),
            compiled_scoring=os.environ.get("MLOPS_COMPILED_SCORING", "1").strip() not in ("0", "false", "no"),
        )
