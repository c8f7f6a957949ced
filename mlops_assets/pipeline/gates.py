"""Quality gates: the test-set floors and ceilings a version must meet before it may serve.

A gate is named ``min_<metric>`` or ``max_<metric>`` in the dataset config's ``gates``
mapping (``min_roc_auc: 0.70``: the test ROC AUC must be at least 0.70). The pipeline
evaluates them on every new version, records the verdict on the version in the registry
(``gate.<name>`` = passed|failed, ``gates_passed`` = true|false) and shows each one as
an asset check on ``evaluation``. A version that failed a gate never takes a serving
alias. This module is plain Python: the checks, the champion decision, ``mlops promote``
and the model card all call it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from mlops_assets.config import ConfigError, DatasetConfig

#: Test metrics a gate may name: what ``training/evaluation.py::classification_metrics`` measures.
GATEABLE_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy", "precision", "recall", "f1")

#: Version tags (the contract other systems read).
GATE_TAG_PREFIX = "gate."
GATES_PASSED_TAG = "gates_passed"
#: The measured comparison behind each verdict, e.g. ``0.6234 < 0.7``, so a message can say why.
GATE_DETAIL_TAG_PREFIX = "gate_detail."


@dataclass(frozen=True)
class GateResult:
    """One gate judged on one version's test metrics."""

    name: str
    metric: str
    threshold: float
    measured: float | None
    passed: bool

    @property
    def bound(self) -> str:
        """``min`` (the metric must reach the threshold) or ``max`` (it must not exceed it)."""
        return self.name.split("_", 1)[0]

    @property
    def comparison(self) -> str:
        """The measured value against the threshold, e.g. ``0.6234 < 0.7``."""
        if self.measured is None:
            return f"not measured (threshold {_figure(self.threshold)})"
        holds = {"min": (">=", "<"), "max": ("<=", ">")}[self.bound]
        measured, threshold = _distinct_figures(self.measured, self.threshold)
        return f"{measured} {holds[0] if self.passed else holds[1]} {threshold}"

    def describe(self) -> str:
        """``min_roc_auc (0.6234 < 0.7)``: the gate and why it passed or failed."""
        return f"{self.name} ({self.comparison})"


def parse_gate(name: str) -> tuple[str, str]:
    """``min_roc_auc`` -> ("min", "roc_auc"); a name that is not a known gate raises ValueError."""
    bound, _, metric = name.partition("_")
    if bound not in ("min", "max") or metric not in GATEABLE_METRICS:
        raise ValueError(
            f"unknown gate {name!r}: a gate is min_<metric> or max_<metric>, metric one of {', '.join(GATEABLE_METRICS)}"
        )
    return bound, metric


def check_gates(config: DatasetConfig) -> None:
    """Every gate of the config names a known bound and metric (called where the config is used)."""
    for name, threshold in config.gates.items():
        try:
            parse_gate(name)
        except ValueError as exc:
            raise ConfigError(f"{config.path or config.name}: gates: {exc}") from exc
        if not math.isfinite(threshold):
            raise ConfigError(f"{config.path or config.name}: gates: {name} needs a finite threshold, got {threshold}")


def evaluate_gates(config: DatasetConfig, metrics: Mapping[str, float]) -> list[GateResult]:
    """Each configured gate against the test ``metrics``; a metric that is missing or NaN fails its gate."""
    check_gates(config)
    results = []
    for name, threshold in config.gates.items():
        bound, metric = parse_gate(name)
        value = metrics.get(metric)
        measured = float(value) if value is not None and math.isfinite(value) else None
        passed = measured is not None and (measured >= threshold if bound == "min" else measured <= threshold)
        results.append(GateResult(name, metric, float(threshold), measured, passed))
    return results


def all_passed(results: list[GateResult]) -> bool:
    return all(r.passed for r in results)


def failed_summary(results: list[GateResult]) -> str:
    """``min_roc_auc (0.6234 < 0.7), max_brier (0.31 > 0.2)``: the failed gates and why."""
    return ", ".join(r.describe() for r in results if not r.passed)


def gate_tags(results: list[GateResult]) -> dict[str, str]:
    """The version tags that record a verdict: per gate, its detail, and the overall ``gates_passed``."""
    tags = {GATES_PASSED_TAG: "true" if all_passed(results) else "false"}
    for result in results:
        tags[f"{GATE_TAG_PREFIX}{result.name}"] = "passed" if result.passed else "failed"
        tags[f"{GATE_DETAIL_TAG_PREFIX}{result.name}"] = result.comparison
    return tags


def failed_gates_in_tags(tags: Mapping[str, str]) -> str:
    """The failed gates a version's tags record, as ``min_roc_auc (0.6234 < 0.7)``; empty when none failed."""
    failed = sorted(key.removeprefix(GATE_TAG_PREFIX) for key, value in tags.items()
                    if key.startswith(GATE_TAG_PREFIX) and value == "failed")
    return ", ".join(f"{name} ({tags.get(GATE_DETAIL_TAG_PREFIX + name, 'failed')})" for name in failed)


def _figure(value: float, digits: int = 4) -> str:
    return format(value, f".{digits}g")


def _distinct_figures(measured: float, threshold: float) -> tuple[str, str]:
    """Both numbers, with enough digits that a value just below the threshold does not print equal to it."""
    for digits in range(4, 12):
        shown = _figure(measured, digits), _figure(threshold, digits)
        if shown[0] != shown[1] or measured == threshold:
            return shown
    return repr(measured), repr(threshold)
