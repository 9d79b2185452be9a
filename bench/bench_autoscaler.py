"""Overhead of the in-process autoscaler: throughput against a fixed-size prefork pool.

Same machine, same Redis, same tasks: N short sleeping tasks (I/O-like) and N small PDF
renders (CPU), each run by one worker started as `--autoscale=4,1` (celeriac's autoscaler)
and then as `--concurrency=4`. Results: bench/results/autoscaler.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from celery import Celery  # noqa: E402
from tests.support.redis_server import running_redis  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402
from tests.support.worker_process import WorkerFactory, autoscaler_info  # noqa: E402

WORKLOADS = {
    "sleep 50 ms": ("celeriac_worker.tasks.long_job", {"steps": 1, "step_seconds": 0.05}, "celery"),
    "PDF render": (
        "celeriac_worker.tasks.render_report",
        {"title": "b", "pages": 1, "depth": 20},
        "reports",
    ),
}


def run(
    factory: WorkerFactory,
    app: Celery,
    mode: str,
    task: str,
    kwargs: dict[str, object],
    queue: str,
    n: int,
) -> float:
    host = f"w@{mode.replace(' ', '')}-{time.monotonic_ns()}"
    if mode == "autoscale 4,1":
        worker = factory.start(host, autoscale="4,1", AUTOSCALE_KEEPALIVE="30")
    else:
        worker = factory.start(host, autoscale="4,4")  # min = max: a fixed pool of 4
    try:
        wait_for("worker", lambda: autoscaler_info(app, host), 60)
        started = time.perf_counter()
        results = [app.send_task(task, kwargs=kwargs, queue=queue) for _ in range(n)]
        for r in results:
            r.get(timeout=300)
        return n / (time.perf_counter() - started)
    finally:
        worker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "autoscaler.md")
    args = parser.parse_args()
    rows = []
    with running_redis() as redis, tempfile.TemporaryDirectory() as tmp:
        factory = WorkerFactory(redis.url, Path(tmp))
        app = Celery("bench", broker=redis.url, backend=redis.url)
        for label, (task, kwargs, queue) in WORKLOADS.items():
            for mode in ("autoscale 4,1", "fixed 4"):
                rates = [
                    run(factory, app, mode, task, kwargs, queue, args.tasks)
                    for _ in range(args.rounds)
                ]
                rows.append((label, mode, max(rates), min(rates)))
                print(
                    f"{label:12} {mode:14} best {max(rates):7.1f} tasks/s  worst {min(rates):7.1f}",
                    flush=True,
                )
        factory.stop_all()
    lines = [
        "# In-process autoscaler overhead",
        "",
        f"{args.tasks} tasks per run, {args.rounds} runs per cell, one worker, 2-core machine;",
        "`python bench/bench_autoscaler.py`. The autoscaling worker starts at 1 process and grows.",
        "",
        "| workload | worker | best tasks/s | worst tasks/s |",
        "| --- | --- | --- | --- |",
        *[f"| {w} | {m} | {best:.1f} | {worst:.1f} |" for w, m, best, worst in rows],
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
