"""Against a real rabbitmq-server and real Celery workers: the backlog is the unfinished tasks.

Workers run `-P prefork -c 2` with prefetch multiplier 4 and acks_late on an
`x-max-priority` queue (rabbitmq_signals_app), so a worker holds 8 tasks (2 running,
6 prefetched) that the queue's ready count cannot see. Tasks finish only when the test
releases them through a Redis list, so every count is known exactly. The management API
samples queue statistics every second here (tests/support/rabbitmq_server.py), so a
reading settles within ~1-2 s of a change; the waits are bounded at 20-30 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from urllib.parse import quote

import kombu.pools
import pytest

from celeriac.signals.model import QueueBacklog
from celeriac.signals.rabbitmq import RabbitMQReader
from celeriac.signals.reader import PoolQuery
from tests.integration import rabbitmq_signals_app as app_module
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


@pytest.fixture(scope="module")
def shared_rabbitmq() -> Iterator[RabbitMQServer]:
    with running_rabbitmq() as server:
        yield server


@pytest.fixture
def rabbitmq(shared_rabbitmq: RabbitMQServer) -> Iterator[RabbitMQServer]:
    """The module's broker, emptied after each test (a start costs ~10 s)."""
    yield shared_rabbitmq
    for row in shared_rabbitmq.api("GET", "/api/queues/%2F?columns=name"):
        shared_rabbitmq.api("DELETE", f"/api/queues/%2F/{quote(row['name'], safe='')}")
    # kombu's process-wide producer pools remember the queues their connections declared,
    # and would not declare the deleted ones again: the next test's publishes would vanish.
    kombu.pools.reset()


def _query(rabbitmq: RabbitMQServer, *queues: str) -> PoolQuery:
    return PoolQuery(
        pool_id="ns/pool",
        broker_url=rabbitmq.url,
        queues=queues or (QUEUE,),
        management_url=rabbitmq.management_url,
    )


def _queue(reader: RabbitMQReader, query: PoolQuery) -> QueueBacklog:
    """The first queue's reading; a queue declared less than a stats interval ago is
    unknown (not zero) until RabbitMQ reports it, and reads as an empty placeholder here."""
    signals = reader.read([query])[query.pool_id]
    if signals.queues is None:
        assert signals.backlog_error is not None
        assert "has not reported statistics" in signals.backlog_error, signals.backlog_error
        return QueueBacklog(queue="unknown yet", waiting=0, reserved=0)
    return signals.queues[0]


def _release(redis_server: RedisServer, n: int, done_before: int) -> None:
    client = redis_server.client()
    client.rpush(app_module.GATE_KEY, *[b"go"] * n)
    wait_for(
        f"{n} released tasks to finish",
        lambda: int(client.get(app_module.DONE_KEY) or 0) == done_before + n,
        timeout_s=20,
    )


def test_backlog_is_the_unfinished_tasks_through_priorities_prefetch_and_acks_late(
    rabbitmq: RabbitMQServer,
    redis_server: RedisServer,
    publish: Callable[..., None],
    start_worker: StartWorker,
) -> None:
    reader = RabbitMQReader()
    query = _query(rabbitmq)
    publish(10)
    publish(5, priority=6)
    waiting = wait_for("15 ready tasks", lambda: (q := _queue(reader, query)).waiting == 15 and q)
    assert (waiting.reserved, waiting.consumers) == (0, 0)

    start_worker()

    def held(reserved: int, total: int) -> Callable[[], QueueBacklog | None]:
        def check() -> QueueBacklog | None:
            q = _queue(reader, query)
            return q if (q.reserved, q.total) == (reserved, total) else None

        return check

    full = wait_for("the worker to hold 8 of 15", held(8, 15), timeout_s=30)
    # 15 unfinished: 2 running and 6 prefetched in the worker, 7 ready in RabbitMQ. The
    # ready count alone (what an AMQP passive declare or KEDA's default reads) says 7.
    assert (full.waiting, full.reserved, full.consumers) == (7, 8, 1)
    assert full.waiting != 15

    _release(redis_server, 3, done_before=0)
    refilled = wait_for("12 unfinished with the worker full again", held(8, 12), timeout_s=20)
    assert refilled.waiting == 4

    _release(redis_server, 8, done_before=3)
    tail = wait_for("4 unfinished, all in the worker", held(4, 4), timeout_s=20)
    # The ready count is 0 while 4 tasks are unfinished: a scaler reading it scales to zero.
    assert tail.waiting == 0
    assert tail.deliver_rate_per_s is not None

    _release(redis_server, 4, done_before=11)
    drained = wait_for("the backlog to reach 0", held(0, 0), timeout_s=20)
    assert drained.waiting == 0


def test_oldest_age_comes_from_the_head_message_timestamp_within_one_second(
    rabbitmq: RabbitMQServer, publish: Callable[..., None]
) -> None:
    reader = RabbitMQReader()
    query = _query(rabbitmq, app_module.PLAIN_QUEUE, QUEUE)
    published_at = time.time()
    publish(2, queue=app_module.PLAIN_QUEUE)
    publish(2, priority=0)
    time.sleep(2.0)
    publish(3, queue=app_module.PLAIN_QUEUE)
    publish(3, priority=9)

    def both() -> list[QueueBacklog] | None:
        queues = reader.read([query])["ns/pool"].queues
        return queues if queues and [q.waiting for q in queues] == [5, 5] else None

    plain, prioritized = wait_for("5 ready tasks in each queue", both)
    true_age = time.time() - published_at
    assert plain.oldest_age_s is not None
    assert abs(plain.oldest_age_s - true_age) < 1.0
    # The priority queue's head is a 2 s younger priority-9 task: its age would understate
    # how long the priority-0 ones waited, so it is unknown rather than low.
    assert prioritized.oldest_age_s is None


def test_oldest_age_is_unknown_without_a_timestamp_never_estimated(
    rabbitmq: RabbitMQServer, publish: Callable[..., None]
) -> None:
    reader = RabbitMQReader()
    query = _query(rabbitmq)
    publish(4, stamped=False)
    q = wait_for("4 ready tasks", lambda: (q := _queue(reader, query)).waiting == 4 and q)
    assert q.oldest_age_s is None
    # Reading did not consume and requeue anything (that would set `redelivered`).
    assert rabbitmq.api("GET", f"/api/queues/%2F/{QUEUE}")["messages_ready"] == 4
