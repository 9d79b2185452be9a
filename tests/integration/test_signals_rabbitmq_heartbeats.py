"""Worker load from Celery's worker events, over a real RabbitMQ and a real Redis.

A stock Celery worker (prefork, 2 processes, heartbeats on as by default) runs tasks that
finish only when the test releases them, so its heartbeat's `active` count is known. The
celeriac library's load report is sent as the library is asked to send it: an event of
type `worker-celeriac-load` through Celery's own event dispatcher.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from celery import Celery

from celeriac.signals.heartbeats import LOAD_REPORT, HeartbeatListener
from celeriac.signals.rabbitmq import RabbitMQReader
from celeriac.signals.reader import PoolQuery
from tests.integration import rabbitmq_signals_app, signals_app
from tests.support.rabbitmq_server import RabbitMQServer, running_rabbitmq
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
HOST = "celery@w0-test"


@dataclass
class Broker:
    url: str
    app_module: str
    task: str
    gate_url: str
    gate_key: str
    management_url: str | None = None

    def producer(self) -> Celery:
        if self.management_url is not None:
            return rabbitmq_signals_app.make_app(self.url)
        return Celery("producer", broker=self.url, set_as_current=False)


@pytest.fixture(params=["rabbitmq", "redis"])
def broker(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[Broker]:
    if request.param == "redis":
        yield Broker(
            redis_server.url,
            "tests.integration.signals_app",
            "signals.gate",
            redis_server.url,
            signals_app.GATE_KEY,
        )
        return
    server: RabbitMQServer
    with running_rabbitmq() as server:
        yield Broker(
            server.url,
            "tests.integration.rabbitmq_signals_app",
            "rabbitmq.gate",
            redis_server.url,
            rabbitmq_signals_app.GATE_KEY,
            server.management_url,
        )


@pytest.fixture
def listener() -> Iterator[HeartbeatListener]:
    events = HeartbeatListener()
    yield events
    events.close()


@pytest.fixture
def worker(broker: Broker, tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "CELERY_BROKER_URL": broker.url,
            "GATE_REDIS_URL": broker.gate_url,
            "PYTHONPATH": str(ROOT),
        }
        args = [sys.executable, "-m", "celery", "-A", broker.app_module, "worker", "-P", "prefork"]
        args += ["-c", "2", "-Q", "celery", "--without-gossip", "--without-mingle"]
        args += ["--loglevel=WARNING", f"--hostname={HOST}"]
        log = (tmp_path / "worker.log").open("wb")
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
            proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def test_a_stock_workers_heartbeat_counts_its_running_tasks_and_offline_removes_it(
    broker: Broker,
    listener: HeartbeatListener,
    worker: Callable[[], subprocess.Popen[bytes]],
    redis_server: RedisServer,
) -> None:
    def beats(active: int) -> Callable[[], bool]:
        def check() -> bool:
            got, _ = listener.heartbeats(broker.url, {HOST, "celery@someone-else"})
            return got is not None and [(b.hostname, b.active) for b in got] == [(HOST, active)]

        return check

    proc = worker()
    wait_for("an idle heartbeat", beats(0), timeout_s=30)
    producer = broker.producer()
    for _ in range(3):
        producer.send_task(broker.task, queue="celery")
    producer.close()
    # 2 processes: 2 running, the third prefetched (not running, so not `active`).
    wait_for("a heartbeat with 2 running", beats(2), timeout_s=20)

    redis_server.client().rpush(broker.gate_key, *[b"go"] * 3)
    wait_for("a heartbeat with 0 running", beats(0), timeout_s=20)
    proc.send_signal(signal.SIGTERM)  # warm shutdown sends worker-offline
    proc.wait(timeout=20)
    wait_for(
        "the worker to be gone",
        lambda: listener.heartbeats(broker.url, {HOST})[0] == [],
        timeout_s=10,
    )


def test_library_load_reports_reach_their_pool_only(
    broker: Broker, listener: HeartbeatListener
) -> None:
    mine = PoolQuery(pool_id="ns/mine", broker_url=broker.url, queues=("celery",))
    other = PoolQuery(pool_id="ns/other", broker_url=broker.url, queues=("celery",))
    # Unknown, not empty, until the consumer has listened for a while.
    first, why = listener.worker_source(mine, listener.clock())
    assert first is None
    assert why is not None
    wait_for(
        "the consumer to warm up",
        lambda: listener.worker_source(mine, listener.clock())[1] is None,
    )

    app = Celery("library", broker=broker.url, set_as_current=False)
    document = {
        "pod": "mine-7d9f-x2k4z",
        "running": 3,
        "reserved": 5,
        "pool_size": 4,
        "range_min": 1,
        "range_max": 6,
        "cpu_percent": 55.0,
        "processed_total": 120,
        "mean_task_seconds": 0.8,
    }

    def send() -> None:
        with app.connection_for_write() as conn:
            dispatcher = app.events.Dispatcher(conn, hostname="celery@mine-7d9f-x2k4z")
            now = listener.clock()
            dispatcher.send(LOAD_REPORT, pool="ns/mine", ts=now, **document)
            dispatcher.close()

    def mine_loaded() -> bool:
        send()
        workers, _ = listener.worker_source(mine, listener.clock())
        return bool(workers)

    wait_for("the load report", mine_loaded, timeout_s=20, every_s=0.5)
    workers, error = listener.worker_source(mine, listener.clock())
    assert error is None
    assert workers is not None
    (load,) = workers
    assert (load.hostname, load.pod, load.running, load.pool_size, load.range_max) == (
        "celery@mine-7d9f-x2k4z",
        "mine-7d9f-x2k4z",
        3,
        4,
        6,
    )
    assert listener.worker_source(other, listener.clock()) == ([], None)
    app.close()

    if broker.management_url is not None:
        # The RabbitMQ reader carries them in the same PoolSignals as the backlog.
        reader = RabbitMQReader(workers=listener.worker_source)
        query = PoolQuery(
            pool_id="ns/mine",
            broker_url=broker.url,
            queues=("celery",),
            management_url=broker.management_url,
        )
        signals = reader.read([query])["ns/mine"]
        assert signals.workers is not None
        assert [w.running for w in signals.workers] == [3]
        reader.close()
