"""Python transformations that feature views name: for features the config's arithmetic cannot express.

A transformation is a function from the source rows (only the columns it declares) to
a frame of the features it declares, registered under a name with
:func:`transformation`. A view's version hashes the function's source code, so editing
the function makes a new version of every view that uses it.

Datasets can register their own in a module listed under
``feature_store.transformation_modules`` in their config.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlops_assets.errors import PlatformError

OUTPUT_TYPES = ("integer", "float", "boolean", "string", "categorical", "datetime")


class TransformationError(PlatformError, ValueError):
    """A transformation that is unknown, declared wrongly, or raised while computing."""


@dataclass(frozen=True)
class Transformation:
    name: str
    function: Callable[[pd.DataFrame], pd.DataFrame]
    inputs: tuple[str, ...]
    outputs: dict[str, str]
    description: str
    source: str

    def apply(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The declared outputs for ``rows``; any exception becomes a TransformationError naming this function."""
        try:
            result = self.function(rows[list(self.inputs)])
        except Exception as exc:  # noqa: BLE001 - whatever user code raises is reported, not swallowed
            raise TransformationError(f"transformation {self.name!r} raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(result, pd.DataFrame):
            raise TransformationError(f"transformation {self.name!r} returned {type(result).__name__}, not a DataFrame")
        missing = [c for c in self.outputs if c not in result.columns]
        if missing:
            raise TransformationError(f"transformation {self.name!r} did not return its declared outputs {missing}")
        if len(result) != len(rows):
            raise TransformationError(f"transformation {self.name!r} returned {len(result)} rows for {len(rows)}")
        return result[list(self.outputs)].set_axis(rows.index)


REGISTRY: dict[str, Transformation] = {}


def transformation(name: str, inputs: list[str], outputs: dict[str, str]):
    """Register ``function`` as the transformation ``name``, reading ``inputs`` and producing typed ``outputs``."""
    bad = {k: v for k, v in outputs.items() if v not in OUTPUT_TYPES}
    if bad:
        raise TransformationError(f"transformation {name!r}: output types {bad} are not among {list(OUTPUT_TYPES)}")

    def register(function: Callable[[pd.DataFrame], pd.DataFrame]):
        REGISTRY[name] = Transformation(
            name=name, function=function, inputs=tuple(inputs), outputs=dict(outputs),
            description=inspect.getdoc(function) or "", source=inspect.getsource(function),
        )
        return function

    return register


def registered(name: str) -> Transformation:
    if name not in REGISTRY:
        raise TransformationError(f"no transformation named {name!r} is registered; known: {sorted(REGISTRY)}")
    return REGISTRY[name]


# Shipped transformations -----------------------------------------------------------------


@transformation("account_age", inputs=["signup_date", "event_time"], outputs={"account_age_days": "integer"})
def account_age(rows: pd.DataFrame) -> pd.DataFrame:
    """Whole days between sign-up and the snapshot: date arithmetic, which config expressions cannot do."""
    days = (rows["event_time"] - rows["signup_date"]).dt.days
    return pd.DataFrame({"account_age_days": days.astype("Int64")})


@transformation("engagement", inputs=["logins_last_30d", "avg_session_minutes"],
                outputs={"minutes_online_30d": "float", "is_dormant": "boolean"})
def engagement(rows: pd.DataFrame) -> pd.DataFrame:
    """Time online in the last 30 days, and whether the customer did not log in at all."""
    logins = rows["logins_last_30d"].astype(float)
    return pd.DataFrame({
        "minutes_online_30d": np.round(logins * rows["avg_session_minutes"].astype(float), 2),
        "is_dormant": logins == 0,
    })
