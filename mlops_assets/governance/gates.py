"""Gate results as the card shows them: each configured gate against the measured test metric.

The pipeline system owns the gates (``pipeline/gates.py::evaluate_gates`` once it lands);
until then this reads the config's ``gates`` (``min_<metric>`` / ``max_<metric>``) and
the measured metrics itself, and shows the ``gate.<name>`` verdict the pipeline tagged on
the version when there is one. The card says what was measured; it claims no
enforcement.
"""

from __future__ import annotations

import math

from mlops_assets.config import DatasetConfig


def gate_results(config: DatasetConfig, tags: dict[str, str], metrics: dict[str, float]) -> list[dict]:
    """[{name, metric, threshold, measured, passed, recorded}] for every gate in the config."""
    results = []
    for name, limit in config.gates.items():
        metric = name.removeprefix("min_").removeprefix("max_")
        measured = metrics.get(metric)
        if measured is None or (isinstance(measured, float) and math.isnan(measured)):
            passed = None
        else:
            passed = bool(measured >= limit) if name.startswith("min_") else bool(measured <= limit)
        results.append({"name": name, "metric": metric, "threshold": limit,
                        "measured": float("nan") if measured is None else float(measured),
                        "passed": passed, "recorded": tags.get(f"gate.{name}")})
    return results
