"""Per-variant Prometheus metrics, served on BentoML's ``/metrics`` with its own.

Labelled by dataset, variant (champion or challenger), model version and whether the
prediction was a shadow one, so a dashboard can put the two variants side by side.

``prometheus_client`` is imported when the first worker asks for the metrics, not when
this module is imported: BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` in each worker after
importing the service, and a client imported before that would count in memory, where
``/metrics`` (which sums the workers' files) never sees it.
"""

from __future__ import annotations

import functools
from typing import Any

LABELS = ("dataset", "variant", "model_version", "shadow")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))


class ServingMetrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter("mlops_predictions", "Predictions answered (or shadow-scored)", LABELS)
        self.errors = Counter("mlops_prediction_errors", "Predictions the model failed to score", LABELS)
        self.latency = Histogram("mlops_prediction_latency_seconds", "Time inside the service, routing to answer",
                                 LABELS, buckets=LATENCY_BUCKETS)
        self.score = Histogram("mlops_prediction_score", "Scores (probability of the positive class)", LABELS,
                               buckets=SCORE_BUCKETS)
        self._children: dict[tuple[str, ...], tuple[Any, Any, Any, Any]] = {}

    def observe(self, dataset: str, variant: str, model_version: str, shadow: bool, latency_s: float,
                score: float | None) -> None:
        key = (dataset, variant, model_version, "true" if shadow else "false")
        children = self._children.get(key)
        if children is None:  # label lookups cost microseconds: once per label set
            children = tuple(metric.labels(*key) for metric in (self.requests, self.errors, self.latency, self.score))
            self._children[key] = children
        requests, errors, latency, scores = children
        requests.inc()
        latency.observe(latency_s)
        if score is None:
            errors.inc()
        else:
            scores.observe(score)


@functools.cache
def serving_metrics() -> ServingMetrics:
    """One set per process (prometheus_client refuses to register a metric twice)."""
    return ServingMetrics()
