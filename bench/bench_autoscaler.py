"""celeriac's in-process autoscaler against Celery's stock autoscaler and fixed prefork pools.

One worker at a time on one local redis-server, prefetch 1, acks_late (the reference
app's settings), queue `bench`. Workers: `celeriac` and `stock` run `--autoscale=MAX,1`
(stock = `celery.worker.autoscale:Autoscaler`, keepalive 30 s); `fixed N` runs
`--concurrency=N`. Workloads (tasks in bench/autoscaler_app.py):

- io: tasks sleeping 100 ms;
- cpu: tasks burning 200 ms of CPU each;
- memory: tasks each holding MEM_MB of touched memory for 1 s, the worker in a cgroup v1
  memory cgroup limited to MEM_LIMIT (a nested cgroup of this process's own; the kernel
  OOM-kills a pool process when the pool outgrows it);
- bursty: bursts of sleeping tasks, GAP seconds apart.

Cells run interleaved: each repetition runs every (workload, worker) pair once, in an
order rotated per repetition; the table shows medians over repetitions. Per run:
throughput = tasks / makespan (first publish to last end; for bursty, the sum of the
bursts' makespans), queue wait = start in a pool process minus publish, process-seconds
= pool processes (children of the worker, counted from /proc every 0.1 s) integrated from
the first publish to the last task's end, OOM kills from the cgroup's memory.oom_control.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from celery import Celery  # noqa: E402
from celery.result import AsyncResult  # noqa: E402
from tests.support.redis_server import running_redis  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402
from tests.support.worker_process import Worker, WorkerFactory, child_pids  # noqa: E402

QUEUE = "bench"
MiB = 1 << 20


@dataclass(frozen=True)
class Workload:
    name: str
    task: str
    args: tuple[Any, ...]
    bursts: int
    per_burst: int
    gap_s: float
    workers: tuple[str, ...]
    memory_limit: int | None = None


@dataclass
class Run:
    throughput: float
    wait_p50: float
    wait_p95: float
    makespan: float
    process_s: float
    mean_processes: float
    oom_kills: int
    unfinished: int
    burst_makespans: tuple[float, ...] = ()


@dataclass
class ProcessCounter:
    """Integrates the worker's pool size over time from /proc (the same reading for every worker)."""

    pid: int
    samples: list[tuple[float, int]] = field(default_factory=list)
    halt: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.halt.is_set():
            self.samples.append((time.time(), len(child_pids(self.pid))))
            self.halt.wait(0.1)

    def process_seconds(self, start: float, end: float) -> float:
        total = 0.0
        for (t0, n), (t1, _) in zip(self.samples, self.samples[1:], strict=False):
            lo, hi = max(t0, start), min(t1, end)
            if hi > lo:
                total += n * (hi - lo)
        return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class MemoryCgroup:
    """A nested cgroup v1 memory cgroup of this process's own, so the limit is a kernel's limit."""

    def __init__(self, limit_bytes: int) -> None:
        own = next(
            line.split(":", 2)[2]
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.split(":", 2)[1] == "memory"
        )
        self.path = (
            Path("/sys/fs/cgroup/memory") / own.strip("/") / f"celeriac-bench-{time.time_ns()}"
        )
        self.path.mkdir()
        (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))

    def oom_kills(self) -> int:
        for line in (self.path / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def remove(self) -> None:
        wait_for("the cgroup to empty", lambda: not (self.path / "cgroup.procs").read_text(), 20)
        self.path.rmdir()


class BenchWorkers(WorkerFactory):
    def start_bench(
        self, hostname: str, kind: str, range_max: int, cgroup: MemoryCgroup | None
    ) -> Worker:
        size = (
            f"--concurrency={kind.split()[1]}"
            if kind.startswith("fixed")
            else f"--autoscale={range_max},1"
        )
        env = {"BENCH_STOCK_AUTOSCALER": "1"} if kind == "stock" else {}
        celery_args = [
            "-m", "celery", "-A", "bench.autoscaler_app", "worker", size, "--pool=prefork",
            f"--hostname={hostname}", f"--queues={QUEUE}", "--loglevel=WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        if cgroup is None:
            return self.spawn(hostname, celery_args, env)
        # Enter the cgroup, then exec celery: the main process and every pool process are in it.
        enter = (
            "import os, sys; open(sys.argv[1], 'w').write(str(os.getpid()));"
            " os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
        )
        return self.spawn(
            hostname, ["-c", enter, str(cgroup.path / "cgroup.procs"), *celery_args], env
        )


def one_run(factory: BenchWorkers, app: Celery, load: Workload, kind: str, range_max: int) -> Run:
    cgroup = MemoryCgroup(load.memory_limit) if load.memory_limit else None
    host = f"w@{kind.replace(' ', '')}-{time.monotonic_ns()}"
    worker = factory.start_bench(host, kind, range_max, cgroup)
    counter = ProcessCounter(worker.proc.pid)
    try:
        wait_for("worker", lambda: app.control.ping(destination=[host], timeout=1), 60)
        time.sleep(0.5)  # let an autoscaler settle at its floor
        thread = threading.Thread(target=counter.run, daemon=True)
        thread.start()
        spans: list[tuple[float, list[AsyncResult]]] = []
        for burst in range(load.bursts):
            if burst:
                time.sleep(load.gap_s)
            published = time.time()
            results = [
                app.send_task(load.task, args=load.args, queue=QUEUE) for _ in range(load.per_burst)
            ]
            spans.append((published, results))
            for r in results:
                r.get(timeout=240, propagate=False)
        counter.halt.set()
        thread.join()
        return summarize(spans, counter, cgroup)
    finally:
        counter.halt.set()
        worker.stop()
        if cgroup is not None:
            cgroup.remove()


def summarize(
    spans: list[tuple[float, list[AsyncResult]]],
    counter: ProcessCounter,
    cgroup: MemoryCgroup | None,
) -> Run:
    waits: list[float] = []
    busy_s = 0.0
    bursts: list[float] = []
    unfinished = 0
    last_end = spans[0][0]
    for published, results in spans:
        ends = [published]
        for r in results:
            doc = r.result if r.successful() else None
            if not isinstance(doc, dict):
                unfinished += 1
                continue
            waits.append(doc["started"] - published)
            ends.append(doc["ended"])
        busy_s += max(ends) - published
        bursts.append(round(max(ends) - published, 2))
        last_end = max(last_end, *ends)
    first = spans[0][0]
    process_s = counter.process_seconds(first, last_end)
    tasks = sum(len(r) for _, r in spans) - unfinished
    return Run(
        throughput=tasks / busy_s if busy_s else 0.0,
        wait_p50=percentile(waits, 0.5) if waits else float("nan"),
        wait_p95=percentile(waits, 0.95) if waits else float("nan"),
        makespan=last_end - first,
        process_s=process_s,
        mean_processes=process_s / (last_end - first) if last_end > first else 0.0,
        oom_kills=cgroup.oom_kills() if cgroup is not None else 0,
        unfinished=unfinished,
        burst_makespans=tuple(bursts),
    )


def workloads(scale: float, cores: int, range_max: int) -> list[Workload]:
    def n(x: int) -> int:
        return max(1, round(x * scale))

    fixed = (f"fixed {cores}", f"fixed {range_max}")
    return [
        Workload("io: sleep 100 ms", "bench.sleep", (0.1,), 1, n(320), 0, ("celeriac", "stock", *fixed)),
        Workload("cpu: 200 ms CPU", "bench.spin", (0.2,), 1, n(60), 0, ("celeriac", "stock", "fixed 1", *fixed)),
        Workload(
            "memory: 300 MB for 1 s, 1 GiB limit", "bench.hold", (300, 1.0), 1, n(24), 0,
            ("celeriac", "stock", f"fixed {cores}"), memory_limit=1024 * MiB,
        ),
        Workload(
            "bursty: sleep 100 ms, 3 bursts 8 s apart", "bench.sleep", (0.1,), 3, n(80), 8.0,
            ("celeriac", "stock", f"fixed {range_max}"),
        ),
    ]  # fmt: skip


def median_row(runs: list[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def table(results: dict[tuple[str, str], list[Run]]) -> list[str]:
    lines = [
        "| workload | worker | tasks/s | wait p50 | wait p95 | makespan | process-s | mean procs | OOM kills | unfinished |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (load, kind), runs in results.items():
        m = {a: median_row(runs, a) for a in Run.__dataclass_fields__ if a != "burst_makespans"}
        kills = "/".join(str(r.oom_kills) for r in runs)
        lines.append(
            f"| {load} | {kind} | {m['throughput']:.1f} | {m['wait_p50']:.2f} s | {m['wait_p95']:.2f} s"
            f" | {m['makespan']:.1f} s | {m['process_s']:.1f} | {m['mean_processes']:.1f} | {kills}"
            f" | {sum(r.unfinished for r in runs)} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplies every workload's task count"
    )
    parser.add_argument("--max", type=int, default=8, help="range max of the autoscalers")
    parser.add_argument("--only", default="", help="run only workloads whose name starts with this")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "autoscaler.md")
    args = parser.parse_args()
    # A SIGTERM unwinds like Ctrl-C, so workers, cgroups and redis-server are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cores = len(os.sched_getaffinity(0))
    loads = [w for w in workloads(args.scale, cores, args.max) if w.name.startswith(args.only)]
    cells = [(w, k) for w in loads for k in w.workers]
    results: dict[tuple[str, str], list[Run]] = {(w.name, k): [] for w, k in cells}
    started = time.time()
    load_before = os.getloadavg()[1]
    with running_redis() as redis, tempfile.TemporaryDirectory() as tmp:
        factory = BenchWorkers(redis.url, Path(tmp))
        app = Celery("bench", broker=redis.url, backend=redis.url)
        for rep in range(args.reps):
            shift = rep % len(cells)
            for load, kind in cells[shift:] + cells[:shift]:
                run = one_run(factory, app, load, kind, args.max)
                results[(load.name, kind)].append(run)
                print(f"rep {rep + 1} {load.name:40} {kind:9} {run}", flush=True)
        factory.stop_all()
    lines = [
        "# In-process autoscaler: celeriac, Celery's stock autoscaler, fixed pools",
        "",
        f"`python bench/bench_autoscaler.py --reps {args.reps} --scale {args.scale}` on {platform.node()}"
        f" ({cores} cores, {platform.machine()}, Linux {platform.release()}, Python {platform.python_version()}),"
        f" {time.strftime('%Y-%m-%d', time.gmtime(started))}, {(time.time() - started) / 60:.0f} min;"
        f" `--autoscale={args.max},1` for both autoscalers; medians of {args.reps} interleaved repetitions"
        " (OOM kills: every repetition). Load average (5 min) of the shared machine:"
        f" {load_before:.1f} at the start, {os.getloadavg()[1]:.1f} at the end.",
        "",
        *table(results),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
