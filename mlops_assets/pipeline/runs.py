"""Running jobs outside the UI (the CLI, the demo, tests) against the real Dagster instance.

A run started here is filed exactly like one launched from the UI: under the job
``mlops_main`` of the code location that ``workspace.yaml`` names, so the Overview
timeline and the job's Runs tab list it. It still executes in this process, with no
code server and no run worker to start.
"""

from __future__ import annotations

import importlib
import re
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg

# Dagster has no public API for "create a run with the UI's origin, execute it here"; these are the
# pieces its own `dagster job launch -w` (origins) and run worker (execute_run) use.
from dagster._core.code_pointer import FileCodePointer
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import execute_run
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.workspace.load import location_origins_from_yaml_paths

from mlops_assets.config import DatasetConfig, load_dataset_configs
from mlops_assets.errors import PlatformError
from mlops_assets.pipeline.jobs import MAIN_JOB
from mlops_assets.settings import PROJECT_ROOT, Settings

if TYPE_CHECKING:  # the type of a step's error; Dagster does not export it publicly
    from dagster._utils.error import SerializableErrorInfo

WORKSPACE = PROJECT_ROOT / "workspace.yaml"


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


#: The test metrics `mlops materialize` prints for each model.
HEADLINE_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "accuracy")


@dataclass(frozen=True)
class ModelReport:
    """What one dataset's model came to in a run: its test metrics, its gates, the champion decision."""

    model: str
    version: str | None
    metrics: dict[str, float]
    gates: list[str]
    champion: str | None

    def lines(self) -> list[str]:
        if self.version is None:
            return [f"  {self.model}: no version evaluated in this run"]
        figures = ", ".join(f"{m} {self.metrics[m]:.4f}" for m in HEADLINE_METRICS if m in self.metrics)
        extra = [f"threshold {self.metrics['threshold']:.4f}"] if "threshold" in self.metrics else []
        extra += [f"{int(self.metrics['rows'])} rows"] if "rows" in self.metrics else []
        lines = [f"  {self.model} v{self.version}: test {figures}" + (f" ({', '.join(extra)})" if extra else "")]
        lines.append(f"    gates: {'; '.join(self.gates) if self.gates else 'none configured'}")
        lines.append(f"    champion: {self.champion or 'not decided in this run (the champion step did not run)'}")
        return lines


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    success: bool
    outcomes: list[StepOutcome]
    check_evaluations: list[dg.AssetCheckEvaluation]
    step_failures: dict[str, str]
    models: list[ModelReport] = field(default_factory=list)
    duration: float = 0.0

    def models_table(self) -> str:
        """Each model's headline test metrics, gate verdicts and champion decision."""
        return "\n".join(line for report in self.models for line in report.lines())

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


def job_origins(definitions: dg.Definitions, job_name: str) -> tuple[RemoteJobOrigin, JobPythonOrigin]:
    """Where the UI finds ``job_name``: the code location ``workspace.yaml`` declares.

    The remote origin is what the UI files a run under (its ``.dagster/repository`` tag and
    the job name); the code origin is how a run worker would load the job again.
    """
    (location,) = location_origins_from_yaml_paths([str(WORKSPACE)])
    repository = definitions.get_repository_def().name
    remote = RemoteJobOrigin(RemoteRepositoryOrigin(location, repository), job_name)
    target = location.loadable_target_origin
    pointer = FileCodePointer(target.python_file, target.attribute or "defs", target.working_directory)
    code = JobPythonOrigin(job_name, RepositoryPythonOrigin(target.executable_path or sys.executable, pointer))
    return remote, code


def run_main_job(settings: Settings, instance: dg.DagsterInstance | None = None, log_level: str = "INFO") -> RunSummary:
    """Materialize the whole graph in this process, recorded in the instance the UI reads."""
    started = time.perf_counter()
    definitions = load_definitions(settings)
    job = definitions.resolve_job_def(MAIN_JOB)
    instance = instance or dg.DagsterInstance.get()
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    remote_origin, code_origin = job_origins(definitions, MAIN_JOB)
    run = instance.create_run_for_job(job, run_config=run_config, tags=job.run_tags,
                                      remote_job_origin=remote_origin, job_code_origin=code_origin)
    # In this process, as execute_in_process would (the in-process executor needs no reconstructable job).
    result = execute_run(InMemoryJob(job), run, instance, raise_on_error=False)
    materialized = {event.asset_key for event in result.get_asset_materialization_events()}
    evaluations = result.get_asset_check_evaluations()
    checks: dict[dg.AssetKey, dict[str, bool]] = {}
    for evaluation in evaluations:
        checks.setdefault(evaluation.asset_key, {})[evaluation.check_name] = evaluation.passed
    # Materializable assets only: external ones (the approval ledger, the prediction log) are written outside runs.
    keys = sorted(definitions.resolve_asset_graph().materializable_asset_keys, key=lambda k: k.to_user_string())
    outcomes = [StepOutcome(k.to_user_string(), k in materialized, checks.get(k, {})) for k in keys]
    failures = {event.step_key: _failure_message(event, evaluations) for event in result.get_step_failure_events()}
    models = model_reports(load_dataset_configs(settings.configs), result)
    return RunSummary(result.run_id, result.success, outcomes, evaluations, failures, models,
                      time.perf_counter() - started)


def _failure_message(event: dg.DagsterEvent, evaluations: list[dg.AssetCheckEvaluation]) -> str:
    data = event.step_failure_data
    if data.user_failure_data:
        return data.user_failure_data.description
    if data.error and data.error.cls_name == "DagsterAssetCheckFailedError":
        # Dagster's text names the checks only ("N blocking asset checks failed ...:\n<asset>: <check>,<check>"):
        # say which check failed and why, once.
        named = {(asset.strip(), check.strip()) for line in data.error.message.strip().splitlines()[1:]
                 for asset, _, checks in [line.partition(": ")] for check in checks.split(",")}
        blocked = [f"{e.asset_key.to_user_string()}:{e.check_name} failed: {e.description}" for e in evaluations
                   if (e.asset_key.to_user_string(), e.check_name) in named]
        return f"{'; '.join(blocked) or 'a blocking check failed'}; the steps after it did not run"
    return error_message(data.error)


def model_reports(configs: list[DatasetConfig], result) -> list[ModelReport]:
    """Read back from the run's own events: what the evaluation measured, the gate checks, the champion step."""
    metadata = {tuple(event.asset_key.path): {k: v.value for k, v in event.materialization.metadata.items()}
                for event in result.get_asset_materialization_events()}
    reports = []
    for config in configs:
        evaluation = metadata.get((config.name, "evaluation"))
        champion = metadata.get((config.name, "champion"))
        gates = sorted(f"{e.check_name.removeprefix('gate_')} {'passed' if e.passed else 'FAILED'}: "
                       f"{e.metadata['comparison'].value}" for e in result.get_asset_check_evaluations()
                       if e.asset_key == dg.AssetKey([config.name, "evaluation"]) and e.check_name.startswith("gate_"))
        reports.append(ModelReport(
            model=config.registered_model_name,
            version=str(evaluation["model_version"]) if evaluation else None,
            metrics={k: v for k, v in (evaluation or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
            gates=gates,
            champion=_champion_line(champion),
        ))
    return reports


def _champion_line(metadata: dict | None) -> str | None:
    if metadata is None:
        return None
    holder = metadata["champion_version"]
    return f"{'none' if holder == 'none' else 'v' + holder} ({metadata['reason']})"


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
