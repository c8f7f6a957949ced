"""The baseline for benchmarks/serving.py: a bare BentoML service that only scores the champion.

Same request type, same BentoML settings (workers, no access log, OMP_NUM_THREADS=1) as
ours, but no routing, no batching, no prediction log, no metrics of its own: each
request is one DataFrame and one ``predict_proba`` (derived features included, as the
model needs them). Ours divided by this is what routing, batching and logging cost.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import bentoml  # noqa: E402
import pandas as pd  # noqa: E402

from bento.schemas import request_types  # noqa: E402
from mlops_assets.config import load_dataset_configs  # noqa: E402
from mlops_assets.settings import Settings  # noqa: E402
from mlops_assets.training.registry import load_champion  # noqa: E402

SETTINGS = Settings.from_env()
CONFIG = load_dataset_configs(SETTINGS.configs, require_source=False)[0]
PredictRequest = request_types([CONFIG])["predict"]


@bentoml.service(name="bare_predictor", workers=int(os.environ.get("MLOPS_SERVE_WORKERS", "1")),
                 traffic={"timeout": 30}, logging={"access": {"enabled": False}})
class BarePredictor:
    def __init__(self) -> None:
        self.model = load_champion(SETTINGS, CONFIG)

    @bentoml.api(route="/predict")
    def predict(self, request: PredictRequest, /) -> dict:
        record = request.root.record.model_dump()
        entity_id = record.pop("entity_id", None)
        score = float(self.model.score(pd.DataFrame([record]))[0])
        return {"entity_id": entity_id, "score": score, "label": int(score >= self.model.decision_threshold),
                "model_version": self.model.version}
