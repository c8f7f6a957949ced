"""The governance endpoints over HTTP: approvals (``/approvals/{model}/{version}``) and the explanation answer.

A small Starlette app that the service mounts at ``/approvals`` (path parameters and a
GET, which BentoML's API decorator cannot express). A decision needs the person's own
token in ``Authorization: Bearer <token>``, the same personal token ``mlops approve``
reads from ``MLOPS_TOKEN``; the work is :mod:`mlops_assets.governance.online`, so the
checks, the ledger and every refusal's message are the CLI's. Refusals: 401 (no token,
or one no one holds), 403 (no deciding role, a role not held, one's own model), 404
(unknown model or version), 409 (no roles file), 400 (a bad body), 503 (the ledger is
tampered with or unreachable); nothing is recorded on any of them.
"""

from __future__ import annotations

import functools

import anyio.to_thread
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bento import schemas
from bento.http import error_body, error_response, json_response
from mlops_assets.governance.explanations import LocalExplanation
from mlops_assets.governance.online import decide_over_http, refusal_status, served_config, version_approvals
from mlops_assets.serving.predictor import Predictor

JSON = "application/json"
CHALLENGE = {"www-authenticate": 'Bearer realm="mlops approvals"'}


def explanation_body(dataset: str, version: str, alias: str, explanation: LocalExplanation,
                     method: str) -> schemas.Explanation:
    ranked = sorted(explanation.contributions.items(), key=lambda kv: -abs(kv[1]))
    return schemas.Explanation(
        dataset=dataset, entity_id=explanation.entity_id, model_version=version, alias=alias,
        score=explanation.score, label=int(explanation.score >= explanation.threshold), threshold=explanation.threshold,
        baseline=explanation.baseline, sentence=explanation.sentence, method=method,
        contributions=[schemas.Contribution(feature=c, value=explanation.values[c], contribution=v) for c, v in ranked])


def refusal(exc: Exception) -> Response | None:
    """A governance refusal as its status and the CLI's message; None when it is not one."""
    status = refusal_status(exc)
    if status is None:
        return None
    return Response(error_body(str(exc)), status_code=status, media_type=JSON,
                    headers=CHALLENGE if status == 401 else None)


def _bearer(request: Request) -> str | None:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    return credential.strip() or None if scheme.lower() == "bearer" else None


def _predictor(request: Request) -> Predictor:
    return request.app.state.predictor


async def _blocking(call, *args):
    """The registry, the ledger and the card renderer block: off the event loop."""
    return await anyio.to_thread.run_sync(functools.partial(call, *args))


async def decide(request: Request) -> Response:
    model, version = request.path_params["model"], request.path_params["version"]
    token = _bearer(request)
    if token is None:
        return Response(error_body(
            f"cannot decide on {model} v{version}: send your personal token as 'Authorization: Bearer <token>' "
            "(`mlops governance new-token NAME` makes one); nothing recorded"),
            status_code=401, media_type=JSON, headers=CHALLENGE)
    try:
        body = schemas.ApprovalRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        return error_response(400, f"{exc.error_count()} validation error for {exc.title}",
                              exc.errors(include_context=False, include_input=False))
    predictor = _predictor(request)
    try:
        config = served_config(predictor.configs, model)
        recorded, state, warnings = await _blocking(decide_over_http, predictor.settings, config, version, token,
                                                    body.decision, body.comment, body.role)
    except Exception as exc:  # noqa: BLE001 - refusals are answered; anything else is re-raised
        answer = refusal(exc)
        if answer is None:
            raise
        return answer
    return json_response(schemas.ApprovalRecorded(recorded=recorded.to_dict(), state=state.to_dict(),
                                                  warnings=warnings))


async def state(request: Request) -> Response:
    model, version = request.path_params["model"], request.path_params["version"]
    predictor = _predictor(request)
    try:
        config = served_config(predictor.configs, model)
        approvals = await _blocking(version_approvals, predictor.settings, config, version)
    except Exception as exc:  # noqa: BLE001
        answer = refusal(exc)
        if answer is None:
            raise
        return answer
    return json_response(schemas.ApprovalStatus(**approvals.to_dict()))


async def _not_allowed(request: Request, exc: HTTPException) -> Response:
    answer = error_response(405, f"{request.method} is not allowed on {request.url.path}: GET the state, POST a decision")
    answer.headers["Allow"] = "GET, POST"  # RFC 9110: a 405 names the methods that are allowed
    return answer


routes = Starlette(
    routes=[
        Route("/{model}/{version}", state, methods=["GET"]),
        Route("/{model}/{version}", decide, methods=["POST"]),
    ],
    exception_handlers={405: _not_allowed},
)
