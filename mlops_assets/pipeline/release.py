"""Whether a newly evaluated version replaces the champion (until the full release process exists).

The rule: a version takes the ``champion`` alias when it passed every gate and its test
ROC AUC is at least the champion's on the same test rows (the champion is scored on the
new version's test split, so both are judged on identical data). The first version that
passes its gates becomes champion; a version that fails one never does.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd
from sklearn.metrics import roc_auc_score

from mlops_assets.governance.approvals import PromotionRefused
from mlops_assets.config import DatasetConfig
from mlops_assets.features.training_set import binary_target, split_frame
from mlops_assets.pipeline.aliases import move_alias
from mlops_assets.pipeline.gates import GateResult, all_passed, evaluate_gates, failed_summary, gate_tags
from mlops_assets.settings import Settings
from mlops_assets.training.evaluation import Evaluation
from mlops_assets.training.registry import CHAMPION, alias_version, load_version, set_version_tags


@dataclass(frozen=True)
class ChampionDecision:
    """What the champion asset decided for one candidate, and the figures behind it."""

    candidate_version: str
    champion_version: str | None
    promoted: bool
    reason: str
    gates: list[GateResult] = field(default_factory=list)
    candidate_roc_auc: float | None = None
    champion_roc_auc: float | None = None
    previous_champion: str | None = None
    test_rows: int = 0


def decide_champion(candidate: str, gates: list[GateResult], candidate_roc_auc: float, champion: str | None,
                    champion_roc_auc: float | None, test_rows: int, not_comparable: str = "") -> ChampionDecision:
    """The rule itself, on plain values (``champion_roc_auc``: the champion scored on the same test rows)."""
    kept = f"champion v{champion} kept" if champion else "no champion"
    common = {"gates": gates, "candidate_roc_auc": candidate_roc_auc, "champion_roc_auc": champion_roc_auc,
              "previous_champion": champion, "test_rows": test_rows}
    if champion == candidate:
        return ChampionDecision(candidate, champion, False, f"v{candidate} already holds the champion alias", **common)
    if not all_passed(gates):
        return ChampionDecision(candidate, champion, False, f"v{candidate} failed {failed_summary(gates)}: {kept}",
                                **common)
    if champion is None:
        return ChampionDecision(candidate, candidate, True, f"no champion existed; v{candidate} passed every gate",
                                **common)
    if champion_roc_auc is None:
        return ChampionDecision(candidate, champion, False, f"champion v{champion} cannot be scored on the new "
                                f"test rows ({not_comparable}): {kept}; `mlops promote` moves it by hand", **common)
    comparison = (f"v{candidate} ROC AUC {candidate_roc_auc:.4f} {{}} champion v{champion}'s {champion_roc_auc:.4f} "
                  f"on the same {test_rows} test rows")
    if candidate_roc_auc >= champion_roc_auc:
        return ChampionDecision(candidate, candidate, True, comparison.format(">="), **common)
    return ChampionDecision(candidate, champion, False, f"{comparison.format('<')}: {kept}", **common)


def release_candidate(settings: Settings, config: DatasetConfig, evaluation: Evaluation,
                      training_set: pd.DataFrame, by: str) -> ChampionDecision:
    """Judge the evaluated version, record its gate verdict on it, and move the champion alias if it wins."""
    candidate = evaluation.model.version
    gates = evaluate_gates(config, evaluation.metrics)
    set_version_tags(settings, config, candidate, gate_tags(gates))
    champion = alias_version(settings, config, CHAMPION)
    test = split_frame(training_set, "test")
    champion_roc_auc, not_comparable = None, ""
    if champion is not None and champion != candidate and all_passed(gates):
        champion_roc_auc, not_comparable = _score_on(settings, config, champion, test)
    decision = decide_champion(candidate, gates, evaluation.metrics["roc_auc"], champion, champion_roc_auc,
                               len(test), not_comparable)
    if decision.promoted:
        try:
            move_alias(settings, config, CHAMPION, candidate, by=by, reason=decision.reason)
        except PromotionRefused as refused:  # awaiting approvals, rejected, or unfair: the champion stays
            decision = replace(decision, champion_version=champion, promoted=False,
                               reason=f"{decision.reason}; not promoted: {refused}")
    return decision


def _score_on(settings: Settings, config: DatasetConfig, version: str, test: pd.DataFrame) -> tuple[float | None, str]:
    """ROC AUC of ``version`` on ``test``, or None and why when that version cannot score these rows."""
    served = load_version(settings, config, version)
    try:
        scores = served.pipeline.predict_proba(test[config.model_features])[:, 1]
    except (KeyError, ValueError) as exc:  # the config's features changed since that version was trained
        return None, str(exc).splitlines()[0][:200]
    return float(roc_auc_score(binary_target(test, config), scores)), ""
