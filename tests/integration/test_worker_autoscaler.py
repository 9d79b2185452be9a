"""The in-process autoscaler on real prefork workers: backlog, CPU headroom, the operator's range."""

from __future__ import annotations

import time
from pathlib import Path

from celery import Celery
from celery.result import AsyncResult

from celeriac.signals.model import WorkerLoad
from tests.integration.worker_fixtures import (
    LONG_JOB,
    REPORT,
    EntryWorkers,
    app_fixture,
    workers_fixture,
)
from tests.integration.worker_tasks_app import HOLD_MEMORY
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for
from tests.support.worker_process import autoscaler_info

FIXTURES = (app_fixture, workers_fixture)


def current(app: Celery, hostname: str) -> int | None:
    info = autoscaler_info(app, hostname)
    return None if info is None else int(info["current"])


def test_pool_grows_under_backlog_within_2s_and_shrinks_after_keepalive(
    workers: EntryWorkers, app: Celery
) -> None:
    worker = workers.started(app, "w1@grow", autoscale="4,1", AUTOSCALE_KEEPALIVE="3")
    assert current(app, worker.hostname) == 1
    started = time.monotonic()
    results = [
        app.send_task(LONG_JOB, kwargs={"steps": 4, "step_seconds": 1.0}, queue="celery")
        for _ in range(4)
    ]
    # Unmeasured tasks count as CPU-bound: 2 processes at once, all 4 once the first
    # tasks show they sleep. How fast belongs in bench/bench_autoscaler.py.
    wait_for("4 processes", lambda: current(app, worker.hostname) == 4, 10, 0.05)
    print(f"grew 1 -> 4 processes in {time.monotonic() - started:.2f} s")
    assert [r.get(timeout=30)["steps"] for r in results] == [4, 4, 4, 4]
    idle_at = time.monotonic()
    wait_for("shrink back to 1", lambda: current(app, worker.hostname) == 1, 20, 0.25)
    # Not before the keepalive: a pool that shrinks at once thrashes on bursty load.
    assert time.monotonic() - idle_at >= 1.0


def test_growth_stops_while_the_pod_has_no_cpu_headroom(workers: EntryWorkers, app: Celery) -> None:
    # One CPU-bound task already wants more than 30 % of the 1-core budget.
    worker = workers.started(
        app,
        "w1@cpu",
        autoscale="4,1",
        CELERIAC_CPU_LIMIT_CORES="1",
        CELERIAC_TARGET_CPU_PERCENT="30",
    )
    heavy = app.send_task(
        REPORT, kwargs={"title": "h", "pages": 20, "depth": 1500}, queue="reports"
    )
    wait_for(
        "the running task to be measured CPU-bound",
        lambda: (
            (autoscaler_info(app, worker.hostname) or {}).get("task_cores", {}).get(REPORT, 0) > 0.5
        ),
        15,
        0.2,
    )
    waiting = [
        app.send_task(LONG_JOB, kwargs={"steps": 1, "step_seconds": 0.1}, queue="celery")
        for _ in range(3)
    ]
    time.sleep(1.5)
    info = autoscaler_info(app, worker.hostname)
    assert info is not None
    assert heavy.state in ("STARTED", "PENDING"), "the CPU task ended too early to test anything"
    assert info["current"] == 1
    assert info["cpu_limited"] >= 1
    assert heavy.get(timeout=120)["pages"] == 20
    assert [r.get(timeout=30)["steps"] for r in waiting] == [1, 1, 1]


def pool_sizes_while(app: Celery, hostname: str, results: list[AsyncResult]) -> list[int]:
    """Every pool size inspect reports until these tasks finish (bounded)."""
    sizes = []
    deadline = time.monotonic() + 120
    while not all(r.ready() for r in results) and time.monotonic() < deadline:
        info = autoscaler_info(app, hostname)
        if info is not None:
            sizes.append(int(info["current"]))
        time.sleep(0.1)
    return sizes


def test_cpu_bound_tasks_hold_the_pool_at_the_pods_cores(
    workers: EntryWorkers, app: Celery
) -> None:
    worker = workers.started(
        app, "w1@cpubound", autoscale="6,1", CELERIAC_CPU_LIMIT_CORES="2", AUTOSCALE_KEEPALIVE="30"
    )
    reports = [
        app.send_task(REPORT, kwargs={"title": "c", "pages": 6, "depth": 200}, queue="reports")
        for _ in range(8)
    ]
    sizes = pool_sizes_while(app, worker.hostname, reports)
    assert [r.get(timeout=10)["pages"] for r in reports] == [6] * 8
    # 2 cores at an 80 % target: the second process starts (1 core wanted < 1.6), a third never.
    assert max(sizes) == 2, sizes
    info = autoscaler_info(app, worker.hostname)
    assert info is not None
    assert info["cpu_limited"] >= 1
    assert info["cpu_limit_cores"] == 2.0


def test_sleeping_tasks_grow_past_the_cores_to_the_range_max(
    workers: EntryWorkers, app: Celery
) -> None:
    worker = workers.started(app, "w1@iobound", autoscale="6,1", CELERIAC_CPU_LIMIT_CORES="1")
    jobs = [
        app.send_task(LONG_JOB, kwargs={"steps": 4, "step_seconds": 1.0}, queue="celery")
        for _ in range(6)
    ]
    wait_for("6 processes on 1 core", lambda: current(app, worker.hostname) == 6, 15, 0.1)
    assert [r.get(timeout=30)["steps"] for r in jobs] == [4] * 6


