"""Fairness of one model version on the test split, for every sensitive attribute and every pair of them.

Per group: size, selection rate, true- and false-positive rate, precision and ROC AUC,
computed by fairlearn's ``MetricFrame``; their bootstrap intervals come from
:mod:`mlops_assets.governance.intervals` (same resampling of rows, vectorised). Across
groups: demographic-parity and equalized-odds differences and ratios, as fairlearn
defines them. Thresholds from the config judge each attribute (and each pair too when
``judge_intersections`` is on: pairs have many small groups, so their differences are
noisy); what is not judged is still measured and shown.

fairlearn builds every combination of two attributes, and an empty combination becomes
an all-NaN row that ``difference()`` silently skips. Here no group is skipped silently:
every group is listed with its size and flags (empty, small, no positives, no
negatives), and the differences are taken over the groups with at least
``min_group_size`` rows, naming the ones left out. Numeric sensitive attributes are
banded by the edges the config gives; a numeric one without edges is an error.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame

from mlops_assets.config import NUMERIC_TYPES, DatasetConfig, FairnessConfig
from mlops_assets.errors import PlatformError
from mlops_assets.governance import intervals

#: Joins the attributes and the groups of an intersection ("gender × region", "female × north").
CROSS = " × "
MISSING = "(missing)"
GROUP_METRICS = ("selection_rate", "tpr", "fpr", "precision", "roc_auc")
THRESHOLDS = {
    "demographic_parity_difference": ("max_demographic_parity_difference", "max"),
    "equalized_odds_difference": ("max_equalized_odds_difference", "max"),
    "demographic_parity_ratio": ("min_demographic_parity_ratio", "min"),
    "equalized_odds_ratio": ("min_equalized_odds_ratio", "min"),
}


class FairnessError(PlatformError, ValueError):
    """Fairness cannot be measured as configured (an attribute missing from the data, a numeric one unbanded)."""


def check_fairness_config(config: DatasetConfig) -> None:
    """Refuse band edges for an attribute that is not a numeric sensitive attribute, and unbanded numeric ones."""
    settings = config.governance.fairness
    for name in settings.bands:
        if name not in config.sensitive_attributes:
            raise FairnessError(f"dataset {config.name!r}: governance.fairness.bands names {name!r}, which is not "
                                f"a sensitive attribute ({config.sensitive_attributes})")
        if config.columns[name].type not in NUMERIC_TYPES - {"boolean"}:
            raise FairnessError(f"dataset {config.name!r}: governance.fairness.bands.{name}: {name!r} is "
                                f"{config.columns[name].type}, only integer and float attributes are banded")
    for name in config.sensitive_attributes:
        if config.columns[name].type in ("integer", "float") and name not in settings.bands:
            raise FairnessError(f"dataset {config.name!r}: sensitive attribute {name!r} is numeric; give band edges "
                                f"under governance.fairness.bands.{name} (e.g. [25, 35, 50, 65])")


def band_labels(edges: list[float]) -> list[str]:
    """Readable labels for the bands (-inf, e0), [e0, e1), ..., [ek, inf)."""
    shown = [f"{e:g}" for e in edges]
    return ([f"under {shown[0]}"] + [f"{a} to under {b}" for a, b in zip(shown, shown[1:])]
            + [f"{shown[-1]} and over"])


def sensitive_groups(frame: pd.DataFrame, config: DatasetConfig) -> pd.DataFrame:
    """One categorical column per sensitive attribute, with declared but unseen values kept as categories."""
    check_fairness_config(config)
    absent = [a for a in config.sensitive_attributes if a not in frame.columns]
    if absent:
        raise FairnessError(f"dataset {config.name!r}: sensitive attributes {absent} are not columns of the rows "
                            f"to assess (they have {list(frame.columns)})")
    out = {}
    for name in config.sensitive_attributes:
        values, spec = frame[name], config.columns[name]
        if name in config.governance.fairness.bands:
            edges = config.governance.fairness.bands[name]
            labels = band_labels(edges)
            banded = pd.cut(values.astype(float), [-np.inf, *edges, np.inf], right=False, labels=labels)
            column = banded.cat.add_categories([MISSING]).fillna(MISSING) if banded.isna().any() else banded
        else:
            declared = [str(v) for v in spec.values] if spec.values else []
            text = values.astype("string").fillna(MISSING).astype(str)
            seen = [v for v in pd.unique(text) if v not in declared]
            column = pd.Categorical(text, categories=declared + sorted(seen))
        out[name] = pd.Series(column, index=frame.index, name=name)
    return pd.DataFrame(out)


def attribute_sets(config: DatasetConfig) -> list[tuple[str, ...]]:
    """Every attribute alone, then every pair (when intersections are on)."""
    singles = [(a,) for a in config.sensitive_attributes]
    pairs = list(itertools.combinations(config.sensitive_attributes, 2)) if config.governance.fairness.intersections else []
    return singles + pairs


def _rates(y_true, y_pred) -> dict[str, np.ndarray]:
    return intervals.decision_metrics(np.asarray(y_true), np.asarray(y_pred), np.ones((1, len(y_true))))


# Plain numpy per-group metrics: fairlearn's own (scikit-learn with argument validation) took ~12 ms per call,
# 4 s for churn's 67 groups; these give the same numbers (tests/test_governance_fairness.py).
_FAIRLEARN_METRICS = {
    "size": lambda y_true, y_pred: len(y_true),
    "positives": lambda y_true, y_pred: int(np.sum(y_true)),
    "selection_rate": lambda y_true, y_pred: float(_rates(y_true, y_pred)["selection_rate"][0]),
    "tpr": lambda y_true, y_pred: float(_rates(y_true, y_pred)["tpr"][0]),
    "fpr": lambda y_true, y_pred: float(_rates(y_true, y_pred)["fpr"][0]),
    "precision": lambda y_true, y_pred: float(_rates(y_true, y_pred)["precision"][0]),
    "roc_auc": lambda y_true, y_pred, scores: float(
        intervals.roc_auc(np.asarray(y_true), np.asarray(scores), np.ones((1, len(y_true))))[0]),
}


def metric_frame(y: np.ndarray, predicted: np.ndarray, scores: np.ndarray, groups: pd.DataFrame) -> MetricFrame:
    """fairlearn's MetricFrame over the given group columns (ROC AUC gets the scores as a sample parameter)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns for single-class groups; they are flagged below
        return MetricFrame(metrics=_FAIRLEARN_METRICS, y_true=y, y_pred=predicted,
                           sensitive_features=groups, sample_params={"roc_auc": {"scores": scores}})


