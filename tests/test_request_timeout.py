"""The service's request timeout (bento/traffic.py): a 504 when no answer starts in time,
and no timer left behind by a request that was answered."""

from __future__ import annotations

import asyncio
import gc

import pytest
from bentoml._internal.server.http import traffic as bentoml_traffic

from bento import traffic


async def answer(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def call(app, path: str = "/predict") -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "method": "POST", "headers": []}, receive, send)
    return sent


def pending_timers() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, asyncio.TimerHandle) and not o.cancelled())


@pytest.mark.parametrize("middleware, left_behind", [(traffic.TimeoutMiddleware, 0),
                                                     (bentoml_traffic.TimeoutMiddleware, 500)],
                         ids=["ours", "bentoml's own (why ours exists; if this fails, BentoML fixed it: drop ours)"])
def test_answered_requests_leave_no_timer_behind(middleware, left_behind):
    app = middleware(answer, timeout=3600)

    async def many() -> int:
        before = pending_timers()
        for _ in range(500):
            assert (await call(app))[0]["status"] == 200
        return pending_timers() - before

    assert asyncio.run(many()) == left_behind


def test_a_request_with_no_answer_within_the_timeout_gets_504():
    async def slow(scope, receive, send) -> None:
        await asyncio.sleep(5)
        await answer(scope, receive, send)

    sent = asyncio.run(call(traffic.TimeoutMiddleware(slow, timeout=0.05)))
    assert sent[0]["status"] == 504
    assert b"0.05 seconds" in sent[1]["body"]


def test_a_handler_that_raises_before_answering_propagates_at_once():
    async def broken(scope, receive, send) -> None:
        raise RuntimeError("model exploded")

    async def timed() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RuntimeError, match="model exploded"):
            await call(traffic.TimeoutMiddleware(broken, timeout=30))
        return loop.time() - started

    assert asyncio.run(timed()) < 5


def test_the_service_installs_it_where_bentoml_builds_its_middleware():
    traffic.install()
    from bentoml._internal.server.base_app import BaseAppFactory

    class App(BaseAppFactory):
        name = "test"

        def on_startup(self):  # pragma: no cover - abstract in BentoML
            return []

    built = {m.cls for m in App(timeout=30).middlewares}
    assert traffic.TimeoutMiddleware in built
