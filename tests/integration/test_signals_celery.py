"""Against real Celery workers: the backlog the operator reads is the number of unfinished tasks.

Workers run `-P prefork -c 2` with prefetch multiplier 4 and acks_late (signals_app), so a
worker holds 8 due tasks (2 running, 6 prefetched) that LLEN cannot see, and ETA tasks
that are not load yet. Tasks finish only when the test releases them, so every count is
known exactly.
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
from celery import Celery
from celery.signals import before_task_publish

from celeriac.signals import kombu_keys
from celeriac.signals.model import QueueBacklog
from celeriac.signals.reader import BacklogReader, PoolQuery
from tests.integration import signals_app
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "celery"
PRIORITY_KEY = f"{QUEUE}{kombu_keys.DEFAULT_SEP}6"
StartWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def publish(redis_server: RedisServer) -> Iterator[Callable[..., None]]:
    """send_task to the test server, stamped with the publish time like the worker image does."""
    apps: dict[str, Celery] = {}
    before_task_publish.connect(signals_app.stamp_publish_time)

    def send(n: int, prefix: str = "", **options: object) -> None:
        # One app per prefix: kombu reads transport options when the connection is made.
        if prefix not in apps:
            apps[prefix] = Celery("producer", broker=redis_server.url)
            apps[prefix].conf.broker_transport_options = {"global_keyprefix": prefix}
        for _ in range(n):
            apps[prefix].send_task("signals.gate", queue=QUEUE, **options)

    yield send
    before_task_publish.disconnect(signals_app.stamp_publish_time)
    for app in apps.values():
        app.close()


@pytest.fixture
def start_worker(redis_server: RedisServer, tmp_path: Path) -> Iterator[StartWorker]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(prefix: str = "") -> subprocess.Popen[bytes]:
        env = {**os.environ, "CELERY_BROKER_URL": redis_server.url, "PYTHONPATH": str(ROOT)}
        args = [sys.executable, "-m", "celery", "-A", "tests.integration.signals_app", "worker"]
        args += ["-P", "prefork", "-c", "2", "-Q", QUEUE, "--without-gossip", "--without-mingle"]
        args += ["--without-heartbeat", "--loglevel=WARNING", f"--hostname=w{len(procs)}@test"]
        if prefix:
            env["SIGNALS_APP_KEYPREFIX"] = prefix
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


def _queue(reader: BacklogReader, query: PoolQuery) -> QueueBacklog:
    signals = reader.read([query])[query.pool_id]
    assert signals.queues is not None, signals.backlog_error
    return signals.queues[0]


def _release(redis_server: RedisServer, n: int, done_before: int) -> None:
    client = redis_server.client()
    client.rpush(signals_app.GATE_KEY, *[b"go"] * n)
    wait_for(
        f"{n} released tasks to finish",
        lambda: int(client.get(signals_app.DONE_KEY) or 0) == done_before + n,
        timeout_s=20,
    )


def test_backlog_is_the_unfinished_tasks_through_priorities_prefetch_and_acks_late(
    redis_server: RedisServer, publish: Callable[..., None], start_worker: StartWorker
) -> None:
    client = redis_server.client()
    reader = BacklogReader()
    query = PoolQuery(pool_id="ns/pool", broker_url=redis_server.url, queues=(QUEUE,))
    publish(3, countdown=300)  # ETA tasks: the oldest messages, yet not late
    time.sleep(1.5)
    first_due_at = time.time()
    publish(10)
    publish(5, priority=6)
    time.sleep(1.0)

    first = _queue(reader, query)
    assert (first.waiting, first.reserved, first.scheduled) == (18, 0, 0)
    assert first.waiting_by_priority == {0: 13, 3: 0, 6: 5, 9: 0}
    # The plain list's oldest message has a future ETA: not late, so that list's age is
    # unknown on this read (the priority list's oldest speaks), and the next read looks past
    # it (one message per list otherwise). Never the ETA tasks' 2.5 s.
    assert first.oldest_age_s is not None
    assert first.oldest_age_s <= time.time() - first_due_at
    before = _queue(reader, query)
    assert before.total == 18
    # The oldest due task, not the older ETA ones, within 1 s.
    assert before.oldest_age_s is not None
    assert abs(before.oldest_age_s - (time.time() - first_due_at)) < 1.0

    start_worker()

    def prefetched() -> QueueBacklog | None:
        q = _queue(reader, query)
        return q if (q.reserved, q.scheduled) == (8, 3) else None

    held = wait_for("the worker to hold 8 due and 3 ETA tasks", prefetched, timeout_s=30)
    # 15 due tasks, none finished: 8 in the worker (2 running, 6 prefetched), 7 in Redis.
    assert (held.waiting, held.reserved, held.scheduled, held.total) == (7, 8, 3, 15)
    # The plain list drains first (BRPOP takes keys in priority order): 2 left there.
    assert client.llen(QUEUE) == 2
    assert client.llen(PRIORITY_KEY) == 5

    _release(redis_server, 3, done_before=0)

    def refilled() -> QueueBacklog | None:
        q = _queue(reader, query)
        return q if q.total == 12 and q.reserved == 8 else None

    after = wait_for("12 unfinished tasks with the worker full again", refilled, timeout_s=20)
    assert (after.waiting, after.reserved, after.scheduled) == (4, 8, 3)
    assert after.waiting_by_priority == {0: 0, 3: 0, 6: 4, 9: 0}
    # LLEN of the queue says 0 while 12 tasks are unfinished.
    assert client.llen(QUEUE) == 0

    _release(redis_server, 12, done_before=3)
    drained = wait_for(
        "the backlog to reach 0", lambda: (q := _queue(reader, query)).total == 0 and q, 20
    )
    assert (drained.waiting, drained.reserved, drained.scheduled) == (0, 0, 3)


def test_a_broker_killed_under_working_workers_reads_stale_then_recovers(
    redis_server: RedisServer, publish: Callable[..., None], start_worker: StartWorker
) -> None:
    reader = BacklogReader(timeout_s=0.5)
    query = PoolQuery(pool_id="ns/pool", broker_url=redis_server.url, queues=(QUEUE, "idle"))
    start_worker()
    publish(12)
    held = wait_for(
        "the worker to hold 8", lambda: (q := _queue(reader, query)).reserved == 8 and q, 30
    )
    assert (held.waiting, held.reserved) == (4, 8)

    redis_server.stop()
    started = time.monotonic()
    down = reader.read([query])["ns/pool"]
    assert time.monotonic() - started < 5.0  # refused at once: no retry loop
    assert down.queues is None
    assert down.backlog is None
    assert down.backlog_error is not None
    assert f"127.0.0.1:{redis_server.port}" in down.backlog_error

    redis_server.start()  # empty: the server keeps nothing on disk
    redis_server.client().lpush("idle", b"{}", b"{}")
    up = reader.read([query])["ns/pool"]
    assert up.backlog_error is None
    assert up.queues is not None
    assert up.queues[1].total == 2


def test_global_keyprefix_applies_to_lists_and_unacked(
    redis_server: RedisServer, publish: Callable[..., None], start_worker: StartWorker
) -> None:
    reader = BacklogReader()
    prefixed = PoolQuery(
        pool_id="ns/tenant", broker_url=redis_server.url, queues=(QUEUE,), global_keyprefix="t1:"
    )
    plain = PoolQuery(pool_id="ns/plain", broker_url=redis_server.url, queues=(QUEUE,))
    publish(11, prefix="t1:")
    start_worker(prefix="t1:")
    held = wait_for(
        "the prefixed worker to hold 8", lambda: (q := _queue(reader, prefixed)).reserved == 8 and q
    )
    assert (held.waiting, held.reserved) == (3, 8)
    assert redis_server.client().hlen("t1:unacked") == 8
    assert redis_server.client().exists("unacked", QUEUE) == 0
    both = reader.read([prefixed, plain])
    assert (both["ns/tenant"].backlog, both["ns/plain"].backlog) == (11, 0)
