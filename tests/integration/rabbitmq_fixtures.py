"""Fixtures for tests against a real RabbitMQ: a publisher and Celery workers of the test app.

Each test module provides the `rabbitmq` fixture (a broker shared by the module, or one of
the test's own when the test kills it); these build on it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery.signals import before_task_publish

from tests.integration import rabbitmq_signals_app as app_module
from tests.support.rabbitmq_server import RabbitMQServer
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
QUEUE = app_module.QUEUE
StartWorker = Callable[[], subprocess.Popen[bytes]]


@pytest.fixture(name="publish")
def publish_fixture(rabbitmq: RabbitMQServer) -> Iterator[Callable[..., None]]:
    """send_task through the test app's own queue declaration (x-max-priority)."""
    producer = app_module.make_app(rabbitmq.url)

    def send(n: int, stamped: bool = True, **options: object) -> None:
        if stamped:
            before_task_publish.connect(app_module.stamp_amqp_timestamp)
        try:
            options.setdefault("queue", QUEUE)
            for _ in range(n):
                producer.send_task("rabbitmq.gate", **options)
        finally:
            before_task_publish.disconnect(app_module.stamp_amqp_timestamp)

    yield send
    producer.close()


@pytest.fixture(name="start_worker")
def start_worker_fixture(
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
