"""Running jobs outside the UI (the CLI, the demo, tests) against the real Dagster instance."""

from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from mlops_assets.errors import PlatformError
from mlops_assets.pipeline.jobs import MAIN_JOB
from mlops_assets.settings import PROJECT_ROOT, Settings

if TYPE_CHECKING:  # the type of a step's error; Dagster does not export it publicly
    from dagster._utils.error import SerializableErrorInfo


def load_definitions(settings: Settings) -> dg.Definitions:
    """The code location's Definitions (root ``definitions.py``), built for ``settings``."""
    settings.export()
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    module = importlib.import_module("definitions")
    return module.build_definitions(settings)


@dataclass(frozen=True)
class StepOutcome:
    asset: str
    materialized: bool
    checks: dict[str, bool]


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    success: bool
    outcomes: list[StepOutcome]
    check_evaluations: list[dg.AssetCheckEvaluation]
    step_failures: dict[str, str]

    @property
    def first_failure(self) -> str | None:
        """The first failed step's message (the platform's own one-line error where one was raised)."""
        return next(iter(self.step_failures.values()), None)

    def table(self) -> str:
        """One line per asset, then what failed and why: enough to act on without opening the UI."""
        lines = []
        for outcome in self.outcomes:
            checks = ", ".join(f"{name} {'passed' if ok else 'FAILED'}" for name, ok in outcome.checks.items())
            state = "materialized" if outcome.materialized else "not materialized"
            lines.append(f"  {outcome.asset:<28} {state}{'  [' + checks + ']' if checks else ''}")
        for evaluation in self.check_evaluations:
            if not evaluation.passed:
                lines.append(f"  check {evaluation.asset_key.to_user_string()}:{evaluation.check_name} failed: "
                             f"{evaluation.description}")
        for step, message in self.step_failures.items():
            lines.append(f"  step {step} failed: {message}")
        return "\n".join(lines)


def run_main_job(settings: Settings, instance: dg.DagsterInstance | None = None, log_level: str = "INFO") -> RunSummary:
    """Materialize the whole graph in this process, recorded in the instance the UI reads."""
    definitions = load_definitions(settings)
    job = definitions.resolve_job_def(MAIN_JOB)
    instance = instance or dg.DagsterInstance.get()
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    result = job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False)
    materialized = {event.asset_key for event in result.get_asset_materialization_events()}
    evaluations = result.get_asset_check_evaluations()
    checks: dict[dg.AssetKey, dict[str, bool]] = {}
    for evaluation in evaluations:
        checks.setdefault(evaluation.asset_key, {})[evaluation.check_name] = evaluation.passed
    # Materializable assets only: external ones (the approval ledger) are written outside runs.
    keys = sorted(definitions.resolve_asset_graph().materializable_asset_keys, key=lambda k: k.to_user_string())
    outcomes = [StepOutcome(k.to_user_string(), k in materialized, checks.get(k, {})) for k in keys]
    failures = {
        event.step_key: (event.step_failure_data.user_failure_data.description
                         if event.step_failure_data.user_failure_data else error_message(event.step_failure_data.error))
        for event in result.get_step_failure_events()
    }
    return RunSummary(result.run_id, result.success, outcomes, evaluations, failures)


def error_message(error: SerializableErrorInfo | None) -> str:
    """What a person needs from a failed step: the platform's own message, not Dagster's wrapper around it.

    Dagster reports "Error occurred while executing op ..." and keeps the real exception as its
    cause. The first :class:`PlatformError` in that chain is the message written for people; failing
    that, the root cause, named by its class (the traceback is in Dagster's log: ``--verbose``).
    """
    chain: list[SerializableErrorInfo] = []
    while error is not None and len(chain) < 20:
        chain.append(error)
        error = error.cause or error.context
    if not chain:
        return "failed without an error message"
    platform = _subclass_names(PlatformError)
    for link in chain:
        if link.cls_name in platform:
            return _without_class(link.message)
    root = chain[-1]
    return f"{root.cls_name}: {_without_class(root.message)}"


def _subclass_names(cls: type) -> set[str]:
    names = {cls.__name__}
    for sub in cls.__subclasses__():
        names |= _subclass_names(sub)
    return names


def _without_class(message: str) -> str:
    """``module.SourceError: text`` -> ``text``."""
    return re.sub(r"^[\w.]+: ", "", message.strip(), count=1)
