"""The statistics of a two-variant experiment: lift with confidence intervals, sequential and Bayesian tests.

The estimators are GrowthBook's (its engine ``gbstats`` 0.8), so a result here means
what it means there; ``tests/gbstats_cases`` holds cases computed by gbstats itself and
the tests check every figure to 1e-6. Everything works on sufficient statistics of the
per-unit values of one metric (count, sum, sum of squares; for CUPED also the
covariate's sums and the cross product), so a variant of a million units is a few
numbers.

- **Welch's t-test**, two-sided: the absolute lift ``mean_b - mean_a`` or the relative
  lift ``(mean_b - mean_a) / mean_a`` with its variance by the delta method, and a
  Welch-Satterthwaite degrees of freedom.
- **Confidence sequence** (Waudby-Smith et al. 2023, eq. 9 and 155): an interval and a
  p-value that stay valid however often someone looks, at the price of width. This is
  what a daily dashboard should decide on.
- **Bayesian effect test** with a flat prior: the chance that the challenger is better
  (``inverse`` when lower is better) and the expected loss (risk) of either choice.
- **CUPED** (regression adjustment on a pre-experiment covariate): one ``theta`` from
  both variants pooled, then every test runs on the adjusted means and variances.
- **Sample-ratio mismatch**: a chi-square goodness-of-fit test of the units per variant
  against the configured split.

A degenerate input (no units, zero variance, a zero baseline) answers a neutral result
with the reason in ``error``, as gbstats does, instead of dividing by zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from scipy import stats

Difference = Literal["relative", "absolute"]

BASELINE_ZERO = "ZERO_NEGATIVE_BASELINE_VARIATION"
ZERO_VARIANCE = "ZERO_NEGATIVE_VARIANCE"
NO_UNITS = "NO_UNITS_IN_VARIATION"

#: GrowthBook's default tuning of the confidence sequence: the sample size it is tightest around.
SEQUENTIAL_TUNING = 5000.0


@dataclass(frozen=True)
class VariantSample:
    """Sufficient statistics of one variant's per-unit values of a metric.

    ``binary`` marks a proportion (every value 0 or 1): its variance is p(1-p), as in
    gbstats. The ``pre_*`` fields carry the CUPED covariate and are None without one.
    """

    n: int
    sum: float
    sum_squares: float
    binary: bool = False
    pre_sum: float | None = None
    pre_sum_squares: float | None = None
    post_pre_sum_of_products: float | None = None
    theta: float = 0.0

    @classmethod
    def from_values(cls, values: Sequence[float] | np.ndarray, covariate: Sequence[float] | np.ndarray | None = None,
                    binary: bool | None = None) -> VariantSample:
        """From per-unit values; ``binary`` defaults to "every value is 0 or 1"."""
        y = np.asarray(values, dtype=float)
        if binary is None:
            binary = bool(len(y)) and bool(np.isin(y, (0.0, 1.0)).all())
        sample = cls(n=int(len(y)), sum=float(y.sum()), sum_squares=float((y**2).sum()), binary=binary)
        if covariate is None:
            return sample
        x = np.asarray(covariate, dtype=float)
        if len(x) != len(y):
            raise ValueError(f"{len(x)} covariate values for {len(y)} units")
        return replace(sample, pre_sum=float(x.sum()), pre_sum_squares=float((x**2).sum()),
                       post_pre_sum_of_products=float((x * y).sum()))

    # The metric itself -----------------------------------------------------------------
    @property
    def unadjusted_mean(self) -> float:
        return 0.0 if self.n == 0 else self.sum / self.n

    @property
    def unadjusted_variance(self) -> float:
        if self.binary:
            p = self.unadjusted_mean
            return p * (1 - p)
        if self.n <= 1:
            return 0.0
        return (self.sum_squares - self.sum**2 / self.n) / (self.n - 1)

    # The covariate (CUPED) --------------------------------------------------------------
    @property
    def has_covariate(self) -> bool:
        return self.pre_sum is not None

    @property
    def pre_mean(self) -> float:
        return 0.0 if self.n == 0 or self.pre_sum is None else self.pre_sum / self.n

    @property
    def pre_variance(self) -> float:
        if self.n <= 1 or self.pre_sum is None or self.pre_sum_squares is None:
            return 0.0
        return (self.pre_sum_squares - self.pre_sum**2 / self.n) / (self.n - 1)

    @property
    def covariance(self) -> float:
        if self.n <= 1 or self.pre_sum is None or self.post_pre_sum_of_products is None:
            return 0.0
        return (self.post_pre_sum_of_products - self.sum * self.pre_sum / self.n) / (self.n - 1)

    # What the tests use: adjusted when theta is set -------------------------------------
    @property
    def mean(self) -> float:
        return self.unadjusted_mean - self.theta * self.pre_mean

    @property
    def variance(self) -> float:
        if not self.theta:
            return self.unadjusted_variance
        if self.n <= 1:
            return 0.0
        return self.unadjusted_variance + self.theta**2 * self.pre_variance - 2 * self.theta * self.covariance

    def pooled_with(self, other: VariantSample) -> VariantSample:
        def total(x: float | None, y: float | None) -> float | None:
            return None if x is None or y is None else x + y

        return VariantSample(
            n=self.n + other.n, sum=self.sum + other.sum, sum_squares=self.sum_squares + other.sum_squares,
            binary=self.binary and other.binary, pre_sum=total(self.pre_sum, other.pre_sum),
            pre_sum_squares=total(self.pre_sum_squares, other.pre_sum_squares),
            post_pre_sum_of_products=total(self.post_pre_sum_of_products, other.post_pre_sum_of_products),
        )


def cuped_theta(a: VariantSample, b: VariantSample) -> float:
    """The regression coefficient of the metric on the covariate, both variants pooled (0: no adjustment)."""
    if not (a.has_covariate and b.has_covariate):
        return 0.0
    joint = a.pooled_with(b)
    if joint.pre_variance == 0 or joint.unadjusted_variance == 0:
        return 0.0
    return joint.covariance / joint.pre_variance


def cuped_adjusted(a: VariantSample, b: VariantSample) -> tuple[VariantSample, VariantSample]:
    """Both samples with the pooled theta set: their means and variances become CUPED's."""
    theta = cuped_theta(a, b)
    return replace(a, theta=theta), replace(b, theta=theta)


