"""The compiled inference form against the sklearn pipeline it is derived from (no MLflow, no service)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline

from mlops_assets.config import load_dataset_config
from mlops_assets.data.churn_generator import generate_churn
from mlops_assets.features.engineering import build_feature_table
from mlops_assets.settings import PROJECT_ROOT
from mlops_assets.training.compiled import (
    COMPILED,
    SKLEARN,
    TOLERANCE,
    UNSEEN_CATEGORY,
    Unsupported,
    choose_inference_path,
    compile_pipeline,
    verification_records,
    verify,
)
from mlops_assets.training.model_families import FAMILIES, build_pipeline
from mlops_assets.training.registry import ServedModel

CHURN = load_dataset_config(PROJECT_ROOT / "configs" / "churn.yaml")


def _config(family: str):
    return CHURN.model_copy(update={"model": CHURN.model.model_copy(update={"family": family, "params": {}})})


@pytest.fixture(scope="module")
def churn_split():
    table = build_feature_table(generate_churn(3000, seed=21), CHURN)
    # Holes in the training rows too, so that encoders learn a "missing" category and imputers are used.
    rng = np.random.default_rng(5)
    for column in ("region", "monthly_charges"):
        if column in table:
            table.loc[rng.random(len(table)) < 0.05, column] = np.nan
    return table.iloc[:2400], table.iloc[2400:]


def _fitted(family: str, train):
    config = _config(family)
    return config, build_pipeline(config).fit(train[config.model_features], train[config.target])


def _reference(config, pipeline):
    return ServedModel(config, "1", "run", 0.5, pipeline).score_records


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_compiles_and_reproduces_sklearn_on_test_rows_missing_values_and_unseen_categories(
        churn_split, family):
    train, test = churn_split
    config, pipeline = _fitted(family, train)
    records = verification_records(config, test)
    # The perturbed copies are there: a missing value for every column, an unseen value for categorical ones.
    assert any(r.get("region") == UNSEEN_CATEGORY for r in records)
    assert any(r.get("tenure_months", 0) is None for r in records)
    path = choose_inference_path(config, pipeline, _reference(config, pipeline), records, 0.5)
    assert path.name == COMPILED, path.reason
    # Independently of verify(): the test rows themselves, against sklearn's own predict_proba.
    plain = records[:len(test)]
    expected = pipeline.predict_proba(_frame(config, plain))[:, 1]
    assert np.max(np.abs(path.compiled.score_records(plain) - expected)) <= TOLERANCE
    assert path.verification.rows + path.verification.skipped == len(records)
    assert path.verification.rows >= len(test) and path.tags()["inference_path"] == COMPILED


def _frame(config, records):
    """What sklearn sees for the records: the served model's own frame building, plus derived features."""
    import pandas as pd

    from mlops_assets.features.engineering import derive_features

    raw = [f for f in config.features if f not in config.derived_features]
    frame = pd.DataFrame.from_records(records, columns=raw)
    for column in config.numeric_features:
        if column in frame and frame[column].dtype == object:
            frame[column] = frame[column].astype(float)
    return derive_features(frame, config)[config.model_features]


def test_one_record_scores_the_same_alone_as_in_a_batch(churn_split):
    train, test = churn_split
    config, pipeline = _fitted("hist_gradient_boosting", train)
    compiled = compile_pipeline(config, pipeline)
    records = verification_records(config, test)[:50]
    batch = compiled.score_records(records)
    alone = np.array([compiled.score_records([r])[0] for r in records])
    assert np.array_equal(batch, alone)


def test_an_estimator_without_a_compiled_runtime_falls_back_to_sklearn_and_says_why(churn_split):
    train, test = churn_split
    config, pipeline = _fitted("logistic_regression", train)
    naive = Pipeline([("prepare", pipeline.steps[0][1]), ("model", GaussianNB())])
    naive.fit(train[config.model_features], train[config.target])
    with pytest.raises(Unsupported, match="GaussianNB"):
        compile_pipeline(config, naive)
    path = choose_inference_path(config, naive, _reference(config, naive), verification_records(config, test), 0.5)
    assert path.name == SKLEARN and path.compiled is None
    assert "GaussianNB" in path.reason and path.tags()["inference_path"] == SKLEARN


def test_a_compiled_form_that_disagrees_with_sklearn_is_refused(churn_split):
    """Verification compares against the pipeline of record: a form of another model must not serve."""
    train, test = churn_split
    config, pipeline = _fitted("hist_gradient_boosting", train)
    _, other = _fitted("random_forest", train)
    records = verification_records(config, test)
    wrong = compile_pipeline(config, other)
    result = verify(wrong, _reference(config, pipeline), records, 0.5)
    assert not result.passed and result.max_abs_diff > 0.01
    assert "does not match" in result.describe()
    assert verify(compile_pipeline(config, pipeline), _reference(config, pipeline), records, 0.5).passed


def test_no_rows_to_verify_on_never_serves_compiled(churn_split):
    train, _ = churn_split
    config, pipeline = _fitted("hist_gradient_boosting", train)
    path = choose_inference_path(config, pipeline, _reference(config, pipeline), [], 0.5)
    assert path.name == SKLEARN and "no rows" in path.reason