@dataclass
class Disparity:
    attribute: str
    measure: str
    value: float
    low: float
    high: float
    groups_compared: int
    left_out: list[str]
    limit: float | None = None
    passed: bool | None = None


@dataclass
class FairnessReport:
    """Everything the card, the check and the plots need; JSON-ready through :meth:`to_dict`."""

    groups: pd.DataFrame
    disparities: list[Disparity]
    min_group_size: int
    resamples: int
    confidence: float
    thresholds: dict[str, float]
    findings: list[str] = field(default_factory=list)

    @property
    def judged(self) -> bool:
        return bool(self.thresholds)

    @property
    def passed(self) -> bool:
        """True unless a configured threshold is broken (no thresholds: measured, never failed)."""
        return not any(d.passed is False for d in self.disparities)

    @property
    def failures(self) -> list[Disparity]:
        return [d for d in self.disparities if d.passed is False]

    def verdict(self) -> str:
        if not self.judged:
            return "measured; no fairness thresholds configured"
        if self.passed:
            judged = len({d.attribute for d in self.disparities if d.limit is not None})
            return f"passed: every configured threshold holds for the {judged} attribute set(s) judged"
        return "FAILED: " + "; ".join(
            f"{d.attribute} {d.measure} {d.value:.3f} {'>' if d.measure.endswith('difference') else '<'} {d.limit}"
            for d in self.failures)

    def to_dict(self) -> dict:
        return {
            "min_group_size": self.min_group_size,
            "resamples": self.resamples,
            "confidence": self.confidence,
            "thresholds": self.thresholds,
            "judged": self.judged,
            "passed": self.passed,
            "verdict": self.verdict(),
            "findings": self.findings,
            "groups": self.groups.replace({np.nan: None}).to_dict(orient="records"),
            "disparities": [asdict(d) for d in self.disparities],
        }


