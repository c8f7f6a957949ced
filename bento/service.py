"""The prediction service: each dataset's champion model from the MLflow registry, over HTTP.

Start it with ``mlops serve`` (which checks a champion exists first: a service whose
``__init__`` fails restarts in a loop). Routing and scoring live in plain modules;
this class only wires them to HTTP.
"""

import os

# HistGradientBoosting's OpenMP threads would spin on every core in every worker.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import uuid  # noqa: E402

import bentoml  # noqa: E402
import pandas as pd  # noqa: E402
from bentoml.exceptions import NotFound  # noqa: E402

from bento.schemas import BatchPrediction, Prediction, ScoredRecord, request_types  # noqa: E402
from mlops_assets.config import load_dataset_configs  # noqa: E402
from mlops_assets.settings import Settings  # noqa: E402
from mlops_assets.training.registry import NoChampionError, ServedModel, load_champion  # noqa: E402

SETTINGS = Settings.from_env()
CONFIGS = load_dataset_configs(SETTINGS.configs, require_source=False)  # serving never reads the rows
PredictRequest, BatchRequest = request_types(CONFIGS)


def _frame(records: list[dict]) -> pd.DataFrame:
    return pd.DataFrame.from_records(records)


@bentoml.service(name="mlops_predictor", traffic={"timeout": 30})
class MLOpsPredictor:
    """Scores records with the champion model of the dataset each request names."""

    def __init__(self) -> None:
        self.served: dict[str, ServedModel] = {}
        self.missing: dict[str, str] = {}
        for config in CONFIGS:
            try:
                self.served[config.name] = load_champion(SETTINGS, config)
            except NoChampionError as exc:
                self.missing[config.name] = str(exc)

    def _model(self, dataset: str) -> ServedModel:
        # 404, not 503: BentoML replaces every 5xx message with a generic one, and the client
        # needs to read that this dataset has no deployed model yet.
        if dataset not in self.served:
            raise NotFound(self.missing.get(dataset, f"dataset {dataset!r} is not served"))
        return self.served[dataset]

    def _score(self, dataset: str, records: list[dict]) -> tuple[ServedModel, list[ScoredRecord]]:
        model = self._model(dataset)
        entity_ids = [r.pop("entity_id", None) for r in records]
        scores = model.score(_frame(records))
        return model, [
            ScoredRecord(entity_id=e, score=float(s), label=int(s >= model.decision_threshold))
            for e, s in zip(entity_ids, scores)
        ]

    @bentoml.api(route="/predict")
    def predict(self, request: PredictRequest, /) -> Prediction:
        """Score one record: {"dataset": "churn", "record": {...feature columns...}}."""
        model, (scored,) = self._score(request.dataset, [request.record.model_dump()])
        return Prediction(
            request_id=uuid.uuid4().hex, dataset=request.dataset, model_version=model.version,
            threshold=model.decision_threshold, **scored.model_dump(),
        )

    @bentoml.api(route="/predict_batch")
    def predict_batch(self, request: BatchRequest, /) -> BatchPrediction:
        """Score up to 1,000 records: {"dataset": "churn", "records": [{...}, ...]}."""
        model, scored = self._score(request.dataset, [r.model_dump() for r in request.records])
        return BatchPrediction(
            request_id=uuid.uuid4().hex, dataset=request.dataset, model_version=model.version,
            threshold=model.decision_threshold, predictions=scored,
        )

    @bentoml.api(route="/models")
    def models(self) -> dict:
        """Which model version serves each dataset, and which datasets have none."""
        return {
            "served": {name: {"model_version": m.version, "run_id": m.run_id, "threshold": m.decision_threshold}
                       for name, m in self.served.items()},
            "not_served": self.missing,
        }
