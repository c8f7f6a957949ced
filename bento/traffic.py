"""BentoML's request timeout, with its timer cancelled once the response starts.

BentoML 1.4's ``TimeoutMiddleware`` schedules ``loop.call_later(timeout, ...)`` for every
request and never cancels it: each answered request leaves a timer, a future and a
context alive for the whole timeout (30 s here). At 3,000 requests a second that is
hundreds of thousands of live objects per worker, and the full garbage collections
they trigger paused the worker for 250-400 ms each (measured with ``gc.callbacks`` in
``benchmarks/serving.py`` runs): the service's p99. This subclass keeps the behaviour
(a 504 when no response has started within the timeout) and cancels the timer when the
response starts or the request ends. :func:`install` puts it where BentoML looks it up
when it builds a worker's middleware stack.
"""

from __future__ import annotations

import asyncio

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse


class TimeoutMiddleware(traffic.TimeoutMiddleware):
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        started = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, started)

        async def send_and_mark_started(message) -> None:
            if not started.done():
                started.set_result(None)
                timer.cancel()
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, receive, send_and_mark_started))
        # A handler that ends without a response (it raised) ends the wait too: its error propagates.
        handler.add_done_callback(lambda _: started.done() or started.set_result(None))
        try:
            await started
        except asyncio.TimeoutError:
            if handler.cancel():
                message = {"error": f"Not able to process the request in {self.timeout} seconds"}
                await JSONResponse(message, status_code=504)(scope, receive, send)
            return
        finally:
            timer.cancel()
        await handler


def install() -> None:
    """Make BentoML build every worker's timeout middleware from the class above."""
    traffic.TimeoutMiddleware = TimeoutMiddleware
