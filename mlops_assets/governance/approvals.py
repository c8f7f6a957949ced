"""Approvals with roles: who may decide on a model version, what is recorded, and what promotion requires.

A decision is accepted only from a person the roles file knows (by their personal
token), in a role that decides, on a version that exists, and (unless the policy
allows it) not on a model they trained themselves. Anything else is refused with a
message and nothing is written. An accepted decision goes to the append-only ledger
(``ledger.py``) with the version's content hash, and onto the version in MLflow as a
tag, which also anchors the ledger's newest record outside its table.

:func:`require_promotion_allowed` is what every promotion calls (``mlops promote`` and
the automatic champion replacement): without a roles file, or with one that requires
no approvals, it only refuses a version that failed its fairness check.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from mlops_assets.config import DatasetConfig
from mlops_assets.errors import PlatformError
from mlops_assets.governance.ledger import Decision, DecisionLedger, LedgerError, ledger_url
from mlops_assets.governance.roles import RolesPolicy, load_roles
from mlops_assets.settings import Settings
from mlops_assets.training.registry import client

#: Version tags written here (the MLflow UI shows them on the version page).
APPROVAL_STATE_TAG = "approval_state"
APPROVAL_TAG_PREFIX = "approval."
FAIRNESS_TAG = "fairness"
FAIRNESS_VERDICT_TAG = "fairness_verdict"
AUTHOR_TAG = "trained_by"


class ApprovalRefused(PlatformError, PermissionError):
    """A decision that is not accepted; nothing was recorded.

    The subclasses say why, so the HTTP endpoint can answer 401, 403, 404 or 409
    with the same message the CLI prints.
    """


class NotIdentified(ApprovalRefused):
    """No token, or a token that matches no one in the roles file."""


class NotPermitted(ApprovalRefused):
    """A known person who may not make this decision: no deciding role, a role not held, their own model."""


class UnknownVersion(ApprovalRefused, LookupError):
    """The model has no such version."""


class ApprovalsOff(ApprovalRefused):
    """The dataset has no roles file, so no one can decide on its versions."""


class PromotionRefused(PlatformError, PermissionError):
    """A version that may not take the alias: approvals missing, a rejection, or failed fairness."""


def roles_policy(config: DatasetConfig) -> RolesPolicy | None:
    """The dataset's roles file (relative to its config), or None when it has none."""
    name = config.governance.roles_file
    if name is None:
        return None
    path = Path(name).expanduser()
    if not path.is_absolute() and config.path is not None:
        path = config.path.parent / path
    return load_roles(path)


def open_ledger(settings: Settings) -> DecisionLedger:
    return DecisionLedger(ledger_url(settings))


def model_version(settings: Settings, config: DatasetConfig, version: str):
    """The MLflow version, or a refusal that lists the versions that do exist."""
    tracking = client(settings)
    try:
        return tracking.get_model_version(config.registered_model_name, str(version))
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
    existing = sorted((int(v.version) for v in tracking.search_model_versions(f"name='{config.registered_model_name}'")))
    listed = ", ".join(map(str, existing)) or "none yet"
    raise UnknownVersion(f"{config.registered_model_name} has no version {version!r} (versions: {listed}); "
                         "nothing recorded")


def content_hash(settings: Settings, config: DatasetConfig, version: str) -> str:
    """SHA-256 over the version's stored model files and its decision threshold: what an approval is for.

    skops writes different bytes each time a model is saved, so this identifies the stored
    artifact, not the model's maths; an artifact swapped after approval no longer matches.
    """
    details = model_version(settings, config, version)
    digest = hashlib.sha256()
    # The artifact store location, resolved by this home's client: no process-wide MLflow URI involved
    # (mlflow.set_tracking_uri also rewrites MLFLOW_TRACKING_URI in the environment).
    location = client(settings).get_model_version_download_uri(config.registered_model_name, str(version))
    saved = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # no progress bar in `mlops approve`'s output
    try:
        with tempfile.TemporaryDirectory() as folder:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=folder))
            for path in sorted(p for p in local.rglob("*") if p.is_file()):
                digest.update(str(path.relative_to(local)).encode())
                digest.update(path.read_bytes())
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = saved
    digest.update(details.tags.get("decision_threshold", "").encode())
    return digest.hexdigest()


def _run_tags(settings: Settings, run_id: str) -> dict[str, str]:
    try:
        return client(settings).get_run(run_id).data.tags
    except MlflowException:
        return {}


