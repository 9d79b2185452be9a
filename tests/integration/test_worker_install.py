"""Bring your own Celery app: one `celeriac_worker.install(app)` call and the operator can steer it."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from celery import Celery

from celeriac.signals.model import WorkerLoad
from tests.integration.worker_fixtures import EntryWorkers, app_fixture, workers_fixture
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for
from tests.support.worker_process import ROOT, autoscaler_info

FIXTURES = (app_fixture, workers_fixture)

# Nothing from the reference app: a plain Celery app, its own task, and the one call.
BYO_APP = textwrap.dedent(
    """
    import os
    import time

    from celery import Celery

    import celeriac_worker

    app = Celery("byo", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_BROKER_URL"])
    app.conf.worker_prefetch_multiplier = 1


    @app.task(name="byo.nap")
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds


    celeriac_worker.install(app)
    """
)


def test_an_app_calling_only_install_publishes_load_and_follows_the_range_file(
    redis_server: RedisServer, workers: EntryWorkers, app: Celery, tmp_path: Path
) -> None:
    (tmp_path / "byo_app.py").write_text(BYO_APP)
    range_file = tmp_path / "autoscale-range"
    range_file.write_text("2-3")
    worker = workers.start_app(
        "w1@byo",
        "byo_app",
        autoscale="4,1",
        PYTHONPATH=f"{tmp_path}:{ROOT}",
        CELERIAC_POOL="ns/byo",
        CELERIAC_RANGE_FILE=str(range_file),
        CELERIAC_REPORT_INTERVAL="0.5",
        POD_NAME="byo-abc",
    )
    # The range file, not --autoscale=4,1, sized the pool before it started.
    info = wait_for("the worker", lambda: autoscaler_info(app, worker.hostname), 30)
    assert (info["min"], info["max"], info["current"]) == (2, 3, 2)

    client = redis_server.client()
    key = "celeriac.workers.ns/byo"
    report = WorkerLoad.model_validate_json(
        wait_for("a load report", lambda: client.hget(key, worker.hostname), 15)
    )
    assert (report.hostname, report.pod, report.pool_size) == ("w1@byo", "byo-abc", 2)
    assert (report.range_min, report.range_max) == (2, 3)

    naps = [app.send_task("byo.nap", args=(0.5,), queue="celery") for _ in range(3)]
    assert [r.get(timeout=30) for r in naps] == [0.5] * 3
    done = wait_for(
        "a report with 3 processed",
        lambda: (
            (
                doc := WorkerLoad.model_validate_json(client.hget(key, worker.hostname) or b"{}")
            ).processed_total
            == 3
            and doc
        ),
        10,
        0.2,
    )
    # Observed by celeriac's Request: the app's own task has a measured duration.
    assert done.mean_task_seconds is not None
    assert 0.4 < done.mean_task_seconds < 5

    range_file.write_text("1-4")
    wait_for(
        "range 1-4 from the file",
        lambda: (
            (i := autoscaler_info(app, worker.hostname)) is not None
            and (i["min"], i["max"]) == (1, 4)
        ),
        15,
        0.25,
    )


def test_a_publisher_that_installs_stamps_the_publish_time(redis_server: RedisServer) -> None:
    import celeriac_worker

    publisher = celeriac_worker.install(Celery("byo-publisher", broker=redis_server.url))
    publisher.send_task("byo.nap", args=(0.1,), queue="stamped")
    raw = redis_server.client().lpop("stamped")
    assert raw is not None
    headers = json.loads(raw)["headers"]
    assert isinstance(headers["celeriac_published_at"], float)
