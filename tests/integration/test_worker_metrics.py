"""What a worker tells Prometheus and its log, counted exactly."""

from __future__ import annotations

import json

import httpx
from celery import Celery

from tests.integration.worker_fixtures import (
    LONG_JOB,
    EntryWorkers,
    app_fixture,
    task_log,
    workers_fixture,
)
from tests.support.redis_server import free_port
from tests.support.waiting import wait_for

FIXTURES = (app_fixture, workers_fixture)


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_the_worker_exports_task_states_queue_wait_and_pool_size(
    workers: EntryWorkers, app: Celery
) -> None:
    port = free_port()
    workers.started(app, "w1@metrics", autoscale="3,1", CELERIAC_METRICS_PORT=str(port))
    ok = [
        app.send_task(LONG_JOB, kwargs={"steps": 1, "step_seconds": 0.3}, queue="celery")
        for _ in range(3)
    ]
    bad = app.send_task(LONG_JOB, kwargs={"steps": "three", "step_seconds": 0.1}, queue="celery")
    assert [r.get(timeout=30)["steps"] for r in ok] == [1, 1, 1]
    assert bad.get(timeout=30, propagate=False) is not None

    def tasks(state: str) -> str:
        return f'celeriac_worker_tasks_total{{queue="celery",state="{state}",task="{LONG_JOB}"}}'

    url = f"http://127.0.0.1:{port}/metrics"
    got = wait_for(
        "4 finished tasks in the metrics",
        lambda: (s := samples(httpx.get(url, timeout=5).text)).get(tasks("failed")) == 1.0 and s,
        10,
        0.2,
    )
    assert {
        state: got.get(tasks(state)) for state in ("received", "started", "succeeded", "failed")
    } == {"received": 4.0, "started": 4.0, "succeeded": 3.0, "failed": 1.0}
    # The test's publisher stamps celeriac_published_at (worker_fixtures imports the app).
    assert got['celeriac_worker_queue_wait_seconds_count{queue="celery"}'] == 4.0
    assert got['celeriac_worker_queue_wait_seconds_bucket{le="+Inf",queue="celery"}'] == 4.0
    runtime = 'celeriac_worker_task_runtime_seconds_count{task="celeriac_worker.tasks.long_job"}'
    assert got[runtime] == 4.0
    assert 1.0 <= got["celeriac_worker_pool_processes"] <= 3.0
    assert (got["celeriac_worker_pool_min"], got["celeriac_worker_pool_max"]) == (1.0, 3.0)
    assert got["celeriac_worker_tasks_running"] == 0.0


def test_task_log_lines_are_json_and_carry_the_task_id_and_name(
    workers: EntryWorkers, app: Celery
) -> None:
    worker = workers.started(app, "w1@logs")
    result = app.send_task(LONG_JOB, kwargs={"steps": 1, "step_seconds": 0.1}, queue="celery")
    result.get(timeout=30)
    lines = [json.loads(x) for x in worker.log.read_text().splitlines() if x.startswith("{")]
    assert {"ts", "level", "logger", "message", "process"} <= set(lines[0])
    mine = task_log([worker], result.id)
    messages = [line["message"] for line in mine]
    assert "long job starting 1 steps of 0.10 s" in messages
    assert "long job finished 1 steps" in messages
    assert {line["task_name"] for line in mine} == {LONG_JOB}