def fairness_state(settings: Settings, details) -> str | None:
    """passed / failed / not judged: on the version, or on the run it was trained in (checked before it was
    registered)."""
    return details.tags.get(FAIRNESS_TAG) or _run_tags(settings, details.run_id).get(FAIRNESS_TAG)


def version_author(settings: Settings, config: DatasetConfig, version: str) -> str | None:
    """Who trained the version: its ``trained_by`` tag, else the MLflow user of its run."""
    details = model_version(settings, config, version)
    if details.tags.get(AUTHOR_TAG):
        return details.tags[AUTHOR_TAG]
    try:
        return client(settings).get_run(details.run_id).data.tags.get("mlflow.user")
    except MlflowException:
        return None


@dataclass
class ApprovalState:
    """Where a version stands: approved, pending (roles missing), rejected, or not required."""

    required: tuple[str, ...]
    approvals: dict[str, list[str]] = field(default_factory=dict)  # role -> people
    rejections: list[Decision] = field(default_factory=list)
    stale: list[Decision] = field(default_factory=list)  # decisions on other content than the version's now
    decisions: list[Decision] = field(default_factory=list)

    @property
    def missing(self) -> list[str]:
        return [r for r in self.required if not self.approvals.get(r)]

    @property
    def status(self) -> str:
        if not self.required and not self.decisions:
            return "not required"
        if self.rejections:
            return "rejected"
        return "pending" if self.missing else "approved"

    def summary(self) -> str:
        if self.status == "not required":
            return "not required (no roles file requires approvals)"
        parts = [self.status]
        if self.approvals:
            parts.append("approved by " + ", ".join(f"{p} ({r})" for r, people in self.approvals.items() for p in people))
        if self.missing:
            parts.append("missing: " + ", ".join(self.missing))
        if self.rejections:
            parts.append("rejected by " + ", ".join(f"{d.person} ({d.role}): {d.comment!r}" for d in self.rejections))
        if self.stale:
            parts.append(f"{len(self.stale)} decision(s) were for other content and do not count")
        return "; ".join(parts)


def approval_state(policy: RolesPolicy | None, decisions: list[Decision], current_hash: str | None) -> ApprovalState:
    """Each person's latest decision counts, for the role it was made in, if it is for the current content."""
    state = ApprovalState(required=policy.required if policy else (), decisions=decisions)
    latest: dict[str, Decision] = {}
    for decision in decisions:
        latest[decision.person] = decision
    for decision in latest.values():
        if current_hash is not None and decision.content_hash != current_hash:
            state.stale.append(decision)
        elif decision.decision == "reject":
            state.rejections.append(decision)
        else:
            state.approvals.setdefault(decision.role, []).append(decision.person)
    return state


def version_approval_state(settings: Settings, config: DatasetConfig, version: str,
                           ledger: DecisionLedger | None = None, check_content: bool = True) -> ApprovalState:
    policy = roles_policy(config)
    own = ledger is None
    ledger = ledger or open_ledger(settings)
    try:
        decisions = ledger.records(config.registered_model_name, str(version))
    finally:
        if own:
            ledger.close()
    current = content_hash(settings, config, version) if (check_content and decisions) else None
    return approval_state(policy, decisions, current)