# Results ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FrequentistResult:
    """Lift of b over a: point estimate, (1 - alpha) interval, p-value; ``error`` says why it is neutral."""

    estimate: float
    ci: tuple[float, float]
    p_value: float
    error: str | None = None


@dataclass(frozen=True)
class BayesianResult:
    """Posterior of the lift: mean, credible interval, chance b is better, risk of choosing (a, b)."""

    estimate: float
    ci: tuple[float, float]
    chance_to_win: float
    risk: tuple[float, float]
    error: str | None = None


def _lift(a: VariantSample, b: VariantSample, difference: Difference) -> tuple[float, float]:
    """(point estimate, variance of the estimate): the delta method for the relative lift."""
    if difference == "relative":
        base, treated = a.unadjusted_mean, b.unadjusted_mean
        point = (b.mean - a.mean) / base
        variance = b.variance / (base**2 * b.n) + a.variance * treated**2 / (base**4 * a.n)
    else:
        point = b.mean - a.mean
        variance = b.variance / b.n + a.variance / a.n
    return point, variance


def _welch_dof(a: VariantSample, b: VariantSample) -> float:
    return (b.variance / b.n + a.variance / a.n) ** 2 / (
        b.variance**2 / (b.n**2 * (b.n - 1)) + a.variance**2 / (a.n**2 * (a.n - 1))
    )


def _neutral_reason(a: VariantSample, b: VariantSample, bayesian_difference: Difference | None = None) -> str | None:
    """Why no test can be computed, in gbstats' words and order, or None.

    The t-tests refuse a zero baseline whatever the difference; the Bayesian test only for a
    relative one, and it names an empty variant.
    """
    if (bayesian_difference in (None, "relative")) and (a.mean == 0 or a.unadjusted_mean == 0):
        return BASELINE_ZERO
    if bayesian_difference is not None and (a.n == 0 or b.n == 0):
        return NO_UNITS
    if a.variance <= 0 or b.variance <= 0:
        return ZERO_VARIANCE
    return None


