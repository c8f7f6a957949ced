"""Gate results as the card shows them: the pipeline's own verdict on each configured gate.

``pipeline/gates.py::evaluate_gates`` judges the measured test metrics; the card adds what
the pipeline tagged on the version (``gate.<name>``), so a reader sees both the figures
and the recorded verdict. The card claims no enforcement beyond what the pipeline does.
"""

from __future__ import annotations

from mlops_assets.config import DatasetConfig
from mlops_assets.pipeline.gates import GATE_TAG_PREFIX, evaluate_gates


def gate_results(config: DatasetConfig, tags: dict[str, str], metrics: dict[str, float]) -> list[dict]:
    """[{name, metric, threshold, measured, passed, recorded}] for every gate in the config."""
    return [{"name": r.name, "metric": r.metric, "threshold": r.threshold,
             "measured": float("nan") if r.measured is None else float(r.measured),
             "passed": r.passed if r.measured is not None else None,
             "recorded": tags.get(f"{GATE_TAG_PREFIX}{r.name}")}
            for r in evaluate_gates(config, metrics)]
