"""RabbitMQ pools wake on new work through one poll per broker, against a real rabbitmq-server.

How fast is measured in bench/results/signals-rabbitmq.md (poll interval plus the
broker's statistics interval); here: who is woken, and that an idle broker wakes nobody.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from celeriac.signals.reader import PoolQuery
from celeriac.signals.wakeup import WakeupListener
from tests.support.rabbitmq_server import RabbitMQServer, running_rabbitmq
from tests.support.waiting import wait_for


class Wakes:
    def __init__(self) -> None:
        self.calls: list[tuple[float, list[str]]] = []
        self.lock = threading.Lock()

    def __call__(self, pool_ids: list[str]) -> None:
        with self.lock:
            self.calls.append((time.monotonic(), pool_ids))

    def since(self, t: float) -> list[str]:
        with self.lock:
            return sorted({p for at, pools in self.calls if at >= t for p in pools})


@pytest.fixture
def rabbitmq() -> Iterator[RabbitMQServer]:
    with running_rabbitmq() as server:
        yield server


def _publish(server: RabbitMQServer, queue: str) -> None:
    server.api(
        "POST",
        "/api/exchanges/%2F/amq.default/publish",
        {"properties": {}, "routing_key": queue, "payload": "{}", "payload_encoding": "string"},
    )


def test_a_publish_wakes_only_the_pools_of_its_queue(rabbitmq: RabbitMQServer) -> None:
    for queue in ("reports", "emails", "x"):
        rabbitmq.api("PUT", f"/api/queues/%2F/{queue}", {"durable": True})
    wakes = Wakes()
    listener = WakeupListener(wakes, min_interval_s=0.5)

    def query(pool: str, *queues: str) -> PoolQuery:
        return PoolQuery(
            pool_id=pool,
            broker_url=rabbitmq.url,
            queues=queues,
            management_url=rabbitmq.management_url,
        )

    try:
        listener.update(
            [query("ns/a", "reports"), query("ns/b", "reports", "x"), query("ns/c", "emails")]
        )
        time.sleep(3.0)  # a baseline poll; declaring queues is not work
        quiet = time.monotonic()
        time.sleep(3.0)
        assert wakes.since(quiet) == []
        published = time.monotonic()
        _publish(rabbitmq, "reports")
        woken = wait_for("a wake-up after a publish", lambda: wakes.since(published), 10)
        assert woken == ["ns/a", "ns/b"]
        published = time.monotonic()
        _publish(rabbitmq, "emails")
        woken = wait_for("a wake-up after a publish", lambda: wakes.since(published), 10)
        assert woken == ["ns/c"]
    finally:
        listener.close()
