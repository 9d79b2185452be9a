"""A RabbitMQ broker killed under working workers: its pools read stale, and replicas hold.

The broker is the test's own (tests/integration/test_signals_rabbitmq.py shares one), as
it is SIGKILLed mid-test: no clean shutdown, the management API's socket just goes away.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from celeriac.api.pool import Concurrency, Scaling
from celeriac.policy import decide
from celeriac.policy.model import Mode, PolicyInput
from celeriac.signals.rabbitmq import RabbitMQReader
from celeriac.signals.reader import PoolQuery
from tests.integration.rabbitmq_fixtures import (
    QUEUE,
    StartWorker,
    publish_fixture,
    start_worker_fixture,
)
from tests.support.rabbitmq_server import RabbitMQServer, running_rabbitmq
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

FIXTURES = (publish_fixture, start_worker_fixture)


@pytest.fixture
def rabbitmq() -> Iterator[RabbitMQServer]:
    with running_rabbitmq() as server:
        yield server


def test_a_broker_killed_mid_test_reads_stale_and_holds_replicas(
    rabbitmq: RabbitMQServer,
    redis_server: RedisServer,
    publish: Callable[..., None],
    start_worker: StartWorker,
) -> None:
    reader = RabbitMQReader(timeout_s=1.0)
    query = PoolQuery(
        pool_id="ns/pool",
        broker_url=rabbitmq.url,
        queues=(QUEUE, "idle"),
        management_url=rabbitmq.management_url,
    )
    start_worker()
    publish(12)
    up = wait_for(
        "the worker to hold 8 of 12",
        lambda: (s := reader.read([query])["ns/pool"]).backlog == 12 and s,
        timeout_s=30,
    )
    assert up.queues is not None
    assert up.queues[1].total == 0  # never declared: empty

    rabbitmq.kill()
    down = reader.read([query])["ns/pool"]
    assert down.queues is None
    assert down.backlog is None
    assert down.backlog_error is not None
    assert f"127.0.0.1:{rabbitmq.http_port}" in down.backlog_error
    assert "guest" not in down.backlog_error  # no credentials in what reaches the status

    decision = decide(
        PolicyInput(
            now=down.observed_at,
            scaling=Scaling(min_replicas=0, max_replicas=10),
            concurrency=Concurrency(min=1, max=2),
            signals=down,
            current_replicas=3,
            ready_replicas=3,
        )
    )
    assert (decision.mode, decision.desired_replicas) == (Mode.HOLD, 3)
