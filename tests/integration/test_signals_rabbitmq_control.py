"""Per-pod ranges work the same over AMQP: `app.control.autoscale` reaches a worker on RabbitMQ
through the operator's CeleryControl, and is confirmed with `inspect stats`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac.actuators.celery_control import CeleryControl
from tests.support.rabbitmq_server import RabbitMQServer, running_rabbitmq
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
HOST = "w1@rabbitmq-control-test"


@pytest.fixture
def rabbitmq() -> Iterator[RabbitMQServer]:
    with running_rabbitmq() as server:
        yield server


@pytest.fixture
def worker(rabbitmq: RabbitMQServer, tmp_path: Path) -> Iterator[str]:
    env = {**os.environ, "CELERY_BROKER_URL": rabbitmq.url, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "celery", "-A", "tests.integration.control_app", "worker"]
    args += ["--pool=prefork", "--autoscale=4,1", f"--hostname={HOST}", "--loglevel=WARNING"]
    log = (tmp_path / "worker.log").open("wb")
    proc = subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield HOST
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def test_a_range_change_reaches_a_worker_on_rabbitmq_and_is_confirmed(
    rabbitmq: RabbitMQServer, worker: str
) -> None:
    control = CeleryControl(reply_timeout_s=1.0)
    try:
        app = control._app(rabbitmq.url, "")
        wait_for(
            "the worker to answer inspect stats",
            lambda: control.read_ranges(app, [worker]) == {worker: (1, 4)},
            timeout_s=60,
        )
        result = control.apply_range(rabbitmq.url, [worker, "ghost@nowhere"], 2, 3)
        assert result.confirmed == {worker: (2, 3)}
        assert result.unconfirmed == ["ghost@nowhere"]
        assert control.read_ranges(app, [worker]) == {worker: (2, 3)}
    finally:
        control.close()
