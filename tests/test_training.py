"""Model families, threshold choice, metrics and plots, without Dagster or MLflow."""

from __future__ import annotations

import numpy as np
import pytest
import skops.io
from sklearn.metrics import f1_score, roc_auc_score

from mlops_assets.config import load_dataset_config
from mlops_assets.data.churn_generator import generate_churn
from mlops_assets.features.engineering import build_feature_table
from mlops_assets.training.evaluation import choose_threshold, classification_metrics, evaluation_plots
from mlops_assets.training.model_families import FAMILIES, build_pipeline
from mlops_assets.settings import PROJECT_ROOT

CHURN = load_dataset_config(PROJECT_ROOT / "configs" / "churn.yaml")


@pytest.fixture(scope="module")
def churn_table():
    return build_feature_table(generate_churn(3000, seed=21), CHURN)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_learns_and_names_exactly_the_types_skops_must_trust(churn_table, family):
    config = CHURN.model_copy(update={"model": CHURN.model.model_copy(update={"family": family, "params": {}})})
    train, test = churn_table.iloc[:2400], churn_table.iloc[2400:]
    pipeline = build_pipeline(config).fit(train[config.model_features], train["churned"])
    scores = pipeline.predict_proba(test[config.model_features])[:, 1]
    assert roc_auc_score(test["churned"], scores) > 0.7
    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    assert sorted(untrusted) == sorted(FAMILIES[family].skops_trusted_types)


def test_unknown_categories_at_prediction_time_do_not_break_the_pipeline(churn_table):
    pipeline = build_pipeline(CHURN).fit(churn_table[CHURN.model_features], churn_table["churned"])
    row = churn_table[CHURN.model_features].head(1).copy()
    row["region"] = "atlantis"
    assert 0 <= pipeline.predict_proba(row)[0, 1] <= 1


def test_max_f1_threshold_beats_every_other_cut_off():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    scores = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    chosen = choose_threshold(y, scores, "max_f1")
    best = f1_score(y, scores >= chosen)
    assert all(best >= f1_score(y, scores >= t) - 1e-12 for t in np.linspace(0.01, 0.99, 99))
    assert choose_threshold(y, scores, 0.42) == 0.42


def test_metrics_of_a_perfect_and_a_useless_ranking():
    y = np.array([0, 0, 1, 1])
    perfect = classification_metrics(y, np.array([0.1, 0.2, 0.8, 0.9]), 0.5)
    assert perfect["roc_auc"] == 1.0 and perfect["accuracy"] == 1.0 and perfect["brier"] == pytest.approx(0.025)
    useless = classification_metrics(y, np.array([0.5, 0.5, 0.5, 0.5]), 0.5)
    assert useless["roc_auc"] == 0.5 and useless["log_loss"] == pytest.approx(np.log(2))
    assert useless["precision"] == 0.5 and useless["recall"] == 1.0


def test_plots_are_png_images():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    plots = evaluation_plots(y, np.clip(y * 0.4 + rng.random(300) * 0.6, 0, 1), "test")
    for png in (plots.roc_png, plots.calibration_png):
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
