"""The quality gates as asset checks on ``evaluation``: a failed gate turns the lineage red.

One check per gate, evaluated together in one step. By default each is blocking at
ERROR severity: the steps after ``evaluation`` in the same run (champion, model card)
do not run. With ``release.blocking_gates: false`` a failed gate is a WARN and the run
goes on; the champion asset still refuses the version.
"""


import dagster as dg

from mlops_assets.config import DatasetConfig
from mlops_assets.dagster_metadata import rounded
from mlops_assets.pipeline.gates import GateResult, check_gates, evaluate_gates, gate_tags, parse_gate
from mlops_assets.settings import Settings
from mlops_assets.training.evaluation import Evaluation
from mlops_assets.training.registry import set_version_tags


def gate_check_name(gate: str) -> str:
    return f"gate_{gate}"


def gate_check_result(result: GateResult, evaluation_key: dg.AssetKey, version: str,
                      blocking: bool) -> dg.AssetCheckResult:
    verdict = "passed" if result.passed else "FAILED"
    consequence = "" if result.passed else f"; v{version} will not become champion"
    return dg.AssetCheckResult(
        asset_key=evaluation_key,
        check_name=gate_check_name(result.name),
        passed=result.passed,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        description=f"{result.describe()} {verdict}{consequence}",
        metadata={
            "metric": f"test {result.metric}",
            "measured": rounded(result.measured) if result.measured is not None else dg.MetadataValue.text("not measured"),
            "threshold": rounded(result.threshold),
            "comparison": result.comparison,
            "model_version": version,
        },
    )


def build_gate_checks(config: DatasetConfig, settings: Settings) -> list[dg.AssetChecksDefinition]:
    """The gates of one dataset as checks on its ``evaluation`` (none when the config has no gates)."""
    check_gates(config)
    if not config.gates:
        return []
    evaluation_key = dg.AssetKey([config.name, "evaluation"])
    blocking = config.release.blocking_gates
    specs = []
    for gate, threshold in config.gates.items():
        bound, metric = parse_gate(gate)
        specs.append(dg.AssetCheckSpec(
            gate_check_name(gate), asset=evaluation_key, blocking=blocking,
            description=f"Quality gate: the test {metric} is {'at least' if bound == 'min' else 'at most'} "
            f"{threshold} ({config.path.name if config.path else config.name}). A version that fails it never "
            "becomes champion" + ("; the rest of the run stops." if blocking else "."),
        ))

    @dg.multi_asset_check(specs=specs, name=f"{config.name}__gates", ins={"evaluation": dg.AssetIn(evaluation_key)})
    def gates(context: dg.AssetCheckExecutionContext, evaluation: Evaluation):
        results = evaluate_gates(config, evaluation.metrics)
        # The verdict lives on the version too: serving, governance and `mlops promote` read it there.
        set_version_tags(settings, config, evaluation.model.version, gate_tags(results))
        for result in results:
            yield gate_check_result(result, evaluation_key, evaluation.model.version, blocking)

    return [gates]
