"""Against a real rabbitmq-server and real Celery workers: the backlog is the unfinished tasks.

Workers run `-P prefork -c 2` with prefetch multiplier 4 and acks_late on an
`x-max-priority` queue (rabbitmq_signals_app), so a worker holds 8 tasks (2 running,
6 prefetched) that the queue's ready count cannot see. Tasks finish only when the test
releases them through a Redis list, so every count is known exactly. The management API
samples queue statistics every second here (tests/support/rabbitmq_server.py), so a
reading settles within ~1-2 s of a change; the waits are bounded at 20-30 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery.signals import before_task_publish

from celeriac.api.pool import Concurrency, Scaling
from celeriac.policy import decide
from celeriac.policy.model import Mode, PolicyInput
from celeriac.signals.model import QueueBacklog
from celeriac.signals.rabbitmq import RabbitMQReader
from celeriac.signals.reader import PoolQuery
from tests.integration import rabbitmq_signals_app as app_module
from tests.support.rabbitmq_server import RabbitMQServer, running_rabbitmq
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
QUEUE = app_module.QUEUE
StartWorker = Callable[[], subprocess.Popen[bytes]]


@pytest.fixture
def rabbitmq() -> Iterator[RabbitMQServer]:
    with running_rabbitmq() as server:
        yield server


@pytest.fixture
def publish(rabbitmq: RabbitMQServer) -> Iterator[Callable[..., None]]:
    """send_task through the test app's own queue declaration (x-max-priority)."""
    producer = app_module.make_app(rabbitmq.url)

    def send(n: int, stamped: bool = True, **options: object) -> None:
        if stamped:
            before_task_publish.connect(app_module.stamp_amqp_timestamp)
        try:
            for _ in range(n):
                producer.send_task("rabbitmq.gate", queue=QUEUE, **options)
        finally:
            before_task_publish.disconnect(app_module.stamp_amqp_timestamp)

    yield send
    producer.close()


@pytest.fixture
def start_worker(
    rabbitmq: RabbitMQServer, redis_server: RedisServer, tmp_path: Path
) -> Iterator[StartWorker]:
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "CELERY_BROKER_URL": rabbitmq.url,
            "GATE_REDIS_URL": redis_server.url,
            "PYTHONPATH": str(ROOT),
        }
        args = [sys.executable, "-m", "celery", "-A", "tests.integration.rabbitmq_signals_app"]
        args += ["worker", "-P", "prefork", "-c", "2", "-Q", QUEUE, "--without-gossip"]
        args += ["--without-mingle", "--without-heartbeat", "--loglevel=WARNING"]
        args += [f"--hostname=w{len(procs)}@test"]
        log = (tmp_path / f"worker{len(procs)}.log").open("wb")
        procs.append(
            subprocess.Popen(
                args,
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        return procs[-1]

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # cold: the gated tasks would never end otherwise
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


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
    query = _query(rabbitmq)
    published_at = time.time()
    publish(2)
    time.sleep(2.0)
    publish(3)
    q = wait_for("5 ready tasks", lambda: (q := _queue(reader, query)).waiting == 5 and q)
    true_age = time.time() - published_at
    assert q.oldest_age_s is not None
    assert abs(q.oldest_age_s - true_age) < 1.0


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


def test_a_broker_killed_mid_test_reads_stale_and_holds_replicas(
    rabbitmq: RabbitMQServer,
    redis_server: RedisServer,
    publish: Callable[..., None],
    start_worker: StartWorker,
) -> None:
    reader = RabbitMQReader(timeout_s=1.0)
    query = _query(rabbitmq, QUEUE, "idle")
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
