"""What happens around a decision, for every caller (the CLI, the HTTP service): record it, show it, refresh the card.

The decision itself is :func:`approvals.record_decision` (refused with a message, or
written to the ledger). Once written, it is reported to the Dagster instance as an event
of the ``<dataset>/approvals`` asset (so the UI shows it), and the version's model card
is rendered again so its approvals section is current. Neither of those can undo the
record: a failure there is reported to the caller as a warning.
"""

from __future__ import annotations

import dagster as dg

from mlops_assets.config import DatasetConfig
from mlops_assets.governance.approvals import record_decision, version_approval_state
from mlops_assets.governance.assessment import read_evidence
from mlops_assets.governance.ledger import Decision
from mlops_assets.governance.model_card import CardFiles, write_card
from mlops_assets.settings import Settings


def decide(settings: Settings, config: DatasetConfig, version: str, token: str | None, decision: str, comment: str,
           role: str | None = None) -> tuple[Decision, str, list[str]]:
    """(the recorded decision, the version's approval state, warnings) or ApprovalRefused."""
    recorded = record_decision(settings, config, version, token, decision, comment, role)
    state = version_approval_state(settings, config, version).summary()
    warnings = []
    try:
        dg.DagsterInstance.get().report_runless_asset_event(dg.AssetMaterialization(
            asset_key=[config.name, "approvals"],
            description=f"{recorded.person} ({recorded.role}) {recorded.decision}d v{version}: {recorded.comment}",
            metadata={"model": recorded.model, "model_version": recorded.version, "person": recorded.person,
                      "role": recorded.role, "decision": recorded.decision, "comment": recorded.comment,
                      "approval_state": state, "record": recorded.seq, "record_hash": recorded.record_hash}))
    except Exception as exc:  # noqa: BLE001 - the ledger holds the decision; the UI event is a view of it
        warnings.append(f"recorded, but not shown in the Dagster UI: {exc}")
    card = refresh_card(settings, config, version)
    if card is None:
        warnings.append(f"v{version} has no model card yet; it will show this decision when it is made")
    return recorded, state, warnings


def refresh_card(settings: Settings, config: DatasetConfig, version: str) -> CardFiles | None:
    """Render the card again from its stored evidence (None when the version was never assessed)."""
    if read_evidence(settings, config, version, "metrics.json") is None:
        return None
    instance = None
    try:
        instance = dg.DagsterInstance.get()
    except Exception:  # noqa: BLE001 - lineage then comes from MLflow alone
        pass
    return write_card(settings, config, version, instance)
