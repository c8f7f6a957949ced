"""The statistics behind every drift verdict: a minimum-effect test per shift, weighted Holm across a report.

A drift report asks one question per statistic (a column's mean, a quartile, a category's
share, ...): *did it move by more than a negligible amount?* The shift θ is estimated as
θ̂ with a standard error ``se`` that adds the reference window's sampling variance to the
current window's, so a small reference is not mistaken for the truth.

**Minimum-effect test** (Murphy & Myors 1999; Wellek 2010, ch. 1): H0 ``|θ| <= m`` against
H1 ``|θ| > m``. With θ̂ ~ N(θ, se²) the exact p-value at the boundary of H0 is the folded-normal tail

    p = P(|θ̂| >= |t| ; θ = m) = Φ((m - |t|)/se) + Φ((-m - |t|)/se),

so, for a shift clear of zero, it rejects at level a when the (1 - 2a) confidence interval
of θ lies entirely beyond ±m. With m = 0 it is the ordinary two-sided z-test.

**The margin m** is not a second knob. The config says what *matters* (δ: e.g. 0.2 SD, 10
points) and how often a shift of that size must be caught (``power``). Solving the classic
sample-size equation ``δ - m = (z_{1-a} + z_power) se`` for m gives the largest margin that
still catches δ with that power at this hypothesis' level ``a``; it is clipped to
``[floor, δ]``. So a large window only alarms on shifts near δ (never on a 0.02 SD wobble
that is "significant" at 100,000 rows), and a small window uses everything it has. When
even ``m = floor`` cannot reach the power, the window is too small, and
:func:`rows_needed` says how many rows would be enough.

**Across the report** the family-wise error rate is held at α by Holm's step-down procedure
with weights (Holm 1979; Benjamini & Hochberg 1997): each column gets an equal share of α
and splits it over its statistics, so a column with many categories does not dilute the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import norm


def min_effect_p_value(estimate: float, se: float, margin: float) -> float:
    """P-value of H0 ``|θ| <= margin`` given θ̂ = ``estimate`` with standard error ``se``."""
    distance = abs(estimate)
    if not math.isfinite(distance):
        return 0.0
    if se <= 0:
        return 0.0 if distance > margin else 1.0
    return float(min(1.0, norm.cdf((margin - distance) / se) + norm.cdf((-margin - distance) / se)))


def critical_z(level: float) -> float:
    """One-sided normal quantile for a hypothesis tested at ``level``."""
    return float(norm.isf(level))


def design_margin(matters: float, se: float, level: float, power: float, floor: float = 0.0) -> float:
    """The largest margin that still catches a shift of ``matters`` with ``power`` (see module doc)."""
    if se <= 0:
        return max(floor, matters * (1 - 1e-9))
    margin = matters - (critical_z(level) + float(norm.ppf(power))) * se
    return float(min(max(margin, floor), matters))


def detection_power(matters: float, se: float, level: float, margin: float) -> float:
    """Probability of rejecting ``|θ| <= margin`` when the true shift is ``matters``."""
    if se <= 0:
        return 1.0 if matters > margin else 0.0
    z = critical_z(level)
    return float(norm.sf((margin - matters) / se + z) + norm.cdf((-margin - matters) / se - z))


def rows_needed(
    matters: float,
    level: float,
    power: float,
    *,
    unit_variance_current: float,
    reference_variance: float,
    floor: float = 0.0,
) -> float:
    """Current rows needed so that a shift of ``matters`` is caught with ``power``.

    ``unit_variance_current`` is the current window's variance of the estimate times its rows
    (so the current contributes ``unit_variance_current / n``); ``reference_variance`` is the
    reference's fixed contribution. Infinite when the reference alone is too noisy.
    """
    target_se = (matters - floor) / (critical_z(level) + float(norm.ppf(power)))
    room = target_se**2 - reference_variance
    if room <= 0:
        return math.inf
    return math.ceil(unit_variance_current / room)


def weighted_holm(p_values: Sequence[float], weights: Sequence[float], alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Rejections and adjusted p-values of Holm's weighted step-down procedure at family-wise level ``alpha``.

    Hypotheses are taken in order of ``p / w``; the one at step j is rejected when
    ``p <= alpha * w / (sum of the weights not yet rejected)``, and the procedure stops at the
    first one that is not. With equal weights this is Holm's original procedure.
    """
    p = np.asarray(p_values, dtype=float)
    w = np.asarray(weights, dtype=float)
    if p.shape != w.shape:
        raise ValueError(f"{len(p)} p-values but {len(w)} weights")
    if len(p) == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    if np.any(w <= 0):
        raise ValueError("every hypothesis needs a positive weight")
    order = np.argsort(p / w, kind="stable")
    remaining = w[order][::-1].cumsum()[::-1]  # weight still in play at each step
    steps = np.minimum(1.0, p[order] * remaining / w[order])
    adjusted_sorted = np.maximum.accumulate(steps)
    adjusted = np.empty_like(adjusted_sorted)
    adjusted[order] = adjusted_sorted
    return adjusted <= alpha, adjusted