def test_growth_stops_where_one_more_process_would_not_fit_the_memory_limit(
    workers: EntryWorkers, app: Celery
) -> None:
    limit = 800 << 20
    worker = workers.start_app(
        "w1@memory",
        "tests.integration.worker_tasks_app",
        autoscale="6,1",
        CELERIAC_CPU_LIMIT_CORES="2",
        CELERIAC_MEMORY_LIMIT_BYTES=str(limit),
    )
    wait_for("the worker", lambda: autoscaler_info(app, worker.hostname), 30)
    holds = [app.send_task(HOLD_MEMORY, args=(200, 2.0), queue="celery") for _ in range(6)]
    sizes = pool_sizes_while(app, worker.hostname, holds)
    assert [r.get(timeout=10) for r in holds] == [200] * 6
    # Each process peaks at 200 MB plus what it shares with the main process: 2 fit in
    # 90 % of 800 MB, 3 do not. CPU (sleeping tasks) would have allowed all 6.
    assert max(sizes) == 2, sizes
    info = autoscaler_info(app, worker.hostname)
    assert info is not None
    assert info["memory_limited"] >= 1
    assert info["memory_limit_bytes"] == limit


def test_the_operator_changes_one_named_workers_range(workers: EntryWorkers, app: Celery) -> None:
    w1 = workers.started(app, "w1@range")
    w2 = workers.started(app, "w2@range")
    replies = app.control.autoscale(3, 2, destination=[w1.hostname], reply=True, timeout=1)
    assert [list(r) for r in replies] == [[w1.hostname]]
    one = autoscaler_info(app, w1.hostname)
    two = autoscaler_info(app, w2.hostname)
    assert one is not None
    assert two is not None
    assert (one["min"], one["max"], one["current"]) == (2, 3, 2)
    assert (two["min"], two["max"], two["current"]) == (1, 4, 1)


def test_a_restarted_worker_starts_from_the_range_file_and_follows_its_changes(
    workers: EntryWorkers, app: Celery, tmp_path: Path
) -> None:
    range_file = tmp_path / "autoscale-range"
    range_file.write_text("2-3")
    worker = workers.started(
        app, "w1@file", CELERIAC_RANGE_FILE=str(range_file), AUTOSCALE_KEEPALIVE="1"
    )
    info = autoscaler_info(app, worker.hostname)
    assert info is not None
    assert (info["min"], info["max"], info["current"]) == (2, 3, 2)
    # The kubelet rewrites the downward-API file when the operator changes the annotation.
    range_file.write_text("3-4")
    wait_for(
        "range 3-4 from the file",
        lambda: (
            (i := autoscaler_info(app, worker.hostname)) is not None
            and (i["min"], i["max"], i["current"]) == (3, 4, 3)
        ),
        15,
        0.25,
    )


def test_the_published_load_validates_against_the_operators_model(
    redis_server: RedisServer, workers: EntryWorkers
) -> None:
    # The worker's own app prefixes its keys too, so talk to it through one configured the same way.
    prefixed = Celery(
        "p",
        broker=redis_server.url,
        backend=redis_server.url,
        broker_transport_options={"global_keyprefix": "pfx:"},
        result_backend_transport_options={"global_keyprefix": "pfx:"},
    )
    worker = workers.started(
        prefixed,
        "w1@report",
        CELERIAC_POOL="ns/pool",
        CELERIAC_GLOBAL_KEYPREFIX="pfx:",
        POD_NAME="pool-abc",
        CELERIAC_REPORT_INTERVAL="0.5",
    )
    client = redis_server.client()
    key = "pfx:celeriac.workers.ns/pool"
    idle = WorkerLoad.model_validate_json(
        wait_for("a load report", lambda: client.hget(key, worker.hostname), 30)
    )
    assert (idle.hostname, idle.pod, idle.running, idle.pool_size) == (
        "w1@report",
        "pool-abc",
        0,
        1,
    )
    assert (idle.range_min, idle.range_max) == (1, 4)
    assert 0 < client.ttl(key) <= 60

    running = [
        prefixed.send_task(LONG_JOB, kwargs={"steps": 3, "step_seconds": 1.0}, queue="celery")
        for _ in range(2)
    ]
    busy = wait_for(
        "a report with 2 running",
        lambda: (
            (raw := client.hget(key, worker.hostname)) is not None
            and (doc := WorkerLoad.model_validate_json(raw)).running == 2
            and doc
        ),
        15,
        0.2,
    )
    assert busy.pool_size == 2
    assert busy.reserved == 2
    assert abs(busy.ts - time.time()) < 5
    assert [r.get(timeout=30)["steps"] for r in running] == [3, 3]
    done = wait_for(
        "a report with 2 processed and none running",
        lambda: (
            (
                doc := WorkerLoad.model_validate_json(client.hget(key, worker.hostname) or b"{}")
            ).processed_total
            == 2
            and doc.running == 0
            and doc
        ),
        10,
        0.2,
    )
    assert done.reserved == 0
    assert done.mean_task_seconds is not None
    assert 2.5 < done.mean_task_seconds < 6
    assert done.p99_task_seconds is not None
    worker.stop()
    # Shutdown withdraws the report, so the operator stops counting this worker at once.
    wait_for("report withdrawn", lambda: client.hget(key, worker.hostname) is None, 10)
