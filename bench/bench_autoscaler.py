"""Overhead of the in-process autoscaler: throughput against a fixed-size prefork pool.

Same machine, same Redis, same tasks: N short sleeping tasks (I/O-like) and N small PDF
renders (CPU), each run by one worker started with the image's entry as `--autoscale=4,1`
(celeriac's autoscaler, starting at 1 process) and as `--concurrency=4` (a fixed pool, no
autoscaler).
Also the grow latency: from publishing 4 long tasks to an idle 1-process worker until
`inspect stats()['autoscaler']['current']` reads 4. Results: bench/results/autoscaler.md.
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
from tests.integration.worker_fixtures import EntryWorkers  # noqa: E402
from tests.support.redis_server import running_redis  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402
from tests.support.worker_process import autoscaler_info  # noqa: E402

WORKLOADS = {
    "sleep 50 ms": ("celeriac_worker.tasks.long_job", {"steps": 1, "step_seconds": 0.05}, "celery"),
    "PDF render": (
        "celeriac_worker.tasks.render_report",
        {"title": "b", "pages": 1, "depth": 20},
        "reports",
    ),
}


def run(
    factory: EntryWorkers,
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
        worker = factory.start(host, concurrency=4)  # no autoscaler at all
    try:
        wait_for("worker", lambda: app.control.ping(destination=[host], timeout=1), 60)
        started = time.perf_counter()
        results = [app.send_task(task, kwargs=kwargs, queue=queue) for _ in range(n)]
        for r in results:
            r.get(timeout=300)
        return n / (time.perf_counter() - started)
    finally:
        worker.stop()


def grow_latencies(factory: EntryWorkers, app: Celery, rounds: int) -> list[float]:
    host = f"w@grow-{time.monotonic_ns()}"
    worker = factory.start(host, autoscale="4,1", AUTOSCALE_KEEPALIVE="1")
    out = []
    try:
        wait_for("worker", lambda: autoscaler_info(app, host), 60)
        for _ in range(rounds):
            wait_for(
                "idle at 1", lambda: (autoscaler_info(app, host) or {}).get("current") == 1, 30
            )
            started = time.perf_counter()
            results = [
                app.send_task(
                    "celeriac_worker.tasks.long_job",
                    kwargs={"steps": 1, "step_seconds": 2.0},
                    queue="celery",
                )
                for _ in range(4)
            ]
            wait_for(
                "4 processes",
                lambda: (autoscaler_info(app, host) or {}).get("current") == 4,
                10,
                0.02,
            )
            out.append(time.perf_counter() - started)
            for r in results:
                r.get(timeout=60)
    finally:
        worker.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--grow-rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "autoscaler.md")
    args = parser.parse_args()
    rows = []
    with running_redis() as redis, tempfile.TemporaryDirectory() as tmp:
        factory = EntryWorkers(redis.url, Path(tmp))
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
        grows = grow_latencies(factory, app, args.grow_rounds)
        print("grow 1 -> 4 processes: " + ", ".join(f"{g:.2f}" for g in grows) + " s", flush=True)
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
        *[
            f"- {w}: the autoscaling worker (best run) reaches {auto / fixed * 100:.0f} % of the fixed pool's throughput."
            for (w, _, auto, _), (_, _, fixed, _) in zip(rows[::2], rows[1::2], strict=True)
        ],
        "",
        f"Grow latency, idle 1-process worker to 4 processes after 4 tasks are published"
        f" ({len(grows)} runs, keepalive 1 s between runs): median {sorted(grows)[len(grows) // 2]:.2f} s,"
        f" max {max(grows):.2f} s ({', '.join(f'{g:.2f}' for g in grows)}).",
        "",
        "Measured while other work shared the 2 cores; the ratios matter more than the rates.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
