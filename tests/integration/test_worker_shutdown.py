"""Shutdown and crashes under acks_late: no task is lost, and each finishes exactly once."""

from __future__ import annotations

import os
import signal

from celery import Celery

from tests.integration.worker_fixtures import (
    LONG_JOB,
    EntryWorkers,
    app_fixture,
    runs_of,
    workers_fixture,
)
from tests.support.waiting import wait_for
from tests.support.worker_process import child_pids

FIXTURES = (app_fixture, workers_fixture)


def running_on(app: Celery, hostname: str) -> int:
    active = app.control.inspect(destination=[hostname], timeout=1).active() or {}
    return len(active.get(hostname, []))


def test_sigterm_finishes_running_tasks_and_requeues_prefetched_ones(
    workers: EntryWorkers, app: Celery
) -> None:
    first = workers.started(app, "w1@term", autoscale="2,2", CELERIAC_SOFT_SHUTDOWN_TIMEOUT="8")
    running = [
        app.send_task(LONG_JOB, kwargs={"steps": 3, "step_seconds": 1.0}, queue="celery")
        for _ in range(2)
    ]
    wait_for("2 running", lambda: running_on(app, first.hostname) == 2, 10)
    # ETA tasks are prefetched past the pool's size and held in the worker's memory.
    held = [
        app.send_task(
            LONG_JOB, kwargs={"steps": 1, "step_seconds": 0.1}, queue="celery", countdown=6
        )
        for _ in range(2)
    ]
    wait_for(
        "2 ETA tasks held by the worker",
        lambda: (
            len(
                (
                    app.control.inspect(destination=[first.hostname], timeout=1).scheduled() or {}
                ).get(first.hostname, [])
            )
            == 2
        ),
        10,
    )
    waiting = [
        app.send_task(LONG_JOB, kwargs={"steps": 1, "step_seconds": 0.1}, queue="celery")
        for _ in range(2)
    ]
    first.signal(signal.SIGTERM)
    assert first.wait(40) == 0
    second = workers.started(app, "w2@term", autoscale="2,2")
    submitted = running + held + waiting
    results = [r.get(timeout=60) for r in submitted]
    assert len(results) == len(submitted) == 6
    both = [first, second]
    # Each ran exactly once: the running two finished on the first worker and the held
    # ETA tasks went back to the broker; a waiting one the first worker fetched before the
    # signal may run on either.
    assert [runs_of([first], r.id) for r in running + held] == [1, 1, 0, 0]
    assert [runs_of(both, r.id) for r in submitted] == [1, 1, 1, 1, 1, 1]


def test_sigterm_past_the_soft_shutdown_budget_requeues_running_tasks(
    workers: EntryWorkers, app: Celery
) -> None:
    first = workers.started(app, "w1@cold", autoscale="2,2", CELERIAC_SOFT_SHUTDOWN_TIMEOUT="1")
    submitted = [
        app.send_task(LONG_JOB, kwargs={"steps": 8, "step_seconds": 0.5}, queue="celery")
        for _ in range(2)
    ]
    wait_for("2 running", lambda: running_on(app, first.hostname) == 2, 10)
    first.signal(signal.SIGTERM)
    first.wait(30)
    assert all(r.state != "SUCCESS" for r in submitted)
    second = workers.started(app, "w2@cold", autoscale="2,2")
    assert [r.get(timeout=60) for r in submitted] == [{"steps": 8, "seconds": 4.0}] * 2
    assert [runs_of([first], r.id) for r in submitted] == [1, 1]
    assert [runs_of([second], r.id) for r in submitted] == [1, 1]


def test_sigkill_of_a_pool_process_under_acks_late_runs_the_task_again(
    workers: EntryWorkers, app: Celery
) -> None:
    worker = workers.started(app, "w1@kill", autoscale="1,1")
    result = app.send_task(LONG_JOB, kwargs={"steps": 3, "step_seconds": 1.0}, queue="celery")
    wait_for("task running", lambda: result.state in ("STARTED", "PROGRESS"), 15)
    children = child_pids(worker.proc.pid)
    assert len(children) == 1
    os.kill(children[0], signal.SIGKILL)
    # task_reject_on_worker_lost requeues the message; the respawned process runs it again.
    assert result.get(timeout=60) == {"steps": 3, "seconds": 3.0}
    assert runs_of([worker], result.id) == 2
