"""A generated MLflow run history (thousands of runs) inserted in bulk into MLflow's own schema.

Logging 100,000 runs through the client would take hours; inserting the same rows into the
tables MLflow created takes seconds. Used by the search tests and `benchmarks/experiments.py`.
The runs look like ours: studies with trials (some pruned or failed), models with test
metrics, a few deleted runs, NaN metrics, ties in start time.
"""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
from mlflow.tracking import MlflowClient

STATES = np.array(["FINISHED", "FINISHED", "FINISHED", "FAILED", "KILLED"])
FAMILIES = np.array(["hist_gradient_boosting", "logistic_regression", "random_forest"])
DATASETS = np.array(["churn", "loans", "fraud"])


def insert_run_history(tracking_uri: str, runs: int, seed: int = 0, experiment: str = "history") -> str:
    """Create ``experiment`` and insert ``runs`` generated runs; returns the experiment id."""
    client = MlflowClient(tracking_uri)
    experiment_id = client.create_experiment(experiment)
    engine = client._tracking_client.store.engine  # noqa: SLF001 - bulk insert into MLflow's tables
    rng = np.random.default_rng(seed)
    ids = [f"{seed:04x}{i:028x}" for i in range(runs)]
    start = 1_760_000_000_000 + np.sort(rng.integers(0, 10_000_000, runs))
    start[1::50] = start[0::50][: len(start[1::50])]  # ties: the order falls back to the run id
    status = rng.choice(STATES, runs)
    kind = rng.choice(np.array(["trial", "trial", "trial", "model", "study"]), runs)
    dataset = rng.choice(DATASETS, runs)
    family = rng.choice(FAMILIES, runs)
    auc = rng.uniform(0.55, 0.95, runs)
    deleted = rng.random(runs) < 0.02
    run_rows, tags, params, metrics = [], [], [], []
    for i, run_id in enumerate(ids):
        run_rows.append({
            "run_uuid": run_id, "name": f"{dataset[i]}-{kind[i]}-{i}", "source_type": "LOCAL", "source_name": "",
            "entry_point_name": "", "user_id": "tester", "status": str(status[i]), "start_time": int(start[i]),
            "end_time": int(start[i]) + int(rng.integers(100, 100_000)), "source_version": "",
            "lifecycle_stage": "deleted" if deleted[i] else "active",
            "artifact_uri": f"file:///tmp/history/{run_id}/artifacts", "experiment_id": int(experiment_id),
        })
        run_tags = {"mlflow.runName": f"{dataset[i]}-{kind[i]}-{i}", "dataset": str(dataset[i]),
                    "run_kind": str(kind[i]), "mlflow.user": "tester"}
        if kind[i] == "trial":
            run_tags["optuna.state"] = {"FINISHED": "COMPLETE", "FAILED": "FAIL", "KILLED": "PRUNED"}[str(status[i])]
            run_tags["mlflow.parentRunId"] = ids[max(0, i - 1 - i % 20)]
        tags += [{"key": k, "value": v, "run_uuid": run_id} for k, v in run_tags.items()]
        run_params = {"model_family": str(family[i]), "learning_rate": f"{rng.uniform(0.01, 0.3):.4f}",
                      "max_leaf_nodes": str(int(rng.integers(8, 64))), "dataset": str(dataset[i])}
        if i % 7:
            run_params["l2_regularization"] = f"{rng.uniform(0, 5):.3f}"
        params += [{"key": k, "value": v, "run_uuid": run_id} for k, v in run_params.items()]
        run_metrics = {"validation_roc_auc": float(auc[i]), "duration_seconds": float(rng.uniform(0.05, 3))}
        if kind[i] == "model":
            run_metrics |= {"test_roc_auc": float(auc[i] - rng.uniform(0, 0.05)), "test_brier": float(rng.uniform(0.1, 0.25))}
        if i % 97 == 0:
            run_metrics["validation_log_loss"] = float("nan")
        for key, value in run_metrics.items():
            nan = bool(np.isnan(value))
            row = {"key": key, "value": 0.0 if nan else value, "timestamp": int(start[i]), "step": 0, "is_nan": nan,
                   "run_uuid": run_id}
            metrics.append(row)
    with engine.begin() as connection:
        for table, rows in ((SqlRun, run_rows), (SqlTag, tags), (SqlParam, params), (SqlMetric, metrics),
                            (SqlLatestMetric, metrics)):
            for chunk in range(0, len(rows), 20_000):
                connection.execute(sa.insert(table.__table__), rows[chunk: chunk + 20_000])
    return experiment_id


#: Filters a person would type, over every kind of key MLflow's syntax knows.
FILTERS = [
    "",
    "metrics.validation_roc_auc > 0.9",
    "metrics.test_roc_auc >= 0.8 and params.model_family = 'hist_gradient_boosting'",
    "tags.dataset = 'churn' and tags.run_kind = 'model'",
    "tags.optuna.state != 'COMPLETE'",
    "attributes.status = 'FAILED'",
    "params.learning_rate LIKE '0.1%'",
    "tags.mlflow.runName ILIKE 'LOANS-TRIAL-1%'",
    "attributes.run_name LIKE 'fraud-study%'",
    "metrics.validation_log_loss > 0",
    "attributes.start_time > 1760005000000 and metrics.duration_seconds < 1",
    "params.l2_regularization = '1.234'",
    "attributes.run_id IN ('" + "0000" + "0" * 27 + "1', '0000" + "0" * 27 + "5')",
]
ORDERS = [(), ("metrics.validation_roc_auc DESC",), ("params.learning_rate",), ("attributes.start_time ASC", "tags.dataset")]
