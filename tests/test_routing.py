"""Sticky, accurate assignment: the split holds over many ids, and growing it only moves entities one way."""

from __future__ import annotations

import pytest

from mlops_assets.serving.routing import CHALLENGER, CHAMPION, assign, bucket

IDS = [f"C{i:07d}" for i in range(100_000)]


@pytest.mark.parametrize("share", [0.1, 0.2, 0.5])
def test_the_observed_split_is_within_half_a_point_of_the_configured_one(share):
    challengers = sum(assign("churn-exp-1", entity, share) == CHALLENGER for entity in IDS)
    assert abs(challengers / len(IDS) - share) < 0.005


def test_raising_the_challenger_share_moves_entities_only_from_champion_to_challenger():
    before = {e: assign("churn-exp-1", e, 0.10) for e in IDS}
    after = {e: assign("churn-exp-1", e, 0.20) for e in IDS}
    moved = [e for e in IDS if before[e] != after[e]]
    assert moved, "raising the share moved nobody"
    assert all(before[e] == CHAMPION and after[e] == CHALLENGER for e in moved)
    assert abs(len(moved) / len(IDS) - 0.10) < 0.005


def test_an_entity_keeps_its_variant_for_the_whole_experiment_and_another_experiment_reshuffles():
    assert all(assign("exp-a", e, 0.3) == assign("exp-a", e, 0.3) for e in IDS[:1000])
    same_point = sum(bucket("exp-a", e) == bucket("exp-b", e) for e in IDS[:1000])
    assert same_point == 0
    agree = sum(assign("exp-a", e, 0.5) == assign("exp-b", e, 0.5) for e in IDS[:10_000])
    assert 0.47 < agree / 10_000 < 0.53  # independent between experiments, not a copy


def test_the_extreme_shares_send_everyone_to_one_side():
    assert {assign("x", e, 0.0) for e in IDS[:5000]} == {CHAMPION}
    assert {assign("x", e, 1.0) for e in IDS[:5000]} == {CHALLENGER}
