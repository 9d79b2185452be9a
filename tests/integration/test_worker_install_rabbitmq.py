"""The worker library on RabbitMQ: `install(app)` sends the load report as a worker event the
operator's consumer attributes to its pool, and stamps the AMQP timestamp the management API
turns into the oldest task's age. Against a real rabbitmq-server."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from celeriac.signals.heartbeats import HeartbeatListener
from celeriac.signals.rabbitmq import RabbitMQReader
from celeriac.signals.reader import PoolQuery
from celeriac_worker.wiring import install
from tests.integration.worker_fixtures import EntryWorkers
from tests.support.rabbitmq_server import RabbitMQServer, running_rabbitmq
from tests.support.waiting import wait_for
from tests.support.worker_process import ROOT

BYO_APP = textwrap.dedent(
    """
    import os
    import time

    from celery import Celery

    import celeriac_worker

    app = Celery("byo", broker=os.environ["CELERY_BROKER_URL"], backend="rpc://")
    app.conf.worker_prefetch_multiplier = 1


    @app.task(name="byo.nap")
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds


    celeriac_worker.install(app)
    """
)


@pytest.fixture(scope="module")
def rabbitmq() -> Iterator[RabbitMQServer]:
    with running_rabbitmq() as server:
        yield server


def test_an_installed_worker_reports_its_load_to_its_pool_over_amqp(
    rabbitmq: RabbitMQServer, tmp_path: Path
) -> None:
    (tmp_path / "byo_app.py").write_text(BYO_APP)
    workers = EntryWorkers(rabbitmq.url, tmp_path)
    listener = HeartbeatListener()
    try:
        worker = workers.start_app(
            "celery@byo-abc",
            "byo_app",
            autoscale="3,1",
            PYTHONPATH=f"{tmp_path}:{ROOT}",
            CELERIAC_POOL="ns/byo",
            CELERIAC_REPORT_INTERVAL="0.5",
            POD_NAME="byo-abc",
        )
        mine = PoolQuery(pool_id="ns/byo", broker_url=rabbitmq.url, queues=("celery",))
        loads = wait_for(
            "a load report over the broker",
            lambda: listener.worker_source(mine, time.time())[0] or None,
            60,
            0.5,
        )
        (load,) = loads
        assert (load.hostname, load.pod, load.range_max) == (worker.hostname, "byo-abc", 3)
        other = PoolQuery(pool_id="ns/other", broker_url=rabbitmq.url, queues=("celery",))
        assert listener.worker_source(other, time.time()) == ([], None)
    finally:
        listener.close()
        workers.stop_all()


def test_an_installed_publisher_stamps_the_amqp_timestamp_the_oldest_age_comes_from(
    rabbitmq: RabbitMQServer,
) -> None:
    app = install(Celery("publisher", broker=rabbitmq.url, set_as_current=False))
    app.send_task("byo.nap", args=(0.1,), queue="nobody-consumes")
    query = PoolQuery(
        pool_id="ns/p",
        broker_url=rabbitmq.url,
        queues=("nobody-consumes",),
        management_url=rabbitmq.management_url,
    )
    reader = RabbitMQReader()
    try:
        got = wait_for(
            "the queue's oldest age",
            lambda: (
                (q := reader.read([query])["ns/p"].queues)
                and q[0].oldest_age_s is not None
                and q[0]
            ),
            30,
            0.5,
        )
    finally:
        reader.close()
        app.close()
    assert got.waiting == 1
    assert 0 <= got.oldest_age_s <= 30  # type: ignore[operator]
