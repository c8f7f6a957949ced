"""The prediction service: each dataset's champion (and challenger) from the MLflow registry, over HTTP.

Start it with ``mlops serve`` (which checks a champion exists first and sets the worker
count). This class only wires HTTP to the plain modules in ``mlops_assets/serving``:
the :class:`~mlops_assets.serving.predictor.Predictor` routes, scores, logs and keeps
the models current; ``bento/schemas.py`` is the HTTP contract; ``bento/http.py`` holds
the body limit, the admin token, the GET routes and the API page.
"""

import os
import sys

# HistGradientBoosting's OpenMP threads would spin on every core in every worker.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The prediction log's writer thread holds the GIL ~5 ms per flush (5 a second under load);
# with the default 5 ms switch interval each flush stalled a request by up to that much.
sys.setswitchinterval(0.0005)

import functools  # noqa: E402
import json  # noqa: E402

import anyio.to_thread  # noqa: E402
import bentoml  # noqa: E402
from starlette.responses import Response  # noqa: E402

from bento import governance, http, schemas, traffic  # noqa: E402
from mlops_assets.config import load_dataset_configs  # noqa: E402
from mlops_assets.features.online_store import OnlineStoreError  # noqa: E402
from mlops_assets.governance.online import Explainer  # noqa: E402
from mlops_assets.governance.online import method as explanation_method  # noqa: E402
from mlops_assets.serving.experiments import ExperimentError  # noqa: E402
from mlops_assets.serving.metrics import serving_metrics  # noqa: E402
from mlops_assets.serving.options import ServingOptions  # noqa: E402
from mlops_assets.serving.predictor import (  # noqa: E402
    Answer,
    FeaturesUnavailableError,
    InvalidRecordError,
    NotServedError,
    Predictor,
)
from mlops_assets.settings import Settings  # noqa: E402

traffic.install()  # before BentoML builds the worker's middleware stack
SETTINGS = Settings.from_env()
CONFIGS = load_dataset_configs(SETTINGS.configs, require_source=False)  # serving never reads the rows
OPTIONS = ServingOptions.from_env()
TYPES = schemas.request_types(CONFIGS)
PredictRequest, BatchRequest, FeedbackRequest = TYPES["predict"], TYPES["batch"], TYPES["feedback"]
ExplainRequest = schemas.explain_request_type(PredictRequest)
JSON = "application/json"
# Answered with a message by _refusal; fields left out of a record are sent unset (exclude_unset): the
# predictor fetches them from the online feature store by entity_id.
PREDICTION_ERRORS = (NotServedError, InvalidRecordError, FeaturesUnavailableError, OnlineStoreError)


def _location(dataset: str, field: str) -> tuple:
    """Where records sit in the body, as pydantic reports it: a union of datasets puts the dataset first."""
    return (dataset, field) if len(CONFIGS) > 1 else (field,)


def _json(payload: dict, status: int = 200) -> Response:
    return Response(json.dumps(payload), status_code=status, media_type=JSON)


def _prediction(dataset: str, answer: Answer) -> dict:
    return {"request_id": answer.request_id, "dataset": dataset, "entity_id": answer.entity_id,
            "score": answer.score, "label": answer.label, "threshold": answer.threshold,
            "model_version": answer.model_version, "variant": answer.variant, "experiment_id": answer.experiment_id}


def _refusal(exc: Exception) -> Response | None:
    """Errors the service answers itself, with the message (BentoML would blank a 5xx one)."""
    if isinstance(exc, NotServedError):
        return Response(http.error_body(str(exc)), status_code=404, media_type=JSON)
    if isinstance(exc, InvalidRecordError):
        title = f"{len(exc.details)} validation error{'s' if len(exc.details) > 1 else ''} for the served model"
        return Response(http.error_body(title, exc.details), status_code=400, media_type=JSON)
    if isinstance(exc, ExperimentError):
        return Response(http.error_body(str(exc)), status_code=409, media_type=JSON)
    if isinstance(exc, FeaturesUnavailableError):
        return Response(http.error_body(str(exc), exc.details), status_code=exc.status, media_type=JSON)
    if isinstance(exc, OnlineStoreError):
        return Response(http.error_body(f"{exc}; send every feature inline meanwhile"), status_code=503,
                        media_type=JSON)
    return None


