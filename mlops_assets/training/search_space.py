"""A dataset's search space, checked against its model family and turned into Optuna suggestions.

``config.py`` only parses ranges; whether a name is a parameter of the family's estimator
is known here, where the training system loads the config. A typo in a search space
would otherwise tune nothing and fail, or silently, only when the first trial runs.
"""

from __future__ import annotations

import difflib
from typing import Any

import optuna

from mlops_assets.config import ConfigError, DatasetConfig, SearchParameter
from mlops_assets.training.model_families import estimator_parameters


def check_search_space(config: DatasetConfig) -> None:
    """Raise a one-line ConfigError for a search-space name the family's estimator does not accept."""
    known = estimator_parameters(config.model.family)
    for name in config.search_space:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{config.path or config.name}: search_space.{name}: {config.model.family} has no parameter "
                f"{name!r}{hint}; it accepts {', '.join(sorted(known))}"
            )


def suggest(trial: optuna.Trial, space: dict[str, SearchParameter]) -> dict[str, Any]:
    """One value per parameter, drawn by the study's sampler."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if spec.kind == "categorical":
            params[name] = trial.suggest_categorical(name, spec.choices)
        elif spec.kind == "int":
            params[name] = trial.suggest_int(name, int(spec.low), int(spec.high), step=int(spec.step or 1), log=spec.log)
        else:
            params[name] = trial.suggest_float(name, float(spec.low), float(spec.high), step=spec.step, log=spec.log)
    return params
