"""Fairness numbers agree with fairlearn's own; small, empty and one-class groups are flagged, never dropped silently."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import precision_score, roc_auc_score

from mlops_assets.config import DatasetConfig
from mlops_assets.governance.fairness import FairnessError, assess_fairness
from mlops_assets.governance.intervals import headline_metrics, metrics_with_intervals


def config_for(columns: dict, **fairness) -> DatasetConfig:
    return DatasetConfig(
        name="small", source={"path": "small.csv"}, target="y",
        columns={"y": {"type": "integer", "values": [0, 1]}, "x": {"type": "float"}, **columns},
        features=["x"], sensitive_attributes=[c for c in columns],
        governance={"fairness": {"min_group_size": 10, "bootstrap": 0, **fairness}},
    )


def small_frame(rows: int = 600, seed: int = 4) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"sex": rng.choice(["f", "m"], rows), "site": rng.choice(["a", "b", "c"], rows)})
    y = (rng.random(rows) < np.where(frame["sex"] == "f", 0.3, 0.45)).astype(int)
    scores = np.clip(0.35 * y + rng.random(rows) * 0.65 + np.where(frame["site"] == "c", 0.1, 0), 0, 1)
    return frame, y, scores


CATEGORIES = {"sex": {"type": "categorical", "values": ["f", "m"]},
              "site": {"type": "categorical", "values": ["a", "b", "c"]}}


def test_group_rates_and_disparities_equal_fairlearns_own_metrics_for_attributes_and_their_intersection():
    frame, y, scores = small_frame()
    predicted = (scores >= 0.5).astype(int)
    report = assess_fairness(frame, y, scores, 0.5, config_for(CATEGORIES))
    groups = report.groups.set_index(["attribute", "group"])
    disparities = {(d.attribute, d.measure): d.value for d in report.disparities}
    for attribute, columns in (("sex", ["sex"]), ("site", ["site"]), ("sex × site", ["sex", "site"])):
        theirs = MetricFrame(
            metrics={"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate,
                     "precision": precision_score},
            y_true=y, y_pred=predicted, sensitive_features=frame[columns]).by_group
        for key, row in theirs.iterrows():
            group = " × ".join(key) if isinstance(key, tuple) else key
            ours = groups.loc[(attribute, group)]
            for metric in ("selection_rate", "tpr", "fpr", "precision"):
                assert ours[metric] == pytest.approx(row[metric], abs=1e-12), (attribute, group, metric)
            mask = (frame[columns].astype(str).agg(" × ".join, axis=1) == group).to_numpy()
            assert ours["roc_auc"] == pytest.approx(roc_auc_score(y[mask], scores[mask]), abs=1e-12)
            assert ours["size"] == mask.sum()
        features = frame[columns]
        expected = {
            "demographic_parity_difference": demographic_parity_difference(y, predicted, sensitive_features=features),
            "demographic_parity_ratio": demographic_parity_ratio(y, predicted, sensitive_features=features),
            "equalized_odds_difference": equalized_odds_difference(y, predicted, sensitive_features=features),
            "equalized_odds_ratio": equalized_odds_ratio(y, predicted, sensitive_features=features),
        }
        for measure, value in expected.items():
            assert disparities[(attribute, measure)] == pytest.approx(value, abs=1e-12), (attribute, measure)


def test_bootstrap_intervals_agree_with_fairlearns_bootstrap_and_contain_the_estimate():
    frame, y, scores = small_frame(rows=400)
    predicted = (scores >= 0.5).astype(int)
    report = assess_fairness(frame, y, scores, 0.5, config_for({"sex": CATEGORIES["sex"]}, bootstrap=300))
    theirs = MetricFrame(metrics={"selection_rate": selection_rate}, y_true=y, y_pred=predicted,
                         sensitive_features=frame["sex"], n_boot=300, ci_quantiles=[0.025, 0.975], random_state=1)
    ours = report.groups.set_index("group")
    for group in ("f", "m"):
        low, high = theirs.by_group_ci[0].loc[group, "selection_rate"], theirs.by_group_ci[1].loc[group, "selection_rate"]
        assert ours.loc[group, "selection_rate_low"] == pytest.approx(low, abs=0.03)
        assert ours.loc[group, "selection_rate_high"] == pytest.approx(high, abs=0.03)
        for metric in ("selection_rate", "tpr", "fpr", "precision", "roc_auc"):
            assert ours.loc[group, f"{metric}_low"] <= ours.loc[group, metric] <= ours.loc[group, f"{metric}_high"]
    dp = next(d for d in report.disparities if d.measure == "demographic_parity_difference")
    assert dp.low <= dp.value <= dp.high


def test_empty_small_and_one_class_groups_are_flagged_and_named_not_silently_skipped():
    frame, y, scores = small_frame()
    frame.loc[(frame["sex"] == "m") & (frame["site"] == "c"), "site"] = "b"  # m × c: empty
    small = frame.index[(frame["sex"] == "f") & (frame["site"] == "c")][5:]
    frame, y, scores = frame.drop(small), np.delete(y, small), np.delete(scores, small)  # f × c: 5 rows
    f_c = ((frame["sex"] == "f") & (frame["site"] == "c")).to_numpy()
    y[f_c] = 0  # ... and no positives
    report = assess_fairness(frame, y, scores, 0.5, config_for(CATEGORIES, max_demographic_parity_difference=0.9))
    groups = report.groups.set_index(["attribute", "group"])
    assert groups.loc[("sex × site", "m × c"), "size"] == 0
    assert groups.loc[("sex × site", "m × c"), "flags"].startswith("empty")
    flags = groups.loc[("sex × site", "f × c"), "flags"]
    assert "small: 5 rows < 10" in flags and "no positives: TPR and ROC AUC undefined" in flags
    dp = next(d for d in report.disparities if d.attribute == "sex × site" and d.measure == "demographic_parity_difference")
    assert dp.groups_compared == 4 and sorted(dp.left_out) == ["f × c", "m × c"]
    assert any("left out" in f and "f × c" in f for f in report.findings)
    # fairlearn alone: the empty pair is an all-NaN row, and difference() skips it without a word
    predicted = (scores >= 0.5).astype(int)
    theirs = MetricFrame(metrics=selection_rate, y_true=y, y_pred=predicted, sensitive_features=frame[["sex", "site"]])
    assert theirs.by_group.isna().sum() == 1


def test_thresholds_judge_the_disparities_and_name_the_failure():
    frame, y, scores = small_frame()
    loose = assess_fairness(frame, y, scores, 0.5, config_for(CATEGORIES, max_demographic_parity_difference=0.9))
    assert loose.judged and loose.passed
    strict = assess_fairness(frame, y, scores, 0.5, config_for(CATEGORIES, max_equalized_odds_difference=0.001))
    assert not strict.passed
    assert strict.verdict().startswith("FAILED: sex equalized_odds_difference")
    unjudged = assess_fairness(frame, y, scores, 0.5, config_for(CATEGORIES))
    assert not unjudged.judged and unjudged.passed and "no fairness thresholds" in unjudged.verdict()


def test_a_numeric_sensitive_attribute_is_banded_by_the_configured_edges_and_refused_without_them():
    frame, y, scores = small_frame()
    frame["age"] = np.random.default_rng(0).integers(18, 90, len(frame))
    age = {"age": {"type": "integer"}}
    report = assess_fairness(frame, y, scores, 0.5, config_for(age, bands={"age": [30, 60]}, intersections=False))
    assert report.groups["group"].tolist() == ["under 30", "30 to under 60", "60 and over"]
    assert report.groups["size"].sum() == len(frame)
    with pytest.raises(FairnessError, match=r"sensitive attribute 'age' is numeric; give band edges under governance.fairness.bands.age"):
        assess_fairness(frame, y, scores, 0.5, config_for(age))


def test_a_sensitive_attribute_absent_from_the_data_is_a_clear_error():
    frame, y, scores = small_frame()
    with pytest.raises(FairnessError, match=r"sensitive attributes \['site'\] are not columns of the rows to assess"):
        assess_fairness(frame.drop(columns="site"), y, scores, 0.5, config_for(CATEGORIES))


def test_weighted_metrics_equal_scikit_learn_and_intervals_contain_the_estimate():
    from sklearn.metrics import average_precision_score, brier_score_loss

    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) * 0.6 + 0.3 * y, 2)  # rounded: ties
    point = headline_metrics(y, scores, 0.5, np.ones((1, 300)))
    assert point["roc_auc"][0] == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert point["pr_auc"][0] == pytest.approx(average_precision_score(y, scores), abs=1e-12)
    assert point["brier"][0] == pytest.approx(brier_score_loss(y, scores), abs=1e-12)
    ranges = metrics_with_intervals(y, scores, 0.5, resamples=200, confidence=0.9, seed=0)
    for values in ranges.values():
        assert values["low"] <= values["value"] <= values["high"]
