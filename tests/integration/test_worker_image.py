"""The reference worker image: API, tasks, the in-process autoscaler, and shutdown safety."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from celery.result import AsyncResult

from celeriac.signals.model import WorkerLoad
from tests.support.redis_server import RedisServer, free_port
from tests.support.smtp_sink import smtp_sink
from tests.support.waiting import wait_for
from tests.support.worker_process import (
    ROOT,
    WorkerFactory,
    autoscaler_info,
    control_app,
)

LONG_JOB = "celeriac_worker.tasks.long_job"


@pytest.fixture
def workers(redis_server: RedisServer, tmp_path: Path) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(redis_server.url, tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture
def api(redis_server: RedisServer, workers: WorkerFactory, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    with (tmp_path / "api.log").open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "celeriac_worker.api:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=workers.env(),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the API", lambda: _up(url), timeout_s=20)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def result_of(redis_server: RedisServer, task_id: str, timeout_s: float = 30) -> AsyncResult:
    app = control_app(redis_server.url)
    return wait_for(
        f"task {task_id}", lambda: (r := AsyncResult(task_id, app=app)).ready() and r, timeout_s
    )


def test_tasks_posted_through_the_api_run_and_their_results_are_readable(
    redis_server: RedisServer, workers: WorkerFactory, api: str
) -> None:
    with smtp_sink() as (smtp_port, mailbox):
        workers.start("w1@api", SMTP_PORT=str(smtp_port))
        report = httpx.post(
            f"{api}/tasks/report", json={"pages": 2, "seed": 7, "priority": 0}, timeout=5
        )
        email = httpx.post(
            f"{api}/tasks/email",
            json={
                "recipient": "ops@example.com",
                "subject": "hello",
                "content": "queued by celeriac",
            },
            timeout=5,
        )
        assert report.status_code == 202
        assert email.status_code == 202
        assert report.json()["queue"] == "reports"
        for accepted in (report.json(), email.json()):
            state = wait_for(
                "SUCCESS",
                lambda a=accepted: (
                    (s := httpx.get(f"{api}{a['status_url']}", timeout=5).json())["state"]
                    == "SUCCESS"
                    and s
                ),
                40,
            )
            assert state["id"] == accepted["id"]
        rendered = httpx.get(f"{api}/tasks/{report.json()['id']}", timeout=5).json()["result"]
        assert rendered["pages"] == 2
        assert rendered["bytes"] > 1000
        assert len(mailbox.messages) == 1
        assert "Subject: hello" in mailbox.messages[0]
        assert "queued by celeriac" in mailbox.messages[0]


def test_a_body_that_is_not_json_gets_422(api: str) -> None:
    response = httpx.post(
        f"{api}/tasks/report",
        content=b"{pages: 1",
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_a_malformed_task_id_is_refused(api: str) -> None:
    response = httpx.get(f"{api}/tasks/..%2F..%2Fetc%2Fpasswd", timeout=5)
    assert response.status_code in (404, 422)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/tasks/email",
            {"recipient": "not-an-address", "subject": "s", "content": "c"},
            "recipient",
        ),
        ("/tasks/report", {"pages": 0}, "pages"),
        ("/tasks/long", {"steps": 3, "priority": 12}, "priority"),
        ("/tasks/long", {"steps": 3, "shell": "rm -rf /"}, "shell"),
        ("/tasks/report", {"pages": 10**9}, "pages"),
        ("/tasks/report", {"pages": "ten"}, "pages"),
        ("/tasks/long", {"steps": 3, "step_seconds": -1}, "step_seconds"),
        ("/tasks/long", {"steps": 3, "priority": -1}, "priority"),
        ("/tasks/email", {"recipient": "a@example.com", "subject": "", "content": "c"}, "subject"),
        (
            "/tasks/email",
            {"recipient": "a@example.com", "subject": "s" * 201, "content": "c"},
            "subject",
        ),
        (
            "/tasks/email",
            {"recipient": "a@example.com\nBcc: all@example.com", "subject": "s", "content": "c"},
            "recipient",
        ),
        ("/tasks/email", {"subject": "s", "content": "c"}, "recipient"),
        ("/tasks/report", {"pages": 1, "depth": 0}, "depth"),
    ],
)
def test_a_bad_payload_gets_422_naming_the_field(
    api: str, path: str, body: dict[str, object], field: str
) -> None:
    response = httpx.post(f"{api}{path}", json=body, timeout=5)
    assert response.status_code == 422
    fields = [err["loc"][-1] for err in response.json()["detail"]]
    assert field in fields


def test_pool_grows_under_backlog_within_2s_and_shrinks_after_keepalive(
    redis_server: RedisServer, workers: WorkerFactory
) -> None:
    worker = workers.start("w1@grow", autoscale="4,1", AUTOSCALE_KEEPALIVE="3")
    app = control_app(redis_server.url)
    wait_for("worker up", lambda: autoscaler_info(app, worker.hostname), 30)
    started = time.monotonic()
    results = [
        app.send_task(LONG_JOB, kwargs={"steps": 4, "step_seconds": 1.0}, queue="celery")
        for _ in range(4)
    ]
    wait_for(
        "4 processes",
        lambda: (autoscaler_info(app, worker.hostname) or {}).get("current") == 4,
        5,
        0.05,
    )
    grew_in = time.monotonic() - started
    assert grew_in < 2.0, f"grew in {grew_in:.2f} s"
    for r in results:
        assert r.get(timeout=30)["steps"] == 4
    wait_for(
        "shrink back to 1",
        lambda: (autoscaler_info(app, worker.hostname) or {}).get("current") == 1,
        20,
        0.25,
    )


def test_the_operator_changes_one_named_workers_range(
    redis_server: RedisServer, workers: WorkerFactory
) -> None:
    w1 = workers.start("w1@range")
    w2 = workers.start("w2@range")
    app = control_app(redis_server.url)
    for w in (w1, w2):
        wait_for(f"{w.hostname} up", lambda w=w: autoscaler_info(app, w.hostname), 30)
    replies = app.control.autoscale(3, 2, destination=[w1.hostname], reply=True, timeout=1)
    assert [list(r) for r in replies] == [[w1.hostname]]
    one = autoscaler_info(app, w1.hostname)
    two = autoscaler_info(app, w2.hostname)
    assert one is not None
    assert two is not None
    assert (one["min"], one["max"], one["current"]) == (2, 3, 2)
    assert (two["min"], two["max"]) == (1, 4)


def test_a_restarted_worker_starts_from_the_range_file(
    redis_server: RedisServer, workers: WorkerFactory, tmp_path: Path
) -> None:
    range_file = tmp_path / "autoscale-range"
    range_file.write_text("2-3")
    worker = workers.start("w1@file", CELERIAC_RANGE_FILE=str(range_file))
    app = control_app(redis_server.url)
    info = wait_for("worker up", lambda: autoscaler_info(app, worker.hostname), 30)
    assert (info["min"], info["max"]) == (2, 3)


def test_the_load_report_is_what_the_operator_reads(
    redis_server: RedisServer, workers: WorkerFactory
) -> None:
    worker = workers.start(
        "w1@report", CELERIAC_POOL="ns/pool", POD_NAME="pool-abc", CELERIAC_REPORT_INTERVAL="0.5"
    )
    client = redis_server.client()
    raw = wait_for(
        "a load report", lambda: client.hget("celeriac.workers.ns/pool", worker.hostname), 30
    )
    load = WorkerLoad.model_validate_json(raw)
    assert load.hostname == "w1@report"
    assert load.pod == "pool-abc"
    assert (load.range_min, load.range_max) == (1, 4)
    assert abs(load.ts - time.time()) < 5
    worker.stop()
    # A warm shutdown withdraws the report, so the operator stops counting this worker at once.
    wait_for(
        "report withdrawn",
        lambda: client.hget("celeriac.workers.ns/pool", worker.hostname) is None,
        10,
    )


def test_sigterm_finishes_running_tasks_and_requeues_prefetched_ones(
    redis_server: RedisServer, workers: WorkerFactory
) -> None:
    first = workers.start(
        "w1@term", autoscale="2,2", REMAP_SIGTERM="SIGQUIT", CELERIAC_SOFT_SHUTDOWN_TIMEOUT="20"
    )
    app = control_app(redis_server.url)
    wait_for("worker up", lambda: autoscaler_info(app, first.hostname), 30)
    submitted = [
        app.send_task(LONG_JOB, kwargs={"steps": 3, "step_seconds": 1.0}, queue="celery")
        for _ in range(6)
    ]
    wait_for(
        "2 running",
        lambda: (
            len(
                (app.control.inspect(destination=[first.hostname], timeout=1).active() or {}).get(
                    first.hostname, []
                )
            )
            == 2
        ),
        10,
    )
    first.signal(signal.SIGTERM)
    assert first.wait(40) == 0
    second = workers.start("w2@term", autoscale="2,2")
    wait_for("second worker up", lambda: autoscaler_info(app, second.hostname), 30)
    states = [r.get(timeout=60) for r in submitted]
    assert len(states) == len(submitted) == 6
    assert all(s["steps"] == 3 for s in states)


def test_sigkill_of_a_pool_process_under_acks_late_runs_the_task_again(
    redis_server: RedisServer, workers: WorkerFactory
) -> None:
    worker = workers.start("w1@kill", autoscale="1,1")
    app = control_app(redis_server.url)
    wait_for("worker up", lambda: autoscaler_info(app, worker.hostname), 30)
    result = app.send_task(LONG_JOB, kwargs={"steps": 3, "step_seconds": 1.0}, queue="celery")
    wait_for("task running", lambda: result.state in ("STARTED", "PROGRESS"), 15)
    children = psutil.Process(worker.proc.pid).children()
    assert len(children) == 1
    children[0].send_signal(signal.SIGKILL)
    # task_reject_on_worker_lost requeues the message; the respawned process runs it again.
    assert result.get(timeout=60) == {"steps": 3, "seconds": 3.0}
    log = worker.log.read_text()
    assert "WorkerLostError" in log or "exited with 'signal 9 (SIGKILL)'" in log


def test_task_log_lines_carry_the_task_id(
    redis_server: RedisServer, workers: WorkerFactory
) -> None:
    worker = workers.start("w1@logs")
    app = control_app(redis_server.url)
    result = app.send_task(LONG_JOB, kwargs={"steps": 1, "step_seconds": 0.1}, queue="celery")
    result.get(timeout=30)
    lines = [
        json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")
    ]
    mine = [line for line in lines if line.get("task_id") == result.id]
    assert any(line["message"] == "long job finished 1 steps" for line in mine)
    assert all(line["task_name"] == "celeriac_worker.tasks.long_job" for line in mine)