def assess_fairness(frame: pd.DataFrame, y: np.ndarray, scores: np.ndarray, threshold: float,
                    config: DatasetConfig) -> FairnessReport:
    """Fairness of the scores on ``frame``'s rows (which hold the sensitive attributes), at ``threshold``."""
    settings: FairnessConfig = config.governance.fairness
    y = np.asarray(y, dtype=int)
    scores = np.asarray(scores, dtype=float)
    predicted = (scores >= threshold).astype(int)
    groups = sensitive_groups(frame.reset_index(drop=True), config)
    thresholds = {k: v for k, v in settings.model_dump().items() if k in {t for t, _ in THRESHOLDS.values()} and v is not None}

    rows, disparities, findings = [], [], []
    for attributes in attribute_sets(config):
        table = _group_table(attributes, groups, y, predicted, scores, settings)
        rows.append(table)
        disparities += _disparities(attributes, table, groups, y, predicted, settings, thresholds)
    table = pd.concat(rows, ignore_index=True)
    for row in table.itertuples():
        if row.flags:
            findings.append(f"{row.attribute} = {row.group}: {row.flags}")
    for d in disparities:
        if d.left_out and d.measure == "demographic_parity_difference":
            findings.append(f"{d.attribute}: differences compare {d.groups_compared} groups; left out "
                            f"(fewer than {settings.min_group_size} rows or undefined): {', '.join(d.left_out)}")
        if np.isnan(d.value) and d.limit is not None:
            findings.append(f"{d.attribute} {d.measure}: not judged, fewer than two groups with "
                            f"{settings.min_group_size}+ rows and defined rates")
    return FairnessReport(table, disparities, settings.min_group_size, settings.bootstrap, settings.confidence,
                          thresholds, findings)


def _group_table(attributes: tuple[str, ...], groups: pd.DataFrame, y: np.ndarray, predicted: np.ndarray,
                 scores: np.ndarray, settings: FairnessConfig) -> pd.DataFrame:
    frame = metric_frame(y, predicted, scores, groups[list(attributes)])
    by_group = frame.by_group
    # fairlearn lists the combinations it saw (and NaN rows for unseen pairs); list every declared one.
    levels = [groups[a].cat.categories for a in attributes]
    full_index = pd.MultiIndex.from_product(levels, names=list(attributes)) if len(attributes) > 1 else pd.Index(levels[0], name=attributes[0])
    by_group = by_group.reindex(full_index)
    by_group["size"] = by_group["size"].fillna(0).astype(int)
    by_group["positives"] = by_group["positives"].fillna(0).astype(int)
    table = by_group.reset_index()
    labels = _joined(table, attributes)
    out = pd.DataFrame({"attribute": CROSS.join(attributes), "group": labels, "size": table["size"],
                        "positives": table["positives"]})
    for metric in GROUP_METRICS:
        out[metric] = table[metric].astype(float)
    out["reliable"] = [_reliable(r, settings) for r in out.itertuples()]
    out["flags"] = [_flags(r, settings) for r in out.itertuples()]
    _add_intervals(out, attributes, groups, y, predicted, scores, settings)
    return out


def _reliable(row, settings: FairnessConfig) -> bool:
    return row.size >= settings.min_group_size


def _flags(row, settings: FairnessConfig) -> str:
    if row.size == 0:
        return "empty: no test rows (fairlearn would give an all-NaN row and skip it)"
    flags = []
    if row.size < settings.min_group_size:
        flags.append(f"small: {row.size} rows < {settings.min_group_size}, left out of the differences")
    if row.positives == 0:
        flags.append("no positives: TPR and ROC AUC undefined")
    if row.positives == row.size:
        flags.append("no negatives: FPR and ROC AUC undefined")
    if MISSING in str(row.group):
        flags.append("attribute value missing in the data")
    return "; ".join(flags)


def _joined(frame: pd.DataFrame, attributes: tuple[str, ...]) -> pd.Series:
    """The group label of each row ("female × north"), by string concatenation (row-wise agg is slow)."""
    joined = frame[attributes[0]].astype(str)
    for name in attributes[1:]:
        joined = joined + CROSS + frame[name].astype(str)
    return joined


def _masks(attributes: tuple[str, ...], groups: pd.DataFrame, labels: pd.Series) -> list[np.ndarray]:
    joined = _joined(groups, attributes).to_numpy()
    return [joined == label for label in labels]


def _add_intervals(out: pd.DataFrame, attributes, groups, y, predicted, scores, settings: FairnessConfig) -> None:
    for metric in GROUP_METRICS:
        out[f"{metric}_low"] = np.nan
        out[f"{metric}_high"] = np.nan
    if settings.bootstrap == 0:
        return
    masks = _masks(attributes, groups, out["group"])
    samples = intervals.bootstrap(len(y), settings.bootstrap, settings.seed,
                                  lambda w: _group_samples(w, masks, y, predicted, scores))
    low, high = intervals.interval(samples, settings.confidence)  # (groups, metrics)
    for j, metric in enumerate(GROUP_METRICS):
        out[f"{metric}_low"] = low[:, j]
        out[f"{metric}_high"] = high[:, j]