def record_decision(settings: Settings, config: DatasetConfig, version: str, token: str | None, decision: str,
                    comment: str, role: str | None = None, ledger: DecisionLedger | None = None) -> Decision:
    """Record an approval or rejection after every check passes; refuse with the reason otherwise."""
    model = config.registered_model_name
    what = f"{decision} {model} v{version}"
    policy = roles_policy(config)
    if policy is None:
        raise ApprovalsOff(f"cannot {what}: dataset {config.name!r} has no roles file "
                           "(governance.roles_file in its config), so no one can approve; nothing recorded")
    if not comment or not comment.strip():
        raise ApprovalRefused(f"cannot {what}: a comment is required (--comment 'why'); nothing recorded")
    if not token:
        raise NotIdentified(f"cannot {what}: no token given (set MLOPS_TOKEN, or paste it when asked); nothing recorded")
    person = policy.identify(token)
    if person is None:
        raise NotIdentified(f"cannot {what}: the token matches no one in {policy.path}; nothing recorded")
    deciding = [r for r in person.roles if r in policy.deciding_roles]
    if role is not None:
        if role not in person.roles:
            raise NotPermitted(f"cannot {what}: {person.name} does not hold the role {role!r} "
                               f"(holds {list(person.roles)}); nothing recorded")
        if role not in policy.deciding_roles:
            raise NotPermitted(f"cannot {what}: role {role!r} does not decide on models; deciding roles: "
                               f"{list(policy.deciding_roles)}; nothing recorded")
        chosen = role
    elif len(deciding) == 1:
        chosen = deciding[0]
    elif not deciding:
        raise NotPermitted(f"cannot {what}: {person.name} holds {list(person.roles)}, and decisions need one of "
                           f"{list(policy.deciding_roles)}; nothing recorded")
    else:
        raise ApprovalRefused(f"cannot {what}: {person.name} holds several deciding roles {deciding}; "
                              "say which with --role (the \"role\" field over HTTP); nothing recorded")
    model_version(settings, config, version)  # exists, or refused naming the versions that do
    author = version_author(settings, config, version)
    if not policy.allow_self_approval and person.is_author(author):
        raise NotPermitted(f"cannot {what}: {person.name} trained this version (as {author!r}) and the roles file "
                           "forbids approving one's own model (allow_self_approval: false); nothing recorded")
    own = ledger is None
    ledger = ledger or open_ledger(settings)
    try:
        ledger.require_intact()
        check_anchors(settings, config, ledger)
        recorded = ledger.append(model, str(version), content_hash(settings, config, version), person.name, chosen,
                                 decision, comment.strip())
        state = approval_state(policy, ledger.records(model, str(version)), recorded.content_hash)
    finally:
        if own:
            ledger.close()
    tracking = client(settings)
    tracking.set_model_version_tag(model, str(version), f"{APPROVAL_TAG_PREFIX}{person.name}",
                                   f"{decision} as {chosen} at {recorded.decided_at} record {recorded.record_hash}")
    tracking.set_model_version_tag(model, str(version), APPROVAL_STATE_TAG, state.summary())
    return recorded


def check_anchors(settings: Settings, config: DatasetConfig, ledger: DecisionLedger) -> None:
    """Every decision tagged on a version in MLflow must still be in the ledger (catches a cut-off tail)."""
    known = {d.record_hash for d in ledger.records(config.registered_model_name)}
    lost = []
    for details in client(settings).search_model_versions(f"name='{config.registered_model_name}'"):
        for key, value in details.tags.items():
            if key.startswith(APPROVAL_TAG_PREFIX) and value.rsplit(" ", 1)[-1] not in known:
                lost.append(f"v{details.version} {key.removeprefix(APPROVAL_TAG_PREFIX)}: {value.split(' record ')[0]}")
    if lost:
        raise LedgerError(f"the approval ledger {ledger.url} lacks decisions that MLflow recorded ({'; '.join(lost)}): "
                          "records were removed; nothing is recorded or promoted until it is restored from a backup")


def require_promotion_allowed(settings: Settings, config: DatasetConfig, version: str) -> None:
    """Raise PromotionRefused unless ``version`` may take the champion alias.

    Refused when its fairness check failed, and, when the roles file requires approvals,
    when the ledger is not intact, a required role has not approved this exact content,
    or someone's latest decision is a rejection.
    """
    model = config.registered_model_name
    details = model_version(settings, config, version)
    if fairness_state(settings, details) == "failed":
        verdict = details.tags.get(FAIRNESS_VERDICT_TAG) or _run_tags(settings, details.run_id).get(FAIRNESS_VERDICT_TAG)
        raise PromotionRefused(f"{model} v{version} cannot be promoted: it failed its fairness check "
                               f"({verdict or 'see its model card'})")
    policy = roles_policy(config)
    if policy is None or not policy.required:
        return
    ledger = open_ledger(settings)
    try:
        ledger.require_intact()
        check_anchors(settings, config, ledger)
        state = version_approval_state(settings, config, version, ledger)
    finally:
        ledger.close()
    if state.rejections:
        who = "; ".join(f"{d.person} ({d.role}) on {d.decided_at[:10]}: {d.comment!r}" for d in state.rejections)
        raise PromotionRefused(f"{model} v{version} cannot be promoted: rejected by {who}")
    if state.missing:
        have = ", ".join(f"{r}: {', '.join(p)}" for r, p in state.approvals.items()) or "none"
        raise PromotionRefused(f"{model} v{version} cannot be promoted: approvals missing from "
                               f"{', '.join(state.missing)} (approved so far: {have}); "
                               f"`mlops approve {model} {version} --comment ...` by a person in that role")
