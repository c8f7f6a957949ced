"""Experiment statistics agree with GrowthBook's engine (gbstats 0.8) on committed cases, to 1e-6.

``tests/gbstats_cases/make_cases.py`` computed the expected figures with gbstats itself
in a virtual environment of its own (it pins numpy<2); see its docstring to re-make them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mlops_assets.serving.experiment_stats import (
    VariantSample,
    bayesian_test,
    cuped_theta,
    sequential_test,
    srm_p_value,
    welch_test,
)

CASES = json.loads((Path(__file__).parent / "gbstats_cases" / "cases.json").read_text())
TOLERANCE = 1e-6


def sample(kind: str, data: dict) -> VariantSample:
    base = VariantSample(n=data["n"], sum=data["sum"], sum_squares=data["sum_squares"],
                         binary=kind.startswith("proportion"))
    if not kind.endswith("_ra"):
        return base
    return VariantSample(**{**base.__dict__, "pre_sum": data["pre_sum"], "pre_sum_squares": data["pre_sum_squares"],
                            "post_pre_sum_of_products": data["post_pre_sum_of_products"]})


def close(actual, expected) -> bool:
    if isinstance(expected, str):  # "inf" / "-inf" in the JSON
        return float(expected) == actual
    return math.isclose(actual, expected, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def assert_matches(name: str, actual: dict, expected: dict) -> None:
    for key, want in expected.items():
        got = actual[key]
        if key == "error":
            assert got == want, f"{name}.{key}: {got} != {want}"
        elif isinstance(want, list):
            assert all(close(g, w) for g, w in zip(got, want)) and len(got) == len(want), f"{name}.{key}: {got} != {want}"
        else:
            assert close(got, want), f"{name}.{key}: {got} != {want}"


@pytest.mark.parametrize("case", CASES["cases"], ids=[c["id"] for c in CASES["cases"]])
@pytest.mark.parametrize("difference", ["relative", "absolute"])
def test_lift_tests_agree_with_gbstats(case, difference):
    a, b = sample(case["statistic"], case["a"]), sample(case["statistic"], case["b"])
    expected = case["expected"][difference]
    welch = welch_test(a, b, difference, case["alpha"])
    assert_matches("welch", {"expected": welch.estimate, "ci": list(welch.ci), "p_value": welch.p_value,
                             "error": welch.error}, expected["welch"])
    sequential = sequential_test(a, b, difference, case["alpha"], case["sequential_tuning"])
    assert_matches("sequential", {"expected": sequential.estimate, "ci": list(sequential.ci),
                                  "p_value": sequential.p_value, "error": sequential.error}, expected["sequential"])
    bayes = bayesian_test(a, b, difference, case["alpha"], case["inverse"])
    assert_matches("bayesian", {"expected": bayes.estimate, "ci": list(bayes.ci), "chance_to_win": bayes.chance_to_win,
                                "risk": list(bayes.risk), "error": bayes.error}, expected["bayesian"])


@pytest.mark.parametrize("check", CASES["srm"], ids=[str(c["counts"]) for c in CASES["srm"]])
def test_sample_ratio_mismatch_p_value_agrees_with_gbstats(check):
    assert close(srm_p_value(check["counts"], check["weights"]), check["p_value"])


@pytest.mark.parametrize("case", [c for c in CASES["cases"] if "units" in c], ids=lambda c: c["id"])
def test_per_unit_values_reduce_to_the_sums_gbstats_was_given(case):
    covariate = case["statistic"].endswith("_ra")
    for name in ("a", "b"):
        units = case["units"][name]
        reduced = VariantSample.from_values(units["values"], units["covariate"] if covariate else None)
        assert reduced.binary == case["statistic"].startswith("proportion")
        assert reduced == sample(case["statistic"], case[name])


def test_cuped_narrows_the_interval_when_the_covariate_explains_the_metric():
    rng = np.random.default_rng(4)
    covariate_a, covariate_b = rng.normal(50, 10, 3000), rng.normal(50, 10, 3000)
    a = covariate_a + rng.normal(0, 2, 3000)
    b = covariate_b + 0.3 + rng.normal(0, 2, 3000)
    plain = welch_test(VariantSample.from_values(a), VariantSample.from_values(b), "absolute")
    adjusted_a, adjusted_b = VariantSample.from_values(a, covariate_a), VariantSample.from_values(b, covariate_b)
    adjusted = welch_test(adjusted_a, adjusted_b, "absolute")
    assert cuped_theta(adjusted_a, adjusted_b) == pytest.approx(1.0, abs=0.02)
    assert (adjusted.ci[1] - adjusted.ci[0]) < 0.25 * (plain.ci[1] - plain.ci[0])
    assert adjusted.p_value < 0.001 < plain.p_value


def test_the_confidence_sequence_is_wider_than_the_fixed_horizon_interval():
    a = VariantSample.from_values(np.r_[np.ones(300), np.zeros(2700)])
    b = VariantSample.from_values(np.r_[np.ones(360), np.zeros(2640)])
    fixed, always_valid = welch_test(a, b), sequential_test(a, b)
    assert always_valid.estimate == pytest.approx(fixed.estimate)
    assert always_valid.ci[0] < fixed.ci[0] and always_valid.ci[1] > fixed.ci[1]
    assert always_valid.p_value > fixed.p_value


def test_a_variant_without_units_gets_a_neutral_answer_with_the_reason():
    empty, some = VariantSample.from_values([]), VariantSample.from_values([0, 1, 1, 0])
    assert welch_test(some, empty).error == "ZERO_NEGATIVE_VARIANCE"
    assert bayesian_test(some, empty).error == "NO_UNITS_IN_VARIATION"
    assert bayesian_test(some, empty).chance_to_win == 0.5