def _group_samples(weights: np.ndarray, masks: list[np.ndarray], y, predicted, scores) -> np.ndarray:
    """(resamples, groups, metrics) for one chunk of bootstrap weights."""
    result = np.full((weights.shape[0], len(masks), len(GROUP_METRICS)), np.nan)
    for g, mask in enumerate(masks):
        if not mask.any():
            continue
        w = weights[:, mask]
        rates = intervals.decision_metrics(y[mask], predicted[mask], w)
        result[:, g, :4] = np.column_stack([rates["selection_rate"], rates["tpr"], rates["fpr"], rates["precision"]])
        result[:, g, 4] = intervals.roc_auc(y[mask], scores[mask], w)
    return result


def _spread(values: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """(max - min, min / max) over defined values, NaN with fewer than two."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        defined = np.sum(~np.isnan(values), axis=axis)
        high, low = np.nanmax(values, axis=axis), np.nanmin(values, axis=axis)
        difference = np.where(defined >= 2, high - low, np.nan)
        ratio = np.where(defined >= 2, np.divide(low, high, out=np.zeros_like(low), where=high > 0), np.nan)
    return difference, ratio


def _disparities(attributes, table: pd.DataFrame, groups, y, predicted, settings: FairnessConfig,
                 thresholds: dict[str, float]) -> list[Disparity]:
    name = CROSS.join(attributes)
    compared = table[table["reliable"]]
    dp_values = compared["selection_rate"].to_numpy()
    eo_ok = compared["tpr"].notna() & compared["fpr"].notna()
    eo = compared[eo_ok]
    dp_diff, dp_ratio = _spread(dp_values)
    tpr_diff, tpr_ratio = _spread(eo["tpr"].to_numpy())
    fpr_diff, fpr_ratio = _spread(eo["fpr"].to_numpy())
    point = {
        "demographic_parity_difference": float(dp_diff),
        "demographic_parity_ratio": float(dp_ratio),
        "equalized_odds_difference": float(np.fmax(tpr_diff, fpr_diff)) if len(eo) >= 2 else float("nan"),
        "equalized_odds_ratio": float(np.fmin(tpr_ratio, fpr_ratio)) if len(eo) >= 2 else float("nan"),
    }
    bounds = _disparity_intervals(attributes, groups, compared, eo, y, predicted, settings)
    left_out_dp = table.loc[~table["reliable"], "group"].tolist()
    left_out_eo = table.loc[~table["group"].isin(eo["group"]), "group"].tolist()
    out = []
    for measure, value in point.items():
        limit_key, kind = THRESHOLDS[measure]
        judged = len(attributes) == 1 or settings.judge_intersections
        limit = thresholds.get(limit_key) if judged else None
        passed = None
        if limit is not None and not np.isnan(value):
            passed = bool(value <= limit) if kind == "max" else bool(value >= limit)
        low, high = bounds.get(measure, (float("nan"), float("nan")))
        out.append(Disparity(name, measure, value, low, high,
                             len(dp_values) if measure.startswith("demographic") else len(eo),
                             left_out_dp if measure.startswith("demographic") else left_out_eo, limit, passed))
    return out


def _disparity_intervals(attributes, groups, compared, eo, y, predicted, settings) -> dict[str, tuple[float, float]]:
    if settings.bootstrap == 0 or len(compared) < 2:
        return {}
    dp_masks = _masks(attributes, groups, compared["group"])
    eo_masks = _masks(attributes, groups, eo["group"])

    def statistic(w: np.ndarray) -> np.ndarray:
        dp = np.column_stack([intervals.decision_metrics(y[m], predicted[m], w[:, m])["selection_rate"] for m in dp_masks])
        rates = [intervals.decision_metrics(y[m], predicted[m], w[:, m]) for m in eo_masks] if len(eo_masks) >= 2 else []
        dp_diff, dp_ratio = _spread(dp, axis=1)
        if rates:
            tpr = np.column_stack([r["tpr"] for r in rates])
            fpr = np.column_stack([r["fpr"] for r in rates])
            tpr_diff, tpr_ratio = _spread(tpr, axis=1)
            fpr_diff, fpr_ratio = _spread(fpr, axis=1)
            eo_diff, eo_ratio = np.fmax(tpr_diff, fpr_diff), np.fmin(tpr_ratio, fpr_ratio)
        else:
            eo_diff = eo_ratio = np.full(w.shape[0], np.nan)
        return np.column_stack([dp_diff, dp_ratio, eo_diff, eo_ratio])

    samples = intervals.bootstrap(len(y), settings.bootstrap, settings.seed, statistic)
    low, high = intervals.interval(samples, settings.confidence)
    names = ["demographic_parity_difference", "demographic_parity_ratio", "equalized_odds_difference",
             "equalized_odds_ratio"]
    return {n: (float(low[i]), float(high[i])) for i, n in enumerate(names)}
