"""The A/B report asset and the prediction-log sensor in Dagster, on a prediction log written here (no server)."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pytest

from mlops_assets.config import ExperimentConfig, load_dataset_config
from mlops_assets.serving.assets import build_serving_assets
from mlops_assets.serving.experiments import ExperimentStore
from mlops_assets.serving.prediction_log import PredictionLogWriter, connect, utc_now
from mlops_assets.serving.sensors import build_prediction_log_sensor
from mlops_assets.settings import PROJECT_ROOT, use_home


@pytest.fixture
def home(tmp_path):
    config = load_dataset_config(PROJECT_ROOT / "configs" / "churn.yaml")
    config = config.model_copy(update={"experiment": ExperimentConfig(
        id="churn-exp", split="50/50", primary_metric="brier", min_units=100, guardrails={"max_error_rate": 0.02})})
    with use_home(tmp_path / "home", PROJECT_ROOT / "configs") as settings:
        engine = connect(settings.prediction_log_url)
        ExperimentStore(engine).declare(config)
        yield settings, config, engine
        engine.dispose()


def log_units(engine, units: dict[str, int], brier_noise: dict[str, float], errors: dict[str, int] | None = None,
              seed: int = 0) -> None:
    """``units[variant]`` entities with one answered, outcome-carrying request each."""
    rng = np.random.default_rng(seed)
    writer = PredictionLogWriter(engine)
    for variant, count in units.items():
        for i in range(count):
            outcome = float(rng.random() < 0.3)
            score = float(np.clip(outcome + rng.normal(0, brier_noise[variant]) * (1 if outcome == 0 else -1), 0, 1))
            failed = i < (errors or {}).get(variant, 0)
            writer.append({"request_id": f"{variant}-{i}", "logged_at": utc_now(), "dataset": "churn",
                           "entity_id": f"{variant}-E{i}", "experiment_id": "churn-exp", "variant": variant,
                           "shadow": False, "model_name": "churn_model", "model_version": "1" if variant == "champion" else "2",
                           "features": json.dumps({"monthly_charges": 50.0}), "score": None if failed else abs(score),
                           "decision": None if failed else int(abs(score) >= 0.3), "threshold": 0.3, "latency_ms": 3.0,
                           "error": "ValueError: boom" if failed else None, "outcome": outcome, "outcome_at": utc_now()})
    writer.close()


def materialize(settings, config) -> dg.ExecuteInProcessResult:
    return dg.materialize(build_serving_assets(config, settings), instance=dg.DagsterInstance.ephemeral(),
                          selection=[dg.AssetKey(["churn", "ab_test_report"])])


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_the_report_says_the_challenger_wins_when_it_clearly_predicts_better(home):
    settings, config, engine = home
    log_units(engine, {"champion": 600, "challenger": 600}, {"champion": 0.45, "challenger": 0.15})
    result = materialize(settings, config)
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["decision"].value == "challenger_wins"
    assert metadata["verdict"].value.startswith("challenger wins: brier")
    assert "data:image/png;base64," in metadata["report"].value
    assert checks(result) == {"sample_ratio_matches_split": True, "guardrails_hold": True}
    assert (settings.reports / "churn" / "ab_test_report.png").stat().st_size > 1000


def test_a_sample_ratio_mismatch_turns_the_check_red_and_says_stop(home):
    settings, config, engine = home
    log_units(engine, {"champion": 700, "challenger": 300}, {"champion": 0.3, "challenger": 0.3})
    result = materialize(settings, config)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["decision"].value == "sample_ratio_mismatch"
    assert "stop the experiment" in metadata["verdict"].value and "50.00%" in metadata["verdict"].value
    assert checks(result)["sample_ratio_matches_split"] is False


def test_a_guardrail_breach_decides_for_the_champion(home):
    settings, config, engine = home
    log_units(engine, {"champion": 500, "challenger": 500}, {"champion": 0.3, "challenger": 0.1},
              errors={"challenger": 25})
    result = materialize(settings, config)
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["decision"].value == "champion_wins" and "error_rate 5.00%" in metadata["verdict"].value
    assert checks(result) == {"sample_ratio_matches_split": True, "guardrails_hold": False}


def test_too_few_units_keeps_collecting_and_no_experiment_says_how_to_start_one(home, tmp_path):
    settings, config, engine = home
    log_units(engine, {"champion": 40, "challenger": 40}, {"champion": 0.45, "challenger": 0.1})
    metadata = materialize(settings, config).get_asset_materialization_events()[0].materialization.metadata
    assert metadata["decision"].value == "keep_collecting" and "100 needed" in metadata["verdict"].value
    with use_home(tmp_path / "empty", PROJECT_ROOT / "configs") as empty:
        plain = load_dataset_config(PROJECT_ROOT / "configs" / "churn.yaml").model_copy(update={"experiment": None})
        metadata = materialize(empty, plain).get_asset_materialization_events()[0].materialization.metadata
        assert metadata["decision"].value == "no_experiment" and "mlops experiment start churn" in metadata["verdict"].value


def test_the_sensor_observes_the_log_when_it_changed_and_only_then(home):
    settings, config, engine = home
    sensor = build_prediction_log_sensor([config], settings)
    instance = dg.DagsterInstance.ephemeral()
    empty = sensor(dg.build_sensor_context(instance=instance))
    (first,) = empty.asset_events
    assert first.asset_key == dg.AssetKey(["churn", "prediction_log"]) and first.metadata["dagster/row_count"].value == 0
    log_units(engine, {"champion": 5, "challenger": 3}, {"champion": 0.3, "challenger": 0.3})
    grown = sensor(dg.build_sensor_context(instance=instance, cursor=empty.cursor))
    (observation,) = grown.asset_events
    assert observation.metadata["dagster/row_count"].value == 8
    assert observation.metadata["rows_challenger"].value == 3 and observation.metadata["rows_with_outcome"].value == 8
    unchanged = sensor(dg.build_sensor_context(instance=instance, cursor=grown.cursor))
    assert unchanged.asset_events == []


def test_the_lineage_runs_from_the_champion_through_the_prediction_log_to_the_report():
    from mlops_assets.pipeline.runs import load_definitions
    from mlops_assets.settings import Settings

    graph = load_definitions(Settings.from_env()).resolve_asset_graph()
    log = dg.AssetKey(["churn", "prediction_log"])
    assert graph.get(log).parent_keys == {dg.AssetKey(["churn", "champion"])}
    assert dg.AssetKey(["churn", "ab_test_report"]) in graph.get(log).child_keys
    assert graph.get(dg.AssetKey(["churn", "ab_test_report"])).parent_keys == {log, dg.AssetKey(["churn", "champion"])}
    assert not graph.get(log).is_materializable
