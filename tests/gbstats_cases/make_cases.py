"""Expected experiment statistics computed by GrowthBook's engine, gbstats 0.8.0.

gbstats pins numpy<2, which the platform cannot install next to its own stack, so this
script runs in a virtual environment of its own and writes ``cases.json`` beside it;
``tests/test_experiment_stats.py`` checks ``mlops_assets.serving.experiment_stats``
against every case to 1e-6.

    python3.11 -m venv /tmp/gbstats-venv
    /tmp/gbstats-venv/bin/pip install gbstats==0.8.0
    /tmp/gbstats-venv/bin/python tests/gbstats_cases/make_cases.py

Each case is simulated per unit (seeded), reduced to the sufficient statistics gbstats
takes (n, sum, sum of squares, and for CUPED the covariate's sums and the cross
product), then run through gbstats' two-sided Welch t-test, its sequential test
(confidence sequence) and its Bayesian effect test, relative and absolute. A few
cases also keep their per-unit values, so the path from unit values to sums is
checked too.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

import numpy as np
from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig
from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import (
    ProportionStatistic,
    RegressionAdjustedStatistic,
    SampleMeanStatistic,
)
from gbstats.utils import check_srm

OUT = Path(__file__).with_name("cases.json")


def sums(values: np.ndarray) -> dict:
    return {"n": int(len(values)), "sum": float(values.sum()), "sum_squares": float((values**2).sum())}


def statistic(kind: str, data: dict):
    """A fresh gbstats statistic (tests mutate theta, so never reuse one)."""
    if kind == "proportion":
        return ProportionStatistic(n=data["n"], sum=data["sum"])
    if kind == "mean":
        return SampleMeanStatistic(n=data["n"], sum=data["sum"], sum_squares=data["sum_squares"])
    post_kind = "proportion" if kind == "proportion_ra" else "mean"
    return RegressionAdjustedStatistic(
        n=data["n"],
        post_statistic=statistic(post_kind, data),
        pre_statistic=SampleMeanStatistic(n=data["n"], sum=data["pre_sum"], sum_squares=data["pre_sum_squares"]),
        post_pre_sum_of_products=data["post_pre_sum_of_products"],
        theta=0,
    )


def plain(value):
    """JSON-safe floats: gbstats returns numpy scalars and sometimes inf."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def run_engines(case: dict) -> dict:
    expected = {}
    for difference in ("relative", "absolute"):
        a, b = case["a"], case["b"]
        kind, alpha = case["statistic"], case["alpha"]
        welch = TwoSidedTTest(statistic(kind, a), statistic(kind, b),
                              FrequentistConfig(alpha=alpha, difference_type=difference)).compute_result()
        sequential = SequentialTwoSidedTTest(
            statistic(kind, a), statistic(kind, b),
            SequentialConfig(alpha=alpha, difference_type=difference,
                             sequential_tuning_parameter=case["sequential_tuning"]),
        ).compute_result()
        bayes = EffectBayesianABTest(
            statistic(kind, a), statistic(kind, b),
            EffectBayesianConfig(alpha=alpha, difference_type=difference, inverse=case["inverse"]),
        ).compute_result()
        expected[difference] = plain({
            "welch": {"expected": welch.expected, "ci": welch.ci, "p_value": welch.p_value,
                      "error": welch.error_message},
            "sequential": {"expected": sequential.expected, "ci": sequential.ci, "p_value": sequential.p_value,
                           "error": sequential.error_message},
            "bayesian": {"expected": bayes.expected, "ci": bayes.ci, "chance_to_win": bayes.chance_to_win,
                         "risk": bayes.risk, "error": bayes.error_message},
        })
    return expected


def simulate(rng: np.random.Generator, kind: str, n_a: int, n_b: int, effect: float, base: float,
             keep_units: bool) -> tuple[dict, dict, dict | None]:
    units = {}
    out = []
    for name, n, lift in (("a", n_a, 0.0), ("b", n_b, effect)):
        covariate = rng.normal(50, 10, n).round(3)  # rounded before the sums: stored values give equal sums
        if kind.startswith("proportion"):
            logit = math.log(base / (1 - base)) + lift + 0.04 * (covariate - 50)
            values = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
        else:
            values = (base * (1 + lift) + 0.6 * (covariate - 50) + rng.gamma(2.0, 3.0, n)).round(4)
        data = sums(values)
        if kind.endswith("_ra"):
            data.update(pre_sum=float(covariate.sum()), pre_sum_squares=float((covariate**2).sum()),
                        post_pre_sum_of_products=float((values * covariate).sum()))
        if keep_units:
            units[name] = {"values": values.tolist(), "covariate": covariate.tolist()}
        out.append(data)
    return out[0], out[1], units or None


