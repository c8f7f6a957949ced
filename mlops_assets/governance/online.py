"""Governance on request, for the prediction service: explain a record, decide on a version, read its approvals.

Plain, blocking Python that the service's endpoints call from a thread (``bento/service.py``
``POST /explain``, ``bento/governance.py`` ``/approvals/{model}/{version}``). Nothing here
is new policy: an explanation is :func:`explanations.explain_record` against the
version's stored background, a decision is :func:`workflow.decide` (the same checks,
ledger, MLflow tags, Dagster event and card refresh as ``mlops approve``), and
:func:`refusal_status` only says which HTTP status each refusal gets.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import pandas as pd

from mlops_assets.config import NUMERIC_TYPES, DatasetConfig
from mlops_assets.errors import PlatformError
from mlops_assets.governance.approvals import (
    ApprovalRefused,
    ApprovalsOff,
    ApprovalState,
    NotIdentified,
    NotPermitted,
    UnknownVersion,
    approval_state,
    check_anchors,
    model_version,
    open_ledger,
    roles_policy,
    version_approval_state,
)
from mlops_assets.governance.explanations import ExplanationError, LocalExplanation, explain_record, raw_inputs
from mlops_assets.governance.ledger import Decision, LedgerError
from mlops_assets.governance.roles import RolesError
from mlops_assets.settings import Settings
from mlops_assets.training.registry import ServedModel


class UnknownModel(PlatformError, LookupError):
    """A model or dataset name the service does not serve."""


class IncompleteRecord(ExplanationError):
    """A record to explain that lacks raw input columns (the request's fault, not the version's)."""


#: The HTTP status of each refusal, most specific first; the message is the one the CLI prints.
STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (NotIdentified, 401),
    (NotPermitted, 403),
    (UnknownVersion, 404),
    (UnknownModel, 404),
    (IncompleteRecord, 400),
    (ApprovalsOff, 409),
    (ApprovalRefused, 400),  # no comment; several deciding roles and none chosen
    (ExplanationError, 404),  # the version has no explanation background yet
    (LedgerError, 503),  # tampered with, or unreachable: nothing is recorded until it is fixed
    (RolesError, 503),  # the roles file cannot be read: a server-side fault, said as such
)


def refusal_status(exc: Exception) -> int | None:
    """The status a refusal is answered with, or None for an unexpected error."""
    return next((status for kind, status in STATUSES if isinstance(exc, kind)), None)


def served_config(configs: dict[str, DatasetConfig], model: str) -> DatasetConfig:
    """The config of a dataset named by itself (``churn``) or by its registered model (``churn_model``)."""
    for config in configs.values():
        if model in (config.name, config.registered_model_name):
            return config
    known = ", ".join(f"{c.name} ({c.registered_model_name})" for c in configs.values())
    raise UnknownModel(f"no served dataset or model is named {model!r}; served: {known}")


# Explanations ---------------------------------------------------------------------------------

class Explainer:
    """Explains records with the version that serves them; each version's background is read once.

    The background (training rows the contributions are measured against) is written by
    the ``<dataset>/explanations`` asset; a version without one is refused with that said.
    """

    def __init__(self, settings: Settings, keep: int = 4) -> None:
        self.settings = settings
        self.keep = keep
        self._backgrounds: OrderedDict[tuple[str, str], pd.DataFrame] = OrderedDict()
        self._lock = threading.Lock()

    def background(self, config: DatasetConfig, version: str) -> pd.DataFrame:
        from mlops_assets.governance.assessment import load_background  # fairness and plots: not at service start

        key = (config.name, str(version))
        with self._lock:
            if key in self._backgrounds:
                self._backgrounds.move_to_end(key)
                return self._backgrounds[key]
        frame = load_background(self.settings, config, str(version))
        with self._lock:
            self._backgrounds[key] = frame
            while len(self._backgrounds) > self.keep:  # versions no longer served
                self._backgrounds.popitem(last=False)
        return frame

    def explain(self, served: ServedModel, record: dict, entity_id: str | None = None) -> LocalExplanation:
        """``record``: the raw columns as a client sends them (JSON null for a missing value)."""
        config = served.config
        missing = [c for c in raw_inputs(config) if c not in record]
        if missing:
            raise IncompleteRecord(f"dataset {config.name!r}: the record to explain lacks the columns {missing}")
        row = pd.Series({c: _missing_as_nan(config, c, record[c]) for c in raw_inputs(config)}, dtype=object)
        return explain_record(served.pipeline, config, served.decision_threshold, row,
                              self.background(config, served.version), entity_id)


def method(config: DatasetConfig) -> str:
    settings = config.governance.explanations
    return (f"Shapley values of the raw input columns, sampled: {max(settings.permutations, 2)} feature orderings "
            f"against up to {settings.background_rows} training rows (docs/governance.md, Explanations)")


def _missing_as_nan(config: DatasetConfig, column: str, value: object) -> object:
    """A JSON null in a numeric column is NaN, as in training and in ``ScoringModel.score_records``."""
    return float("nan") if value is None and config.columns[column].type in NUMERIC_TYPES else value


# Approvals ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VersionApprovals:
    """A version's approval state as the endpoints answer it, with the ledger's integrity."""

    model: str
    version: str
    state: ApprovalState
    ledger_problems: list[str]

    def to_dict(self) -> dict:
        state = self.state
        return {
            "model": self.model, "version": self.version, "status": state.status, "summary": state.summary(),
            "required": list(state.required), "approvals": state.approvals, "missing": state.missing,
            "rejections": [_decision(d) for d in state.rejections], "stale": [_decision(d) for d in state.stale],
            "decisions": [_decision(d) for d in state.decisions],
            "ledger_intact": not self.ledger_problems, "ledger_problems": self.ledger_problems,
        }


def _decision(decision: Decision) -> dict:
    return {k: v for k, v in decision.to_dict().items() if k != "prev_hash"}


def version_approvals(settings: Settings, config: DatasetConfig, version: str) -> VersionApprovals:
    """Required roles, who approved, what is missing, who rejected; UnknownVersion when there is no such version."""
    model_version(settings, config, version)
    ledger = open_ledger(settings)
    try:
        problems = ledger.verify()
        try:
            check_anchors(settings, config, ledger)
        except LedgerError as exc:
            problems.append(str(exc))
        state = version_approval_state(settings, config, version, ledger)
    finally:
        ledger.close()
    return VersionApprovals(config.registered_model_name, str(version), state, problems)


def decide_over_http(settings: Settings, config: DatasetConfig, version: str, token: str, decision: str,
                     comment: str, role: str | None) -> tuple[Decision, VersionApprovals, list[str]]:
    """What ``mlops approve|reject`` does, answered with the version's state after the decision.

    The state is that of the content the decision was recorded on, read back from the
    ledger (the decision is committed when this returns: one transaction, see ``ledger.py``).
    """
    from mlops_assets.governance.workflow import decide  # Dagster and the card renderer: not at service start

    recorded, _, warnings = decide(settings, config, version, token, decision, comment, role)
    ledger = open_ledger(settings)
    try:
        decisions = ledger.records(config.registered_model_name, str(version))
    finally:
        ledger.close()
    state = approval_state(roles_policy(config), decisions, recorded.content_hash)
    return recorded, VersionApprovals(config.registered_model_name, str(version), state, []), warnings
