"""Sharing one model call among the requests that arrive together (adaptive batching without a timer).

A scikit-learn pipeline costs about the same for 1 row as for 64: per-call Python
overhead, not arithmetic (DESIGN.md, "Inference speed"). So a worker scores every
record that is waiting in one call. There is no fixed wait, unlike BentoML's
``batchable=True`` (whose ``max_latency_ms`` trades 503s against latency): the first
request of an idle worker is scored at once, and the requests that arrive while a call
runs form the next batch. A lone client never waits for company; 64 clients share
calls of a dozen or more records. Nothing is shed.

The call runs on the event loop thread: the model holds the GIL for most of its work
anyway, and a thread hand-off would add latency at one client.

If a batched call raises, each of its records is scored alone, so one bad record fails
its own request and no other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")


class ScoringError(Exception):
    """The model raised while scoring this record; the message says what it raised."""


class MicroBatcher(Generic[Item]):
    """Collects items submitted on one event loop and hands them to ``score`` in batches."""

    def __init__(self, score: Callable[[Sequence[Item]], Sequence[float]], max_batch_size: int = 128) -> None:
        self.score = score
        self.max_batch_size = max_batch_size
        self.calls = 0
        self.items = 0
        self._pending: list[tuple[Item, asyncio.Future[float]]] = []
        self._scheduled = False

    async def submit(self, item: Item) -> float:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[float] = loop.create_future()
        self._pending.append((item, future))
        if not self._scheduled:
            self._scheduled = True
            # Runs after the callbacks already ready: requests parsed in the same loop turn join this batch.
            loop.call_soon(self._drain)
        return await future

    def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.max_batch_size]
                del self._pending[: self.max_batch_size]
                self._score_batch(batch)
        finally:
            self._scheduled = False

    def _score_batch(self, batch: list[tuple[Item, asyncio.Future[float]]]) -> None:
        self.calls += 1
        self.items += len(batch)
        try:
            scores = self.score([item for item, _ in batch])
            if len(scores) != len(batch):
                raise ValueError(f"the model returned {len(scores)} scores for {len(batch)} records")
        except Exception as exc:
            if len(batch) > 1:  # find the record that failed; the others get their scores
                for single in batch:
                    self._score_batch([single])
                return
            future = batch[0][1]
            if not future.done():
                future.set_exception(ScoringError(f"{type(exc).__name__}: {exc}"))
            return
        for (_, future), score in zip(batch, scores):
            if not future.done():  # a client that went away leaves a cancelled future
                future.set_result(float(score))