def main() -> None:
    rng = np.random.default_rng(20241115)
    cases = []
    plans = [
        # kind, n_a, n_b, effect, base, alpha, inverse, tuning, keep per-unit values
        ("proportion", 1000, 1000, 0.0, 0.2, 0.05, False, 5000, False),
        ("proportion", 5000, 5000, 0.15, 0.1, 0.05, False, 5000, False),
        ("proportion", 9000, 1000, 0.3, 0.25, 0.05, True, 5000, False),
        ("proportion", 20000, 20000, -0.1, 0.05, 0.1, False, 1000, False),
        ("proportion", 150, 140, 0.4, 0.3, 0.05, True, 5000, True),
        ("mean", 800, 820, 0.0, 10.0, 0.05, False, 5000, True),
        ("mean", 4000, 4000, 0.05, 20.0, 0.05, True, 5000, False),
        ("mean", 12000, 3000, -0.03, 5.0, 0.01, False, 20000, False),
        ("mean", 60, 55, 0.2, 3.0, 0.05, False, 5000, False),
        ("mean_ra", 2000, 2000, 0.04, 10.0, 0.05, False, 5000, False),
        ("mean_ra", 300, 320, 0.1, 10.0, 0.05, False, 5000, True),
        ("mean_ra", 10000, 1100, -0.02, 15.0, 0.05, True, 5000, False),
        ("proportion_ra", 3000, 3000, 0.2, 0.2, 0.05, False, 5000, False),
        ("proportion_ra", 400, 380, 0.3, 0.2, 0.05, True, 5000, True),
        ("proportion_ra", 25000, 2500, -0.15, 0.15, 0.1, True, 3000, False),
    ]
    for index, (kind, n_a, n_b, effect, base, alpha, inverse, tuning, keep) in enumerate(plans):
        a, b, units = simulate(rng, kind, n_a, n_b, effect, base, keep)
        case = {"id": f"{index:02d}-{kind}-{n_a}v{n_b}", "statistic": kind, "a": a, "b": b, "alpha": alpha,
                "inverse": inverse, "sequential_tuning": tuning}
        if units:
            case["units"] = units
        case["expected"] = run_engines(case)
        cases.append(case)
    # Degenerate inputs: gbstats answers a neutral result with a reason instead of dividing by zero.
    for index, (kind, a, b) in enumerate([
        ("proportion", {"n": 500, "sum": 0.0, "sum_squares": 0.0}, {"n": 500, "sum": 12.0, "sum_squares": 12.0}),
        ("mean", {"n": 300, "sum": 900.0, "sum_squares": 2700.0}, {"n": 300, "sum": 960.0, "sum_squares": 3072.0}),
    ], start=len(cases)):
        case = {"id": f"{index:02d}-{kind}-degenerate", "statistic": kind, "a": a, "b": b, "alpha": 0.05,
                "inverse": False, "sequential_tuning": 5000}
        case["expected"] = run_engines(case)
        cases.append(case)

    srm = []
    for counts, weights in [
        ([5000, 5000], [0.5, 0.5]), ([9000, 1000], [0.9, 0.1]), ([9120, 880], [0.9, 0.1]),
        ([8000, 2000], [0.9, 0.1]), ([4950, 5050], [0.5, 0.5]), ([1, 0], [0.5, 0.5]), ([0, 0], [0.5, 0.5]),
        ([30100, 3200, 3400], [0.8, 0.1, 0.1]),
    ]:
        srm.append({"counts": counts, "weights": weights, "p_value": plain(check_srm(counts, weights))})

    OUT.write_text(json.dumps({
        "generator": "tests/gbstats_cases/make_cases.py",
        "gbstats": version("gbstats"), "numpy": version("numpy"), "scipy": version("scipy"),
        "cases": cases, "srm": srm,
    }, indent=1) + "\n")
    print(f"wrote {len(cases)} cases and {len(srm)} SRM checks to {OUT}")


if __name__ == "__main__":
    main()
