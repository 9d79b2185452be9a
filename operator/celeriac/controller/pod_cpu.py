"""Pod CPU for every pool of a namespace from one metrics.k8s.io LIST, shared for a while.

metrics-server samples every ~15 s; asking it once per pool per tick cost the apiserver a
LIST per pool (N pools, N LISTs every 5 s). One LIST of every pool pod in a namespace serves
every pool there until it is `ttl_s` old.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from celeriac.actuators.render import POOL_LABEL
from celeriac.signals.model import PodCPU
from celeriac.signals.pod_metrics import PodMetricsReader


@dataclass
class NamespaceCPU:
    reader: PodMetricsReader
    ttl_s: float = 5.0
    _cache: dict[str, tuple[float, list[PodCPU] | None, str | None]] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def for_pods(
        self, namespace: str, pods: Iterable[str]
    ) -> tuple[list[PodCPU] | None, str | None]:
        samples, error = await self._namespace(namespace)
        if samples is None:
            return None, error
        wanted = set(pods)
        return [s for s in samples if s.pod in wanted], None

    async def _namespace(self, namespace: str) -> tuple[list[PodCPU] | None, str | None]:
        lock = self._locks.setdefault(namespace, asyncio.Lock())
        async with lock:  # one LIST in flight per namespace; the others wait for its answer
            cached = self._cache.get(namespace)
            if cached is not None and time.monotonic() - cached[0] < self.ttl_s:
                return cached[1], cached[2]
            samples, error = await asyncio.to_thread(self.reader.read, namespace, POOL_LABEL)
            self._cache[namespace] = (time.monotonic(), samples, error)
            return samples, error
