"""Explanations on raw input columns: importance finds what drives the target, contributions add up, words follow."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_assets.config import DatasetConfig
from mlops_assets.features.training_set import binary_target, split_frame, time_split
from mlops_assets.features.engineering import build_feature_table
from mlops_assets.data.sources import with_identity_columns
from mlops_assets.governance.explanations import (
    ExplanationError,
    RawInputModel,
    background_sample,
    explain_row,
    global_importance,
)
from mlops_assets.training.model_families import build_pipeline
from tests.datasets import LOANS_CONFIG, make_loans


@pytest.fixture(scope="module")
def loans_model():
    config = DatasetConfig(**LOANS_CONFIG)
    frame = with_identity_columns(make_loans(2000), config)
    training_set = time_split(build_feature_table(frame, config), config)
    train, test = split_frame(training_set, "train"), split_frame(training_set, "test")
    pipeline = build_pipeline(config).fit(train[config.model_features], binary_target(train, config))
    return config, RawInputModel(pipeline, config), train, test


def test_permutation_importance_is_per_raw_column_and_ranks_the_driving_inputs_first(loans_model):
    config, model, _, test = loans_model
    table = global_importance(model, test, binary_target(test, config).to_numpy(), repeats=4, seed=0)
    # the generator's log-odds: 4 x debt ratio (sd 0.16), income (sd ~0.4), 1.2 x unemployed (sd ~0.36)
    assert table["feature"][0] == "debt_ratio"
    assert set(table["feature"][:3]) == {"debt_ratio", "income", "employment_type"}
    assert set(table["feature"]) == set(config.features)  # monthly_debt (derived) counted under its raw inputs
    assert (table["low"] <= table["importance"]).all() and (table["importance"] <= table["high"]).all()
    assert table.loc[table["feature"] == "purpose", "importance"].abs().item() < 0.02  # pure noise


def test_each_repeat_scores_its_own_sample_when_the_test_split_is_larger_than_max_rows(loans_model):
    config, model, _, test = loans_model
    y = binary_target(test, config).to_numpy()
    full = global_importance(model, test, y, repeats=4, seed=0).set_index("feature")
    sampled = global_importance(model, test, y, repeats=4, seed=0, max_rows=len(test) // 2).set_index("feature")
    everything = global_importance(model, test, y, repeats=4, seed=0, max_rows=len(test) * 10).set_index("feature")
    assert sampled.index[0] == "debt_ratio"  # half the rows still find the driving input
    assert not np.allclose(sampled["importance"], full.loc[sampled.index, "importance"])
    assert everything.equals(full)  # a cap above the split's size is no cap


def test_contributions_add_up_to_the_score_minus_the_average_and_are_told_in_words(loans_model):
    config, model, train, test = loans_model
    background = background_sample(train, config)
    scores = model.score_rows(test)
    row = test.iloc[int(np.argmax(scores))]
    explanation = explain_row(model, row, background, threshold=0.3, entity_id="17")
    assert explanation.score == pytest.approx(scores.max(), abs=1e-9)
    assert explanation.baseline + sum(explanation.contributions.values()) == pytest.approx(explanation.score, abs=1e-9)
    top = max(explanation.contributions, key=lambda c: explanation.contributions[c])
    assert explanation.sentence.startswith(f"The score is high: {explanation.score:.2f} against the decision threshold 0.30")
    assert f"higher than average mainly because {top} is" in explanation.sentence
    with pytest.raises(ExplanationError, match=r"lacks columns \['debt_ratio'\]"):
        explain_row(model, row.drop("debt_ratio"), background, threshold=0.3)
