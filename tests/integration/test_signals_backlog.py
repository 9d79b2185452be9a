"""The backlog the operator sees equals the tasks not yet finished; LLEN alone does not."""

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

from celeriac.signals.reader import BacklogReader, PoolQuery
from celeriac.signals.wakeup import WakeupListener
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def producer(url: str, prefix: str = "") -> Celery:
    app = Celery("producer", broker=url)
    if prefix:
        app.conf.broker_transport_options = {"global_keyprefix": prefix}
    return app


@pytest.fixture
def start_worker(redis_server: RedisServer) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "CELERY_BROKER_URL": redis_server.url, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.integration.control_app",
                "worker",
                "--pool=prefork",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                *args,
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_backlog_counts_priorities_prefetched_and_acks_late_tasks_that_llen_misses(
    redis_server: RedisServer, start_worker: Callable[..., subprocess.Popen[bytes]]
) -> None:
    app = producer(redis_server.url)
    for _ in range(3):
        app.send_task("tests.integration.control_app.nap", args=[60], queue="celery", countdown=300)
    for _ in range(10):
        app.send_task("tests.integration.control_app.nap", args=[60], queue="celery")
    for _ in range(5):
        app.send_task("tests.integration.control_app.nap", args=[60], queue="celery", priority=6)
    reader = BacklogReader()
    query = PoolQuery(pool_id="ns/p", broker_url=redis_server.url, queues=("celery",))

    before = reader.read([query])["ns/p"].queues
    assert before is not None
    assert before[0].waiting == 18
    assert before[0].waiting_by_priority == {0: 13, 3: 0, 6: 5, 9: 0}

    start_worker("--concurrency=2", "--prefetch-multiplier=4")

    def settled() -> tuple[int, int, int] | None:
        q = reader.read([query])["ns/p"].queues
        assert q is not None
        b = q[0]
        return (
            (b.waiting, b.reserved, b.scheduled) if b.scheduled == 3 and b.reserved == 8 else None
        )

    waiting, reserved, scheduled = wait_for("the worker to prefetch", settled)
    # 15 due tasks are unfinished (each naps 60 s): the backlog says so exactly.
    assert waiting + reserved == 15
    assert scheduled == 3
    llen = redis_server.client().llen("celery")
    assert (
        llen == waiting - 5
    )  # the plain list only: priority list and unacked are invisible to LLEN
    assert llen < 15


def test_oldest_age_uses_the_publish_header_and_skips_future_etas(
    redis_server: RedisServer,
) -> None:
    app = producer(redis_server.url)
    now = time.time()
    app.send_task("t", queue="q", countdown=600, headers={"celeriac_published_at": now - 500})
    app.send_task("t", queue="q", headers={"celeriac_published_at": now - 42})
    app.send_task("t", queue="q", headers={"celeriac_published_at": now - 5})
    got = BacklogReader().read(
        [PoolQuery(pool_id="a/b", broker_url=redis_server.url, queues=("q",))]
    )
    queues = got["a/b"].queues
    assert queues is not None
    assert queues[0].oldest_age_s == pytest.approx(42, abs=1.0)


def test_global_keyprefix_is_honoured(redis_server: RedisServer) -> None:
    producer(redis_server.url, prefix="tenant1:").send_task("t", queue="jobs")
    plain = PoolQuery(pool_id="x/plain", broker_url=redis_server.url, queues=("jobs",))
    prefixed = PoolQuery(
        pool_id="x/pre", broker_url=redis_server.url, queues=("jobs",), global_keyprefix="tenant1:"
    )
    got = BacklogReader().read([plain, prefixed])
    assert got["x/plain"].backlog == 0
    assert got["x/pre"].backlog == 1


def test_many_pools_on_one_server_cost_one_round_trip(redis_server: RedisServer) -> None:
    reader = BacklogReader()
    queries = [
        PoolQuery(pool_id=f"ns/p{i}", broker_url=redis_server.url, queues=("a", "b", "c"))
        for i in range(200)
    ]
    redis_server.client().lpush("b", b"{}")
    got = reader.read(queries)
    assert reader.round_trips == 1
    assert len(got) == 200
    assert all(s.backlog == 1 for s in got.values())


def test_a_dead_broker_gives_stale_signals_not_zero_and_recovers(redis_server: RedisServer) -> None:
    reader = BacklogReader(timeout_s=0.5)
    query = PoolQuery(pool_id="ns/p", broker_url=redis_server.url, queues=("celery",))
    redis_server.client().lpush("celery", b"{}")
    assert reader.read([query])["ns/p"].backlog == 1
    redis_server.stop()
    down = reader.read([query])["ns/p"]
    assert down.queues is None
    assert down.backlog is None
    assert down.backlog_error is not None
    assert "Connection" in down.backlog_error
    redis_server.start()
    redis_server.client().lpush("celery", b"{}")
    assert reader.read([query])["ns/p"].backlog == 1


def test_a_push_wakes_the_pool_within_a_second(redis_server: RedisServer) -> None:
    woken: list[tuple[float, list[str]]] = []
    listener = WakeupListener(lambda ids: woken.append((time.monotonic(), ids)), min_interval_s=0.5)
    listener.update([PoolQuery(pool_id="ns/fast", broker_url=redis_server.url, queues=("celery",))])
    try:
        time.sleep(1.0)  # subscribed
        pushed = time.monotonic()
        producer(redis_server.url).send_task("t", queue="celery", priority=9)
        wait_for("a wake-up", lambda: woken, timeout_s=2)
        assert woken[0][1] == ["ns/fast"]
        assert woken[0][0] - pushed < 1.0
        # The per-pool cap: a second push right away does not wake it again.
        redis_server.client().lpush("celery", b"{}")
        time.sleep(0.2)
        assert len(woken) == 1
    finally:
        listener.close()
