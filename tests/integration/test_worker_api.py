"""The worker image's API: tasks posted over HTTP run on real workers; bad input is refused."""

from __future__ import annotations

import socketserver
import threading
import time
from pathlib import Path

import httpx
import pytest
from celery import Celery

from tests.integration.worker_fixtures import (
    EntryWorkers,
    api_fixture,
    app_fixture,
    start_api,
    task_log,
    workers_fixture,
)
from tests.support.redis_server import RedisServer, free_port
from tests.support.smtp_sink import Mailbox, _Handler, smtp_sink
from tests.support.waiting import wait_for

FIXTURES = (api_fixture, app_fixture, workers_fixture)


def state_of(api_url: str, task_id: str) -> dict[str, object]:
    response = httpx.get(f"{api_url}/tasks/{task_id}", timeout=5)
    assert response.status_code == 200
    doc: dict[str, object] = response.json()
    return doc


def wait_state(api_url: str, task_id: str, state: str, timeout_s: float = 40) -> dict[str, object]:
    return wait_for(
        f"task {task_id} in state {state}",
        lambda: (doc := state_of(api_url, task_id))["state"] == state and doc,
        timeout_s,
        0.1,
        context=lambda: f"last state: {state_of(api_url, task_id)}",
    )


def test_tasks_posted_through_the_api_run_and_their_results_are_readable(
    workers: EntryWorkers, app: Celery, api: str
) -> None:
    with smtp_sink() as (smtp_port, mailbox):
        workers.started(app, "w1@api", SMTP_PORT=str(smtp_port))
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
        long = httpx.post(f"{api}/tasks/long", json={"steps": 2, "step_seconds": 0.2}, timeout=5)
        assert [r.status_code for r in (report, email, long)] == [202, 202, 202]
        assert [r.json()["queue"] for r in (report, email, long)] == ["reports", "emails", "celery"]
        for accepted in (report.json(), email.json(), long.json()):
            assert wait_state(api, accepted["id"], "SUCCESS")["id"] == accepted["id"]
        rendered = state_of(api, report.json()["id"])["result"]
        assert isinstance(rendered, dict)
        assert rendered["pages"] == 2
        assert rendered["bytes"] > 1000
        assert state_of(api, long.json()["id"])["result"] == {"steps": 2, "seconds": 0.4}
        assert len(mailbox.messages) == 1
        assert "Subject: hello" in mailbox.messages[0]
        assert "queued by celeriac" in mailbox.messages[0]


def test_a_long_job_reports_its_progress_while_it_runs(
    workers: EntryWorkers, app: Celery, api: str
) -> None:
    workers.started(app, "w1@progress", autoscale="1,1")
    accepted = httpx.post(f"{api}/tasks/long", json={"steps": 6, "step_seconds": 0.5}, timeout=5)
    progress = wait_state(api, accepted.json()["id"], "PROGRESS", 20)["progress"]
    assert isinstance(progress, dict)
    assert progress["total"] == 6
    assert 0 <= progress["done"] < 6
    wait_state(api, accepted.json()["id"], "SUCCESS", 30)


def test_a_transient_smtp_failure_is_retried_with_backoff_until_it_succeeds(
    workers: EntryWorkers, app: Celery, api: str
) -> None:
    smtp_port = free_port()  # nothing listens yet: connection refused is transient
    worker = workers.started(app, "w1@retry", SMTP_PORT=str(smtp_port))
    accepted = httpx.post(
        f"{api}/tasks/email",
        json={"recipient": "ops@example.com", "subject": "later", "content": "c"},
        timeout=5,
    ).json()
    wait_for(
        "a first retry",
        lambda: any("Retry in" in doc["message"] for doc in task_log([worker], accepted["id"])),
        20,
    )
    mailbox = Mailbox()
    handler = type("Handler", (_Handler,), {"mailbox": mailbox})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", smtp_port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # Backoff 2 s with full jitter doubles per attempt: the 3rd retry is due within 2+4+8 s.
        wait_state(api, accepted["id"], "SUCCESS", 30)
    finally:
        server.shutdown()
        server.server_close()
    assert len(mailbox.messages) == 1
    retries = [d for d in task_log([worker], accepted["id"]) if "Retry in" in d["message"]]
    assert len(retries) >= 1


def test_readiness_follows_the_broker(
    workers: EntryWorkers, redis_server: RedisServer, tmp_path: Path
) -> None:
    server = start_api(workers, tmp_path / "api.log")
    try:
        assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
        redis_server.stop()
        response = httpx.get(f"{server.url}/readyz", timeout=10)
        assert response.status_code == 503
        assert "broker unreachable" in response.json()["detail"]
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=10)


def test_the_openapi_document_describes_every_endpoint(api: str) -> None:
    spec = httpx.get(f"{api}/openapi.json", timeout=5).json()
    assert set(spec["paths"]) == {
        "/tasks/email",
        "/tasks/report",
        "/tasks/long",
        "/tasks/{task_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    assert "recipient" in spec["components"]["schemas"]["EmailRequest"]["properties"]
    assert httpx.get(f"{api}/docs", timeout=5).status_code == 200


def test_the_api_counts_what_it_enqueued(api: str) -> None:
    for _ in range(3):
        httpx.post(f"{api}/tasks/long", json={"steps": 1, "step_seconds": 0.1}, timeout=5)
    text = httpx.get(f"{api}/metrics", timeout=5).text
    assert (
        'celeriac_api_tasks_enqueued_total{queue="celery",task="celeriac_worker.tasks.long_job"} 3.0'
        in text
    )


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
    response = httpx.get(f"{api}/tasks/not-a-task-id", timeout=5)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "task_id"]


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
    assert fields == [field]


def test_a_higher_priority_task_overtakes_a_waiting_backlog(
    workers: EntryWorkers, app: Celery, api: str
) -> None:
    queued = [
        httpx.post(
            f"{api}/tasks/long", json={"steps": 1, "step_seconds": 0.2, "priority": 9}, timeout=5
        ).json()
        for _ in range(4)
    ]
    urgent = httpx.post(
        f"{api}/tasks/long", json={"steps": 1, "step_seconds": 0.2, "priority": 0}, timeout=5
    ).json()
    workers.started(app, "w1@prio", autoscale="1,1")
    finished = {}
    for accepted in [*queued, urgent]:
        wait_state(api, accepted["id"], "SUCCESS", 30)
        finished[accepted["id"]] = time.time()
    docs = {a["id"]: task_log(workers.workers, a["id"]) for a in [*queued, urgent]}
    started_at = {
        task_id: min(d["ts"] for d in lines if d["message"].startswith("long job starting"))
        for task_id, lines in docs.items()
    }
    first = min(started_at, key=started_at.__getitem__)
    assert first == urgent["id"]
