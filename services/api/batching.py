"""Batches of concurrent calls: the calls that arrive while one batch is on its way to PostgreSQL go together in the
next one, so many requests share one round trip (and, for the access log, one commit) instead of queueing for one
each. A call returns only once its own batch answered, and a failed batch fails every call in it."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")


class Batcher(Generic[K, R]):
    """`await batcher(key)` -> run(keys of its batch)[its position]. One batch runs at a time, in arrival order.

    A request alone waits one round trip, as before; under load each waits for the batch in flight and then its
    own, about two round trips, but the round trips (and their Python) are shared."""

    def __init__(self, run: Callable[[list[K]], Awaitable[list[R]]], max_batch: int = 200) -> None:
        self.run = run
        self.max_batch = max_batch
        self.pending: list[tuple[K, asyncio.Future[R]]] = []
        self.flusher: asyncio.Task[None] | None = None
        self.batches = self.calls = 0

    async def __call__(self, key: K) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self.pending.append((key, future))
        if self.flusher is None:
            self.flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending[:self.max_batch], self.pending[self.max_batch:]
                try:
                    results = await self.run([key for key, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"a batch of {len(batch)} calls got {len(results)} results")
                except Exception as exc:  # noqa: BLE001 - each waiting call gets the failure as its own
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:  # cancelled (shut-down): nobody in this batch gets an answer
                    for _, future in batch:
                        future.cancel()
                    raise
                self.batches += 1
                self.calls += len(batch)
                for (_, future), result in zip(batch, results):
                    if not future.done():
                        future.set_result(result)
        except BaseException:
            for _, future in self.pending:
                future.cancel()
            self.pending = []
            raise
        finally:
            self.flusher = None
