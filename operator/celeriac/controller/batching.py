"""Coalesces the signal reads of pools that tick together into one batch.

Each pool's daemon asks for its own signals; asks that arrive within `window_s` of
each other go to the reader as one list, so the reader can make one pipelined
round trip per Redis server however many pools there are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from celeriac.controller import metrics

Q = TypeVar("Q")
R = TypeVar("R")


class Batcher(Generic[Q, R]):
    def __init__(self, read_many: Callable[[Sequence[Q]], Sequence[R]], window_s: float) -> None:
        self._read_many = read_many
        self._window_s = window_s
        self._pending: list[tuple[Q, asyncio.Future[R]]] = []
        self._flush_task: asyncio.Task[None] | None = None

    async def read(self, query: Q) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((query, future))
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush_later())
        return await future

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._window_s)
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            with metrics.SIGNALS_SECONDS.time():
                results = await asyncio.to_thread(self._read_many, [q for q, _ in batch])
        except Exception as exc:  # noqa: BLE001 - handed to every waiting pool, which reports it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