@bentoml.service(
    name="mlops_predictor",
    workers=OPTIONS.workers,
    traffic={"timeout": 30},
    # Every prediction is a row in the prediction log; a second access-log line per request
    # would halve the throughput (measured: benchmarks/serving.py).
    logging={"access": {"enabled": False}},
    # Without an exporter every span is made and dropped: a third of a request's CPU on the hot routes.
    # To trace them, override: BENTOML_CONFIG_OPTIONS='services.mlops_predictor.tracing.excluded_urls=/livez'.
    tracing={"excluded_urls": ["/predict", "/predict_batch", "/feedback"]},
)
@bentoml.asgi_app(http.routes, path="/", name="mlops_routes")
@bentoml.asgi_app(governance.routes, path="/approvals", name="mlops_approvals")
class MLOpsPredictor:
    """Scores records with the champion (or, in an experiment, the challenger) of the dataset each request names."""

    def __init__(self) -> None:
        self.predictor = Predictor(SETTINGS, CONFIGS, OPTIONS, serving_metrics())
        http.routes.state.predictor = self.predictor
        governance.routes.state.predictor = self.predictor
        self.explainer = Explainer(SETTINGS)
        # An explanation scores ~10,000 rows: one at a time per worker, so predictions keep their share of the CPU.
        self.explaining = anyio.CapacityLimiter(1)
        self.predictor.start_watching()

    @bentoml.on_shutdown
    async def flush_prediction_log(self) -> None:
        """Runs after the last in-flight request is answered: nothing answered is lost."""
        await self.predictor.close()

    @bentoml.api(route="/predict")
    async def predict(self, request: PredictRequest, /) -> schemas.Prediction:
        """Score one record: {"dataset": "churn", "record": {...raw feature columns..., "entity_id": "..."}}.

        Columns left out are fetched from the online feature store by ``entity_id``.
        """
        body = request.root
        try:
            (answer,) = await self.predictor.predict(body.dataset, [body.record.model_dump(exclude_unset=True)],
                                                     location=_location(body.dataset, "record"))
        except PREDICTION_ERRORS as exc:
            return _refusal(exc)
        if answer.error:
            return Response(http.error_body(f"the model could not score this record: {answer.error}"),
                            status_code=500, media_type=JSON)
        return _json(_prediction(body.dataset, answer))

    @bentoml.api(route="/predict_batch")
    async def predict_batch(self, request: BatchRequest, /) -> schemas.BatchPrediction:
        """Score 1 to 1,000 records of one dataset, each routed and logged on its own."""
        body = request.root
        try:
            records = [r.model_dump(exclude_unset=True) for r in body.records]
            answers = await self.predictor.predict(body.dataset, records, location=_location(body.dataset, "records"))
        except PREDICTION_ERRORS as exc:
            return _refusal(exc)
        experiment_id = next((a.experiment_id for a in answers if a.experiment_id), None)
        return _json({"dataset": body.dataset, "experiment_id": experiment_id, "predictions": [
            {"request_id": a.request_id, "entity_id": a.entity_id, "score": a.score, "label": a.label,
             "threshold": a.threshold, "model_version": a.model_version, "variant": a.variant, "error": a.error}
            for a in answers]})

    @bentoml.api(route="/feedback")
    async def feedback(self, request: FeedbackRequest, /) -> schemas.FeedbackResult:
        """Record the observed outcome of a request (by request_id) or of an entity (by entity_id)."""
        body = request.root
        try:
            result = await self.predictor.feedback(body.dataset, float(body.outcome), body.request_id, body.entity_id)
        except NotServedError as exc:
            return _refusal(exc)
        if result.matched == 0:
            which = f"request_id {body.request_id!r}" if body.request_id else f"entity_id {body.entity_id!r}"
            return Response(http.error_body(f"no prediction of dataset {body.dataset!r} has {which}"),
                            status_code=404, media_type=JSON)
        return _json({"dataset": body.dataset, "matched": result.matched, "updated": result.updated})

    @bentoml.api(route="/explain")
    async def explain(self, request: ExplainRequest, /) -> schemas.Explanation:
        """Why the champion scores this record as it does: each raw input's contribution, and a sentence."""
        body = request.root
        record = body.record.model_dump(exclude_unset=True)  # left-out features come from the online store
        entity_id = record.pop("entity_id", None)
        location = _location(body.dataset, "record")
        try:
            deployment = self.predictor.deployment(body.dataset)
            (record,) = await self.predictor.prepared_records(deployment, [entity_id], [record], location)
            champion = deployment.champion
            explanation = await anyio.to_thread.run_sync(self.explainer.explain, champion.served, record, entity_id,
                                                         limiter=self.explaining)
        except PREDICTION_ERRORS as exc:
            return _refusal(exc)
        except Exception as exc:  # noqa: BLE001 - governance refusals are answered; anything else is re-raised
            answer = governance.refusal(exc)
            if answer is None:
                raise
            return answer
        return Response(governance.explanation_body(body.dataset, champion.version, champion.alias, explanation,
                                                    explanation_method(champion.served.config)).model_dump_json(),
                        media_type=JSON)

    @bentoml.api(route="/admin/experiment/start")
    async def start_experiment(self, request: schemas.StartExperiment, /) -> schemas.ExperimentState:
        """Start an experiment or change the running one (admin token)."""
        split = None if request.challenger_percent is None else (
            f"{100 - request.challenger_percent:g}/{request.challenger_percent:g}")
        try:
            experiment = await self._admin(self.predictor.start_experiment, request.dataset, experiment_id=request.experiment_id,
                                           mode=request.mode, split=split, champion=request.champion,
                                           challenger=request.challenger, by="admin endpoint", note=request.note)
        except (NotServedError, ExperimentError) as exc:
            return _refusal(exc)
        return Response(http.experiment_state(experiment).model_dump_json(), media_type=JSON)

    @bentoml.api(route="/admin/experiment/stop")
    async def stop_experiment(self, request: schemas.StopExperiment, /) -> schemas.ExperimentState:
        """Stop the experiment: the champion answers everyone (admin token)."""
        try:
            experiment = await self._admin(self.predictor.stop_experiment, request.dataset, by="admin endpoint",
                                           note=request.note)
        except (NotServedError, ExperimentError) as exc:
            return _refusal(exc)
        return Response(http.experiment_state(experiment).model_dump_json(), media_type=JSON)

    @bentoml.api(route="/admin/reload")
    async def reload(self, request: schemas.ReloadRequest, /) -> schemas.DatasetModels:
        """Re-read the registry aliases now; a moved alias is loaded in the background and swapped in (admin token)."""
        try:
            deployment = await self._admin(self.predictor.reload, request.dataset)
        except NotServedError as exc:
            return _refusal(exc)
        return Response(http.dataset_models(deployment).model_dump_json(), media_type=JSON)

    @staticmethod
    async def _admin(call, *args, **kwargs):
        """Admin changes touch the database and may load a model: off the event loop."""
        return await anyio.to_thread.run_sync(functools.partial(call, *args, **kwargs))


# In this order, outermost first: size, then the admin token, then the media type.
MLOpsPredictor.add_asgi_middleware(http.BodyLimit, max_bytes=OPTIONS.max_body_bytes)
MLOpsPredictor.add_asgi_middleware(http.AdminToken, token=OPTIONS.admin_token)
MLOpsPredictor.add_asgi_middleware(http.JsonOnly)
