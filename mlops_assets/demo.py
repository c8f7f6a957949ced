"""What ``mlops demo`` does: materialize the whole graph, serve the champion, ask it a few questions."""

from __future__ import annotations

import json
import logging
import time

import dagster as dg
import httpx
import pandas as pd

from mlops_assets.config import DatasetConfig, load_dataset_configs
from mlops_assets.features.training_set import split_frame
from mlops_assets.pipeline.runs import RunSummary, load_definitions, run_main_job
from mlops_assets.serving import running_server
from mlops_assets.settings import Settings


def sample_requests(config: DatasetConfig, training_set: pd.DataFrame, count: int) -> list[dict]:
    """Real records from the newest test rows, as a client would send them (raw feature columns)."""
    test = split_frame(training_set, "test").tail(count)
    raw_features = config.request_features
    records = []
    for _, row in test.iterrows():
        record = {name: _plain(row[name]) for name in raw_features}
        record["entity_id"] = str(row[config.entity_column])
        records.append({"record": record, "actual": _plain(row[config.target])})
    return records


def _plain(value: object) -> object:
    """numpy / pandas scalars as JSON-native values."""
    if hasattr(value, "item"):
        return value.item()
    return value


def _outcome(response: httpx.Response) -> str:
    """An answer in one line: the score, or the status and the service's message."""
    if response.status_code != 200:
        return f"{response.status_code}: {response.json().get('error', response.text)}"
    answer = response.json()
    return f"{answer['entity_id']}: score={answer['score']:.3f} label={answer['label']} model v{answer['model_version']}"


def run_demo(settings: Settings, echo=print, predictions_per_dataset: int = 3) -> RunSummary:
    settings.export()
    configs = load_dataset_configs(settings.configs)
    echo(f"MLOPS_HOME: {settings.home}")
    echo(f"datasets:   {', '.join(c.name for c in configs)} (from {settings.configs})\n")

    started = time.perf_counter()
    echo("1. Materializing the whole asset graph (Dagster, in-process, SQLite instance)...")
    summary = run_main_job(settings, log_level="WARNING")
    echo(summary.table())
    echo(summary.models_table())
    echo(f"   run {summary.run_id}: {'success' if summary.success else 'FAILED'} in {time.perf_counter() - started:.1f} s\n")
    if not summary.success:
        return summary

    definitions = load_definitions(settings)
    instance = dg.DagsterInstance.get()
    echo("2. Starting the BentoML service (champion from the MLflow registry)...")
    with running_server(settings, configs) as server:
        echo(f"   ready at {server.url}\n")
        echo("3. Real HTTP predictions:")
        for config in configs:
            logging.disable(logging.INFO)  # the IO manager's debug lines are noise here
            try:
                training_set = definitions.load_asset_value([config.name, "training_set"], instance=instance)
            finally:
                logging.disable(logging.NOTSET)
            for sample in sample_requests(config, training_set, predictions_per_dataset):
                body = {"dataset": config.name, "record": sample["record"]}
                answer = httpx.post(f"{server.url}/predict", json=body, timeout=30).json()
                echo(f"   POST /predict {config.name} {config.entity_column}={answer['entity_id']}: "
                     f"score={answer['score']:.3f} label={answer['label']} (actual {sample['actual']}) "
                     f"model v{answer['model_version']}")
            by_id = {"dataset": config.name, "record": {"entity_id": sample["record"]["entity_id"]}}
            response = httpx.post(f"{server.url}/predict", json=by_id, timeout=30)
            echo(f"   POST /predict {config.name} by {config.entity_column} alone {json.dumps(by_id['record'])} "
                 f"(features from the online store) -> {_outcome(response)}")
            bad = {"dataset": config.name, "record": {config.features[0]: "not a number"}}
            response = httpx.post(f"{server.url}/predict", json=bad, timeout=30)
            first = response.json()["detail"][0]
            echo(f"   POST /predict with a bad record -> {response.status_code}: "
                 f"{'.'.join(map(str, first['loc']))}: {first['msg']}")
        echo("\n   try it yourself after `mlops serve` (a whole record, or only an entity id):\n"
             f"   curl -s -X POST http://127.0.0.1:3001/predict -H 'content-type: application/json' \\\n"
             f"     -d '{json.dumps({'dataset': configs[0].name, 'record': sample['record']})}'\n"
             f"   curl -s -X POST http://127.0.0.1:3001/predict -H 'content-type: application/json' \\\n"
             f"     -d '{json.dumps({'dataset': configs[0].name, 'record': {'entity_id': sample['record']['entity_id']}})}'")
    echo("   service stopped.\n")
    echo("Next:")
    echo("  .venv/bin/mlops ui          # Dagster UI on http://127.0.0.1:3000: lineage, metadata, checks")
    echo("  .venv/bin/mlops mlflow-ui   # MLflow UI on http://127.0.0.1:5000: runs, registry, aliases")
    echo("  .venv/bin/mlops serve       # the prediction service on http://127.0.0.1:3001")
    echo(f"  reports (model card, drift HTML): {settings.reports}")
    return summary
