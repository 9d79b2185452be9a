"""Pod CPU: one metrics.k8s.io LIST per namespace serves every pool in it while fresh."""

from __future__ import annotations

import asyncio
from typing import Any

from celeriac.controller.pod_cpu import NamespaceCPU
from celeriac.signals.model import PodCPU


class CountingReader:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def read(self, namespace: str, selector: str) -> tuple[list[PodCPU] | None, str | None]:
        self.calls.append((namespace, selector))
        return [PodCPU(pod=p, cpu_millicores=100.0, ts=0.0) for p in ("a-1", "a-2", "b-1")], None


def test_pools_of_a_namespace_share_one_list_and_see_only_their_pods() -> None:
    reader = CountingReader()
    cache = NamespaceCPU(reader)  # type: ignore[arg-type]

    async def two_pools() -> list[Any]:
        return await asyncio.gather(
            cache.for_pods("ns", ["a-1", "a-2"]), cache.for_pods("ns", ["b-1"])
        )

    (a, _), (b, _) = asyncio.run(two_pools())
    assert reader.calls == [("ns", "celeriac.dev/pool")]
    assert [p.pod for p in a] == ["a-1", "a-2"]
    assert [p.pod for p in b] == ["b-1"]


def test_an_expired_reading_is_listed_again() -> None:
    reader = CountingReader()
    cache = NamespaceCPU(reader, ttl_s=0.0)  # type: ignore[arg-type]
    asyncio.run(cache.for_pods("ns", ["a-1"]))
    asyncio.run(cache.for_pods("ns", ["a-1"]))
    assert len(reader.calls) == 2
