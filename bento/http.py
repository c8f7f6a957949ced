"""HTTP plumbing around the service's endpoints: body limit, admin token, GET routes, the API page.

Two pure ASGI middlewares (cheap: no per-request objects on the happy path) and a small
Starlette app that BentoML mounts next to the ``@bentoml.api`` endpoints for what
BentoML's API decorator cannot express: GET routes and our own document and page.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from bento import openapi, schemas
from mlops_assets.serving.deployment import DatasetDeployment, ScoringModel
from mlops_assets.serving.experiments import Experiment
from mlops_assets.serving.predictor import NotServedError, Predictor

JSON = "application/json"


def error_body(message: str, detail: list[dict] | None = None) -> bytes:
    return json.dumps({"error": message, "detail": detail or []}).encode()


async def _send(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", JSON.encode()), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Answers 413 to a body over ``max_bytes``, before any endpoint reads it.

    A declared Content-Length is checked at once; a chunked body is counted as it
    arrives and refused when it passes the limit.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _refusal(self, size: int | str) -> bytes:
        return error_body(f"request body of {size} bytes is over the limit of {self.max_bytes} (MLOPS_MAX_BODY_BYTES)")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
                break
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return await _send(send, 400, error_body("Content-Length is not a number"))
            if size > self.max_bytes:
                return await _send(send, 413, self._refusal(size))
            return await self.app(scope, receive, send)
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        # No declared length (chunked): read it all, up to the limit, then hand it on.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await _send(send, 413, self._refusal(f"more than {self.max_bytes}"))
            if not message.get("more_body", False):
                break
        body, delivered = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


class JsonOnly:
    """A body that says it is not JSON gets 415 before BentoML tries to parse it as a form."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for name, value in scope["headers"]:
                if name == b"content-type":
                    media_type = value.split(b";", 1)[0].strip().lower()
                    if media_type != b"application/json":
                        return await _send(send, 415, error_body(
                            f"send the body as application/json, not {media_type.decode(errors='replace')!r}"))
                    break
        return await self.app(scope, receive, send)


class AdminToken:
    """Every ``/admin/`` request needs ``Authorization: Bearer <MLOPS_ADMIN_TOKEN>``; else 401, nothing runs."""

    PREFIX = "/admin/"

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.PREFIX):
            return await self.app(scope, receive, send)
        challenge = [(b"www-authenticate", b'Bearer realm="mlops admin"')]
        if self.token is None:
            return await _send(send, 401, error_body(
                "admin endpoints are disabled: start the service with MLOPS_ADMIN_TOKEN set"), challenge)
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, credential = given.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(credential.strip(), self.token):
            return await _send(send, 401, error_body(
                "admin endpoints need 'Authorization: Bearer <MLOPS_ADMIN_TOKEN>'"), challenge)
        return await self.app(scope, receive, send)


# GET routes and the API page --------------------------------------------------------------

def _predictor(request: Request) -> Predictor:
    return request.app.state.predictor


def json_response(model: Any, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status, media_type=JSON)


def error_response(status: int, message: str, detail: list[dict] | None = None) -> Response:
    return Response(error_body(message, detail), status_code=status, media_type=JSON)


async def index(request: Request) -> Response:
    return HTMLResponse(openapi.page())


def experiment_state(experiment: Experiment | None) -> schemas.ExperimentState | None:
    if experiment is None:
        return None
    return schemas.ExperimentState(
        id=experiment.id, dataset=experiment.dataset, mode=experiment.mode, split=experiment.split,
        champion_alias=experiment.champion_alias, challenger_alias=experiment.challenger_alias,
        status=experiment.status, started_at=experiment.started_at, phase_started_at=experiment.phase_started_at,
        stopped_at=experiment.stopped_at, changed_by=experiment.changed_by, note=experiment.note)


def _served(model: ScoringModel | None) -> schemas.ServedVersion | None:
    if model is None:
        return None
    return schemas.ServedVersion(alias=model.alias, version=model.version, run_id=model.served.run_id,
                                 threshold=model.threshold, loaded_at=model.loaded_at,
                                 learned_values={k: len(v) for k, v in model.learned_values.items()},
                                 inference_path=model.inference.name, inference_runtime=model.inference.runtime,
                                 inference_check=model.inference.reason)


def dataset_models(deployment: DatasetDeployment) -> schemas.DatasetModels:
    problem = deployment.problem
    experiment = deployment.experiment
    if problem is None and experiment is not None and experiment.splits_traffic and deployment.challenger is None:
        problem = f"experiment {experiment.id} waits for a version holding the alias '{experiment.challenger_alias}'"
    return schemas.DatasetModels(champion=_served(deployment.champion), challenger=_served(deployment.challenger),
                                 experiment=experiment_state(experiment),
                                 splitting_traffic=deployment.running_experiment is not None, problem=problem)


async def models(request: Request) -> Response:
    deployments = _predictor(request).deployments
    return json_response(schemas.ModelsResponse(datasets={name: dataset_models(d) for name, d in deployments.items()}))


_documents: dict[tuple, dict] = {}


async def document(request: Request) -> Response:
    """Built from the loaded champions (examples, learned values), again only when one changes."""
    predictor = _predictor(request)
    champions = {name: d.champion for name, d in predictor.deployments.items()}
    key = tuple((name, id(model)) for name, model in sorted(champions.items()))
    if key not in _documents:
        configs = list(predictor.configs.values())
        examples = {name: model.example if model else None for name, model in champions.items()}
        learned = {name: {column: sorted(values) for column, values in model.learned_values.items()}
                   for name, model in champions.items() if model is not None}
        _documents.clear()
        _documents[key] = openapi.build_document(configs, examples, learned)
    return JSONResponse(_documents[key])


async def experiment(request: Request) -> Response:
    predictor = _predictor(request)
    datasets = list(predictor.configs)
    unknown = sorted(set(request.query_params) - {"dataset"})
    if unknown:
        return error_response(400, f"unknown query parameter(s) {unknown}", [
            {"type": "extra_forbidden", "loc": ["query", name], "msg": "Extra inputs are not permitted"}
            for name in unknown])
    dataset = request.query_params.get("dataset")
    if dataset is None:
        if len(datasets) > 1:
            return error_response(400, f"several datasets are served: give ?dataset= one of {datasets}", [
                {"type": "missing", "loc": ["query", "dataset"], "msg": "Field required"}])
        dataset = datasets[0]
    if dataset not in datasets:
        return error_response(400, f"dataset {dataset!r} is not one of {datasets}", [
            {"type": "enum", "loc": ["query", "dataset"], "msg": f"Input should be one of {datasets}"}])
    try:
        report = await anyio.to_thread.run_sync(predictor.report, dataset)
    except NotServedError as exc:
        return error_response(404, str(exc))
    return json_response(report)


routes = Starlette(routes=[
    Route("/", index, methods=["GET"]),
    Route("/docs.json", document, methods=["GET"]),
    Route("/models", models, methods=["GET"]),
    Route("/experiment", experiment, methods=["GET"]),
])
