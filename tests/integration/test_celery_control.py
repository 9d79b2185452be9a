"""The operator changes a live worker's --autoscale range over the broker, and confirms it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac.actuators.celery_control import CeleryControl
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(redis_server: RedisServer) -> Iterator[str]:
    hostname = "w1@control-test"
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
            "--autoscale=4,1",
            f"--hostname={hostname}",
            "--loglevel=WARNING",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        control = CeleryControl(reply_timeout_s=1.0)
        app = control._app(redis_server.url, "")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not control.read_ranges(app, [hostname]):
            time.sleep(0.2)
        assert control.read_ranges(app, [hostname]) == {hostname: (1, 4)}, (
            "worker did not come up in 30 s"
        )
        control.close()
        yield hostname
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_range_change_reaches_the_named_worker_and_is_confirmed(
    redis_server: RedisServer, worker: str
) -> None:
    control = CeleryControl(reply_timeout_s=1.0)
    result = control.apply_range(redis_server.url, [worker], range_min=2, range_max=3)
    assert result.confirmed == {worker: (2, 3)}
    assert result.unconfirmed == []
    assert result.attempts == 1
    app = control._app(redis_server.url, "")
    assert control.read_ranges(app, [worker]) == {worker: (2, 3)}
    control.close()


def test_a_missing_worker_is_reported_unconfirmed_after_retries(
    redis_server: RedisServer, worker: str
) -> None:
    control = CeleryControl(reply_timeout_s=1.0, attempts=2)
    result = control.apply_range(redis_server.url, [worker, "ghost@nowhere"], 1, 2)
    assert result.confirmed == {worker: (1, 2)}
    assert result.unconfirmed == ["ghost@nowhere"]
    assert result.attempts == 2
    control.close()


def test_a_draining_worker_stops_taking_tasks_until_told_to_resume(
    redis_server: RedisServer, worker: str
) -> None:
    control = CeleryControl(reply_timeout_s=1.0)
    # The default queue is "celery"; the worker was started on it.
    assert control.set_consuming(redis_server.url, [worker], ["celery"], consume=False) == [worker]
    app = control._app(redis_server.url, "")
    for _ in range(3):
        app.send_task("tests.integration.control_app.nap", args=[0.01], queue="celery")
    time.sleep(3)
    client = redis_server.client()
    assert client.llen("celery") == 3  # nobody consumed them
    assert control.set_consuming(redis_server.url, [worker], ["celery"], consume=True) == [worker]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (client.llen("celery") or client.hlen("unacked")):
        time.sleep(0.2)
    assert client.llen("celery") == 0
    assert client.hlen("unacked") == 0
    control.close()
