"""The wake-up listener learns of new pools in one update, not one update per pool."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

from celeriac.controller.batching import Batcher
from celeriac.controller.runtime import WATCH_DEBOUNCE_S, Runtime
from celeriac.controller.settings import OperatorSettings
from celeriac.signals.reader import PoolQuery
from celeriac.signals.wakeup import WakeupListener

POOLS = 200


class RecordingListener:
    def __init__(self) -> None:
        self.updates: list[list[str]] = []

    def update(self, queries: Iterable[PoolQuery]) -> None:
        self.updates.append(sorted(q.pool_id for q in queries))


def _query(i: int) -> PoolQuery:
    return PoolQuery(
        pool_id=f"ns/p{i:03d}",
        broker_url="redis://127.0.0.1:6379/0",
        queues=(f"q{i}",),
        global_keyprefix="",
        priority_steps=(0, 3, 6, 9),
        sep="\x06\x16",
        master_name=None,
    )


def test_a_start_up_of_many_pools_is_one_listener_update_with_all_of_them() -> None:
    listener = RecordingListener()

    def never(_: Any) -> list[Any]:
        raise AssertionError("no signal read in this test")

    runtime = Runtime(
        settings=OperatorSettings(wakeup=False, pod_metrics=False),
        kube=cast(Any, None),
        batcher=Batcher(never, 0.0),
        watcher=cast(WakeupListener, listener),
    )

    async def pools_appear_then_one_goes() -> None:
        runtime.loop = asyncio.get_running_loop()
        for i in range(POOLS):
            runtime.queries[f"ns/p{i:03d}"] = _query(i)
            runtime._watch_soon()
        await asyncio.sleep(WATCH_DEBOUNCE_S * 2)
        runtime.forget("ns/p000")
        await asyncio.sleep(WATCH_DEBOUNCE_S * 2)

    asyncio.run(pools_appear_then_one_goes())
    assert len(listener.updates) == 2
    assert listener.updates[0] == [f"ns/p{i:03d}" for i in range(POOLS)]
    assert listener.updates[1] == [f"ns/p{i:03d}" for i in range(1, POOLS)]
