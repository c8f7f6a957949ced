"""Running jobs outside the UI (the CLI, the demo, tests) against the real Dagster instance."""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

import dagster as dg

from mlops_assets.pipeline.jobs import MAIN_JOB
from mlops_assets.settings import PROJECT_ROOT, Settings


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
                         if event.step_failure_data.user_failure_data else event.step_failure_data.error.message.strip())
        for event in result.get_step_failure_events()
    }
    return RunSummary(result.run_id, result.success, outcomes, evaluations, failures)
