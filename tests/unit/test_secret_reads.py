"""The broker Secret is read once per expiry, however many pools share it and tick at once."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, cast

from celeriac.actuators.kube import Kube
from celeriac.controller.batching import Batcher
from celeriac.controller.runtime import Runtime
from celeriac.controller.settings import OperatorSettings


class SlowSecrets:
    """Answers like the apiserver under load: each GET takes a while."""

    def __init__(self) -> None:
        self.reads = 0
        self._lock = threading.Lock()

    def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        with self._lock:
            self.reads += 1
        time.sleep(0.2)
        return f"redis://{namespace}-{name}-{key}"


def _runtime(secrets: SlowSecrets) -> Runtime:
    def never(_: Any) -> list[Any]:
        raise AssertionError("no signal read in this test")

    return Runtime(
        settings=OperatorSettings(wakeup=False, pod_metrics=False),
        kube=cast(Kube, secrets),
        batcher=Batcher(never, 0.0),
    )


def test_pools_sharing_a_secret_wait_for_one_read_instead_of_each_sending_one() -> None:
    secrets = SlowSecrets()
    runtime = _runtime(secrets)

    async def many_pools() -> list[str]:
        return await asyncio.gather(
            *(runtime._broker_url("ns", "broker", "url") for _ in range(50))
        )

    urls = asyncio.run(many_pools())
    assert urls == ["redis://ns-broker-url"] * 50
    assert secrets.reads == 1


def test_different_secrets_are_read_each_once() -> None:
    secrets = SlowSecrets()
    runtime = _runtime(secrets)

    async def two_namespaces() -> list[str]:
        reads = [runtime._broker_url(ns, "broker", "url") for ns in ("a", "b") for _ in range(10)]
        return await asyncio.gather(*reads)

    urls = asyncio.run(two_namespaces())
    assert sorted(set(urls)) == ["redis://a-broker-url", "redis://b-broker-url"]
    assert secrets.reads == 2
