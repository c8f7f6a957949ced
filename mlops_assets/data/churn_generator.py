"""Seeded synthetic telecom churn data (the columns of ``configs/churn.yaml``), so the
platform can be run, tested and shown drifting without any real customer data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

GENDERS = np.array(["female", "male", "nonbinary"], dtype=object)
GENDER_SHARES = [0.49, 0.49, 0.02]

AGE_BANDS = np.array(["18-24", "25-34", "35-44", "45-54", "55-64", "65+"], dtype=object)
AGE_BAND_SHARES = [0.12, 0.21, 0.20, 0.18, 0.16, 0.13]
AGE_BAND_USAGE_FACTOR = np.array([1.40, 1.25, 1.05, 0.90, 0.75, 0.60])
AGE_BAND_SESSION_FACTOR = np.array([0.90, 0.95, 1.00, 1.05, 1.10, 1.15])

REGIONS = np.array(["north", "south", "east", "west"], dtype=object)
REGION_SHARES = [0.30, 0.25, 0.25, 0.20]
REGION_USAGE_FACTOR = np.array([1.00, 0.90, 1.10, 0.95])

CONTRACT_TYPES = np.array(["month_to_month", "one_year", "two_year"], dtype=object)
MONTH_TO_MONTH, ONE_YEAR, TWO_YEAR = 0, 1, 2
BASELINE_CONTRACT_SHARES = np.array([0.52, 0.24, 0.24])
MAX_MONTH_TO_MONTH_SHARE = 0.95
# Gamma(shape, mean) of tenure in months: longer contracts belong to longer-standing customers.
TENURE_SHAPE_BY_CONTRACT = np.array([1.3, 2.0, 2.5])
TENURE_MEAN_BY_CONTRACT = np.array([14.0, 32.0, 55.0])
MAX_TENURE_MONTHS = 120

PAYMENT_METHODS = np.array(["card", "bank_transfer", "electronic_check", "mailed_check"], dtype=object)
CARD, BANK_TRANSFER, ELECTRONIC_CHECK, MAILED_CHECK = 0, 1, 2, 3
PAYMENT_SHARES_BY_CONTRACT = np.array(
    [
        [0.25, 0.15, 0.45, 0.15],  # month_to_month
        [0.35, 0.30, 0.20, 0.15],  # one_year
        [0.38, 0.37, 0.10, 0.15],  # two_year
    ]
)
AUTOPAY_PROBABILITY_BY_PAYMENT = np.array([0.65, 0.75, 0.20, 0.05])

MEAN_MONTHLY_CHARGES = 65.0
CHARGES_PER_GB = 0.6
TYPICAL_DATA_USAGE_GB = 15.0
MAX_MONTHLY_CHARGES = 500.0
DAYS_PER_MONTH = 30.44
NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND

# Covariate drift at strength 1.0 ("a strong, clearly visible shift").
CHARGES_INCREASE_PER_DRIFT = 0.15
MONTH_TO_MONTH_POINTS_PER_DRIFT = 0.20
DATA_USAGE_INCREASE_PER_DRIFT = 0.30
LOGIN_DECAY_PER_DRIFT = 0.25

# Logistic churn model (log-odds). Concept drift divides the contract effect by
# (1 + concept_drift) and multiplies the support-call effect by (1 + concept_drift).
CHURN_INTERCEPT = -2.05
CONTRACT_LOG_ODDS = np.array([0.80, -0.40, -1.30])
TENURE_LOG_ODDS_PER_MONTH = -0.030
ELECTRONIC_CHECK_LOG_ODDS = 0.45
NO_AUTOPAY_LOG_ODDS = 0.35
SUPPORT_CALL_LOG_ODDS = 0.30
LATE_PAYMENT_LOG_ODDS = 0.25
LOGIN_LOG_ODDS = -0.040
SESSION_MINUTE_LOG_ODDS = -0.025
MONTHLY_CHARGE_LOG_ODDS = 0.008
HIDDEN_FRUSTRATION_LOG_ODDS = 0.40
GENDER_LOG_ODDS = np.array([0.0, 0.02, 0.0])  # deliberately negligible
TYPICAL_LOGINS = 14.0
TYPICAL_SESSION_MINUTES = 18.0


def generate_churn(
    rows: int,
    seed: int = 7,
    start: str = "2025-01-01",
    end: str = "2025-12-31",
    covariate_drift: float = 0.0,
    concept_drift: float = 0.0,
    mean_shift: Mapping[str, float] | None = None,
    share_shift: Mapping[str, tuple[object, float]] | None = None,
) -> pd.DataFrame:
    """Return ``rows`` customer snapshots between ``start`` and ``end``, identical for the same arguments.

    ``covariate_drift`` (0 = none, 1 = strong) shifts the input distributions;
    ``concept_drift`` (0 = none) changes how churn depends on the inputs while leaving
    the inputs untouched, so monitoring can be tested against both kinds of drift.

    ``mean_shift`` and ``share_shift`` move one column at a time, by a known amount, for
    measuring drift detectors: ``mean_shift={"monthly_charges": 0.2}`` adds 0.2 of that
    column's standard deviation (in this batch) to it; ``share_shift={"region": ("west", 0.10)}``
    moves exactly 10% of the rows into ``west`` from the other regions, at random, so each loses in
    proportion to its share. Only the named
    column changes (columns computed from it, and the target, keep their drawn values), and
    the changes use their own random stream: without them the rows are exactly as before.
    """
    start_time, end_time = _validated_window(start, end)
    _validate_arguments(rows, covariate_drift, concept_drift)
    _validate_single_column_shifts(mean_shift, share_shift)
    rng = np.random.default_rng(seed)

    first_second = -(-start_time.value // NS_PER_SECOND)
    last_second = end_time.value // NS_PER_SECOND
    event_ns = np.sort(rng.integers(first_second, last_second, size=rows, endpoint=True)) * NS_PER_SECOND

    gender = _draw_index(rng, GENDER_SHARES, rows)
    age_band = _draw_index(rng, AGE_BAND_SHARES, rows)
    region = _draw_index(rng, REGION_SHARES, rows)
    contract = _draw_index(rng, _contract_shares(covariate_drift), rows)
    payment = _draw_index_per_row(rng, PAYMENT_SHARES_BY_CONTRACT[contract])
    has_autopay = rng.random(rows) < AUTOPAY_PROBABILITY_BY_PAYMENT[payment]

    tenure_shape = TENURE_SHAPE_BY_CONTRACT[contract]
    tenure = rng.gamma(tenure_shape, TENURE_MEAN_BY_CONTRACT[contract] / tenure_shape)
    tenure_months = np.minimum(np.floor(tenure), MAX_TENURE_MONTHS).astype(np.int64)

    engagement = rng.standard_normal(rows)
    frustration = rng.standard_normal(rows)

    usage_factor = AGE_BAND_USAGE_FACTOR[age_band] * REGION_USAGE_FACTOR[region]
    base_usage_gb = rng.gamma(2.5, TYPICAL_DATA_USAGE_GB / 2.5, size=rows) * usage_factor * np.exp(0.25 * engagement)
    data_usage_gb = np.round(base_usage_gb * (1.0 + DATA_USAGE_INCREASE_PER_DRIFT * covariate_drift), 3)

    plan_price = rng.gamma(8.0, (MEAN_MONTHLY_CHARGES - CHARGES_PER_GB * TYPICAL_DATA_USAGE_GB) / 8.0, size=rows)
    base_charges = plan_price + CHARGES_PER_GB * base_usage_gb
    monthly_charges = np.round(
        np.clip(base_charges * (1.0 + CHARGES_INCREASE_PER_DRIFT * covariate_drift), 0.0, MAX_MONTHLY_CHARGES), 2
    )
    price_variation = rng.normal(1.0, 0.06, size=rows)
    total_charges = np.round(np.maximum(monthly_charges * tenure_months * price_variation, 0.0), 2)

    session_mean = TYPICAL_SESSION_MINUTES * AGE_BAND_SESSION_FACTOR[age_band] * np.exp(0.30 * engagement)
    avg_session_minutes = np.round(rng.gamma(4.0, session_mean / 4.0), 2)
    login_rate = TYPICAL_LOGINS * np.exp(0.45 * engagement - LOGIN_DECAY_PER_DRIFT * covariate_drift)
    logins_last_30d = rng.poisson(login_rate).astype(np.int64)

    late_payment_probability = (
        0.03
        + 0.05 * (payment == ELECTRONIC_CHECK)
        + 0.03 * (payment == MAILED_CHECK)
        + 0.03 * ~has_autopay
        + 0.02 * np.maximum(frustration, 0.0)
    )
    late_payments_12m = rng.binomial(12, np.minimum(late_payment_probability, 1.0)).astype(np.int64)
    support_rate = 0.7 * np.exp(0.5 * frustration) + 0.15 * late_payments_12m
    support_calls_90d = rng.poisson(support_rate).astype(np.int64)

    churn_log_odds = (
        CHURN_INTERCEPT
        + CONTRACT_LOG_ODDS[contract] / (1.0 + concept_drift)
        + TENURE_LOG_ODDS_PER_MONTH * tenure_months
        + ELECTRONIC_CHECK_LOG_ODDS * (payment == ELECTRONIC_CHECK)
        + NO_AUTOPAY_LOG_ODDS * ~has_autopay
        + SUPPORT_CALL_LOG_ODDS * (1.0 + concept_drift) * support_calls_90d
        + LATE_PAYMENT_LOG_ODDS * late_payments_12m
        + LOGIN_LOG_ODDS * (logins_last_30d - TYPICAL_LOGINS)
        + SESSION_MINUTE_LOG_ODDS * (avg_session_minutes - TYPICAL_SESSION_MINUTES)
        + MONTHLY_CHARGE_LOG_ODDS * (monthly_charges - MEAN_MONTHLY_CHARGES)
        + HIDDEN_FRUSTRATION_LOG_ODDS * frustration
        + GENDER_LOG_ODDS[gender]
    )
    # Drawn last, so concept drift can never change the inputs.
    churned = (rng.random(rows) < 1.0 / (1.0 + np.exp(-churn_log_odds))).astype(np.int64)

    tenure_ns = np.round(tenure_months * DAYS_PER_MONTH * NS_PER_DAY).astype(np.int64)
    signup_ns = (event_ns - tenure_ns) // NS_PER_DAY * NS_PER_DAY

    frame = pd.DataFrame(
        {
            "customer_id": _customer_ids(rows),
            "signup_date": signup_ns.astype("datetime64[ns]"),
            "event_time": event_ns.astype("datetime64[ns]"),
            "gender": GENDERS[gender],
            "age_band": AGE_BANDS[age_band],
            "region": REGIONS[region],
            "contract_type": CONTRACT_TYPES[contract],
            "payment_method": PAYMENT_METHODS[payment],
            "has_autopay": has_autopay,
            "tenure_months": tenure_months,
            "monthly_charges": monthly_charges,
            "total_charges": total_charges,
            "data_usage_gb": data_usage_gb,
            "avg_session_minutes": avg_session_minutes,
            "logins_last_30d": logins_last_30d,
            "support_calls_90d": support_calls_90d,
            "late_payments_12m": late_payments_12m,
            "churned": churned,
        }
    )
    if mean_shift or share_shift:
        _shift_single_columns(frame, np.random.default_rng((seed, SHIFT_STREAM)), mean_shift or {}, share_shift or {})
    return frame


# Single-column shifts (for drift benchmarks): which columns can move, their bounds and rounding.
SHIFT_STREAM = 0x5817  # the shifts' own random stream, so the undrifted draws never change
SHIFTABLE_NUMERIC = {
    # column: (lowest, highest, decimals; None = integer column)
    "tenure_months": (0, MAX_TENURE_MONTHS, None),
    "monthly_charges": (0.0, MAX_MONTHLY_CHARGES, 2),
    "total_charges": (0.0, math.inf, 2),
    "data_usage_gb": (0.0, math.inf, 3),
    "avg_session_minutes": (0.0, math.inf, 2),
    "logins_last_30d": (0, math.inf, None),
    "support_calls_90d": (0, math.inf, None),
    "late_payments_12m": (0, 12, None),
}
SHIFTABLE_CATEGORICAL = {
    "gender": GENDERS,
    "age_band": AGE_BANDS,
    "region": REGIONS,
    "contract_type": CONTRACT_TYPES,
    "payment_method": PAYMENT_METHODS,
    "has_autopay": np.array([False, True]),
}


def _validate_single_column_shifts(mean_shift, share_shift) -> None:
    for column, sds in (mean_shift or {}).items():
        if column not in SHIFTABLE_NUMERIC:
            raise ValueError(f"mean_shift names {column!r}; numeric columns: {', '.join(SHIFTABLE_NUMERIC)}")
        if not isinstance(sds, (int, float, np.integer, np.floating)) or not math.isfinite(sds):
            raise ValueError(f"mean_shift[{column!r}] must be a finite number of standard deviations, got {sds!r}")
    for column, change in (share_shift or {}).items():
        if column not in SHIFTABLE_CATEGORICAL:
            raise ValueError(f"share_shift names {column!r}; categorical columns: {', '.join(SHIFTABLE_CATEGORICAL)}")
        if not (isinstance(change, tuple) and len(change) == 2):
            raise ValueError(f"share_shift[{column!r}] must be (category, points), got {change!r}")
        category, points = change
        if category not in list(SHIFTABLE_CATEGORICAL[column]):
            raise ValueError(f"share_shift[{column!r}]: {category!r} is not one of {list(SHIFTABLE_CATEGORICAL[column])}")
        if not isinstance(points, (int, float, np.integer, np.floating)) or not -1 < points < 1:
            raise ValueError(f"share_shift[{column!r}]: points must be a share change between -1 and 1, got {points!r}")


def _shift_single_columns(frame: pd.DataFrame, rng: np.random.Generator, mean_shift, share_shift) -> None:
    """Move the named columns in place (see :func:`generate_churn`)."""
    for column, sds in mean_shift.items():
        low, high, decimals = SHIFTABLE_NUMERIC[column]
        values = frame[column].to_numpy(dtype=float)
        shift = sds * values.std(ddof=1) if len(values) > 1 else 0.0
        if decimals is None:
            # Stochastic rounding keeps the column integer and its mean shift exact in expectation.
            whole = math.floor(shift)
            moved = values + whole + (rng.random(len(values)) < shift - whole)
            frame[column] = np.clip(moved, low, high).astype(np.int64)
        else:
            frame[column] = np.round(np.clip(values + shift, low, high), decimals)
    for column, (category, points) in share_shift.items():
        values = frame[column].to_numpy().copy()
        inside = values == category
        share = inside.mean()
        moved = round(abs(points) * len(values))  # exactly this many rows change category
        if points >= 0:
            outside = np.flatnonzero(~inside)
            if moved > len(outside):
                raise ValueError(f"share_shift[{column!r}]: {category!r} holds {share:.0%} of the rows; "
                                 f"it cannot gain {points:.0%}")
            values[rng.choice(outside, moved, replace=False)] = category
        else:
            rows_inside = np.flatnonzero(inside)
            others = values[~inside]
            if moved > len(rows_inside) or (moved and not len(others)):
                raise ValueError(f"share_shift[{column!r}]: {category!r} holds {share:.0%} of the rows; "
                                 f"it cannot lose {-points:.0%}")
            # The rows leaving the category take the other categories in proportion to their shares.
            values[rng.choice(rows_inside, moved, replace=False)] = others[rng.integers(0, len(others), moved)]
        frame[column] = values


def _validated_window(start: str, end: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    try:
        start_time, end_time = pd.Timestamp(start), pd.Timestamp(end)
    except (TypeError, ValueError) as error:
        raise ValueError(f"start and end must be dates, got start={start!r}, end={end!r}: {error}") from error
    if pd.isna(start_time) or pd.isna(end_time):
        raise ValueError(f"start and end must be dates, got start={start!r}, end={end!r}")
    if start_time.tzinfo is not None or end_time.tzinfo is not None:
        raise ValueError(f"start and end must be timezone-naive, got start={start!r}, end={end!r}")
    if end_time <= start_time:
        raise ValueError(f"end ({end!r}) must be after start ({start!r})")
    return start_time, end_time


def _validate_arguments(rows: int, covariate_drift: float, concept_drift: float) -> None:
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows <= 0:
        raise ValueError(f"rows must be a positive integer, got {rows!r}")
    for name, value in (("covariate_drift", covariate_drift), ("concept_drift", concept_drift)):
        if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _contract_shares(covariate_drift: float) -> np.ndarray:
    baseline_month_to_month = BASELINE_CONTRACT_SHARES[MONTH_TO_MONTH]
    month_to_month = min(
        baseline_month_to_month + MONTH_TO_MONTH_POINTS_PER_DRIFT * covariate_drift, MAX_MONTH_TO_MONTH_SHARE
    )
    longer_contracts_scale = (1.0 - month_to_month) / (1.0 - baseline_month_to_month)
    shares = BASELINE_CONTRACT_SHARES * longer_contracts_scale
    shares[MONTH_TO_MONTH] = month_to_month
    return shares


def _draw_index(rng: np.random.Generator, shares, rows: int) -> np.ndarray:
    """Category indices with the given shares; drifted shares reuse the same random draws."""
    cumulative = np.cumsum(shares)
    cumulative[-1] = 1.0
    return np.searchsorted(cumulative, rng.random(rows), side="right")


def _draw_index_per_row(rng: np.random.Generator, shares_per_row: np.ndarray) -> np.ndarray:
    cumulative = np.cumsum(shares_per_row, axis=1)
    cumulative[:, -1] = 1.0
    return (rng.random(len(shares_per_row))[:, None] >= cumulative).sum(axis=1)


def _customer_ids(rows: int) -> np.ndarray:
    width = max(7, len(str(rows)))
    digits = np.strings.zfill(np.arange(1, rows + 1).astype(str), width)
    return np.strings.add("C", digits).astype(object)
