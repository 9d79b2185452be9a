"""Pools that tick together share one signal read: the Batcher coalesces their asks, and the
gather path turns each pool's spec into its query and hands each pool its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from celeriac.api.pool import CeleryWorkerPoolSpec
from celeriac.controller import gather
from celeriac.controller.batching import Batcher
from celeriac.signals.model import PoolSignals
from celeriac.signals.reader import PoolQuery
from tests.support.redis_server import RedisServer


def _spec(queue: str) -> CeleryWorkerPoolSpec:
    return CeleryWorkerPoolSpec.model_validate(
        {
            "queues": [queue],
            "template": {"image": "w:1", "app": "proj"},
            "broker": {"urlSecretRef": {"name": "b"}},
        }
    )


def test_pools_asking_within_the_window_share_one_read_and_get_their_own_answer(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    for i in range(5):
        client.lpush(f"q{i}", *[b"x"] * (i + 1))
    batches: list[int] = []

    def read_many(queries: Sequence[PoolQuery]) -> list[PoolSignals]:
        batches.append(len(queries))
        return gather.read_many(queries)

    async def ask_all() -> list[PoolSignals]:
        batcher = Batcher(read_many, window_s=0.2)
        queries = [
            gather.make_query(f"ns/p{i}", redis_server.url, _spec(f"q{i}")) for i in range(5)
        ]
        return await asyncio.gather(*(batcher.read(q) for q in queries))

    results = asyncio.run(ask_all())
    assert batches == [5]
    assert [r.waiting for r in results] == [1, 2, 3, 4, 5]


def test_a_failed_batch_reaches_every_waiting_pool_as_its_error() -> None:
    def broken(queries: Sequence[PoolQuery]) -> list[PoolSignals]:
        raise RuntimeError("reader crashed")

    async def ask_two() -> list[BaseException | PoolSignals]:
        batcher: Batcher[str, PoolSignals] = Batcher(broken, window_s=0.05)
        return await asyncio.gather(batcher.read("a"), batcher.read("b"), return_exceptions=True)

    results = asyncio.run(ask_two())
    assert [str(r) for r in results] == ["reader crashed", "reader crashed"]


def test_the_pool_spec_decides_the_query() -> None:
    spec = CeleryWorkerPoolSpec.model_validate(
        {
            "queues": ["a", "b"],
            "template": {"image": "w:1", "app": "proj"},
            "broker": {
                "urlSecretRef": {"name": "b"},
                "transport": {"globalKeyprefix": "app:", "prioritySteps": [0, 5]},
            },
        }
    )
    query = gather.make_query("ns/p", "redis://127.0.0.1:1/0", spec)
    assert (query.queues, query.global_keyprefix, query.priority_steps) == (
        ("a", "b"),
        "app:",
        (0, 5),
    )