def _prepared(a: VariantSample, b: VariantSample) -> tuple[VariantSample, VariantSample]:
    return cuped_adjusted(a, b) if a.has_covariate and b.has_covariate else (a, b)


def welch_test(a: VariantSample, b: VariantSample, difference: Difference = "relative",
               alpha: float = 0.05) -> FrequentistResult:
    """Fixed-horizon two-sided Welch t-test of b against a."""
    a, b = _prepared(a, b)
    reason = _neutral_reason(a, b)
    if reason:
        return FrequentistResult(0.0, (0.0, 0.0), 1.0, reason)
    point, variance = _lift(a, b, difference)
    dof = _welch_dof(a, b)
    standard_error = math.sqrt(variance)
    p_value = 2 * (1 - stats.t.cdf(abs(point / standard_error), dof))
    width = stats.t.ppf(1 - alpha / 2, dof) * standard_error
    return FrequentistResult(point, (point - width, point + width), float(p_value))


def sequential_test(a: VariantSample, b: VariantSample, difference: Difference = "relative",
                    alpha: float = 0.05, tuning: float = SEQUENTIAL_TUNING) -> FrequentistResult:
    """Always-valid confidence sequence and p-value: looking daily does not inflate false positives."""
    a, b = _prepared(a, b)
    reason = _neutral_reason(a, b)
    if reason:
        return FrequentistResult(0.0, (0.0, 0.0), 1.0, reason)
    point, variance = _lift(a, b, difference)
    total = a.n + b.n
    rho = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)
    spread = total * rho**2 + 1
    width = math.sqrt(variance * total) * math.sqrt(2 * spread * math.log(math.sqrt(spread) / alpha) / (total * rho) ** 2)
    statistic = point**2 * total / variance
    # p = min(1, 1 / e-value), computed on the log scale: a strong effect's e-value overflows a float.
    log_e_value = rho**2 * statistic / (2 * spread) - 0.5 * math.log(spread)
    p_value = 1.0 if log_e_value <= 0 else math.exp(-log_e_value)
    return FrequentistResult(point, (point - width, point + width), p_value)


def _truncated_normal_mean(mu: float, sigma: float, low: float, high: float) -> float:
    return float(stats.truncnorm.stats((low - mu) / sigma, (high - mu) / sigma, loc=mu, scale=sigma, moments="m"))


def bayesian_test(a: VariantSample, b: VariantSample, difference: Difference = "relative",
                  alpha: float = 0.05, inverse: bool = False) -> BayesianResult:
    """Posterior of the lift under a flat prior; ``inverse``: lower values are better (chance to win flips)."""
    a, b = _prepared(a, b)
    reason = _neutral_reason(a, b, difference)
    if reason:
        return BayesianResult(0.0, (0.0, 0.0), 0.5, (0.0, 0.0), reason)
    mean, variance = _lift(a, b, difference)
    sd = math.sqrt(variance)
    better = float(stats.norm.sf(0, mean, sd))
    chance_to_win = 1 - better if inverse else better
    low, high = stats.norm.ppf([alpha / 2, 1 - alpha / 2], mean, sd)
    control_better = float(stats.norm.cdf(0.0, loc=mean, scale=sd))
    risk_control = (1.0 - control_better) * _truncated_normal_mean(mean, sd, 0.0, np.inf)
    risk_treatment = -control_better * _truncated_normal_mean(mean, sd, -np.inf, 0.0)
    risk = (risk_treatment, risk_control) if inverse else (risk_control, risk_treatment)
    return BayesianResult(mean, (float(low), float(high)), chance_to_win, risk)


def srm_p_value(counts: Sequence[int], weights: Sequence[float]) -> float:
    """Chi-square goodness of fit of the observed units per variant to the configured weights."""
    observed = sum(counts)
    if not observed:
        return 1.0
    total_weight = sum(weights)
    statistic = 0.0
    for count, weight in zip(counts, weights):
        if weight <= 0:
            continue
        expected = weight / total_weight * observed
        statistic += (count - expected) ** 2 / expected
    return float(stats.chi2.sf(statistic, len(counts) - 1))
