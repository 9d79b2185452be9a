"""A CPU-, memory- and backlog-aware `--autoscale` for prefork workers, steered by the operator.

Celery calls `_maybe_scale` on every received task and on a timer every `keepalive`
seconds (prefork on Redis has no autoscaler thread); this subclass sets that timer to a
fraction of a second and keeps Celery's keepalive (env AUTOSCALE_KEEPALIVE) as the
longest an idle process is held. Each call gathers what the pool looks like (tasks
held, the cores each task's name was measured to want, the pod's CPU and memory
limits, the processes' peak memory), asks `pool_sizing` for a size, and grows or
releases idle processes (billiard's shrink never takes a busy one). The pool starts
from the range the operator last recorded on the pod (a downward-API file), so a
restarted worker keeps it; the operator changes it live with
`app.control.autoscale(max, min)`, which calls `update`.
"""

from __future__ import annotations

import logging
import re
import time
from collections import deque
from typing import Any

from celery import bootsteps
from celery.worker import state
from celery.worker.autoscale import AUTOSCALE_KEEPALIVE, Autoscaler

from celeriac_worker import pool_sizing, proc_stats
from celeriac_worker.cpu import CpuSampler
from celeriac_worker.load_report import LoadReporter
from celeriac_worker.observe import OBSERVER
from celeriac_worker.pod_limits import PodLimits, read_pod_limits
from celeriac_worker.settings import WorkerEnv
from celeriac_worker.task_demand import TaskDemand

log = logging.getLogger(__name__)
RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
# Re-read on Celery's own ticks (each task received, and every keepalive when idle).
RANGE_FILE_RELOAD_S = 5.0
# Between decisions on messages that need no new process (the timer still decides).
MIN_DECISION_GAP_S = 0.05
# Idle gaps remembered to predict the next one.
GAPS_KEPT = 5
# Celery's timer period for `maybe_scale`: how soon a measured task or an idle pool acts.
TICK_S = 0.1


def parse_range(text: str) -> tuple[int, int] | None:
    """'2-8' -> (2, 8); anything else (empty, reversed, garbage) -> None."""
    match = RANGE.match(text or "")
    if not match:
        return None
    low, high = int(match.group(1)), int(match.group(2))
    if high < 1 or low > high:
        return None
    return low, high


def read_text(path: str | None) -> str | None:
    if not path:
        return None
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


class RangeFromFile(bootsteps.Step):
    """Starts the pool with the range the operator last wrote on the pod, not the CLI's.

    Runs its __init__ after Pool's (which reads --autoscale) and before any step creates
    anything, so the pool's first size and the consumer's prefetch both use the file.
    """

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        path = WorkerEnv().range_file
        parsed = parse_range(read_text(path) or "")
        if worker.autoscale and parsed is not None:
            worker.min_concurrency, worker.max_concurrency = parsed
            log.info("autoscale range %s-%s from %s", parsed[0], parsed[1], path)


def pod_limits(env: WorkerEnv) -> PodLimits:
    """The cgroup's limits, with the environment's explicit values taking precedence."""
    found = read_pod_limits()
    cpu, memory = found.cpu_cores, found.memory_bytes
    cpu_source, memory_source = found.cpu_source, found.memory_source
    if env.cpu_limit_cores is not None:
        cpu, cpu_source = env.cpu_limit_cores, "CELERIAC_CPU_LIMIT_CORES"
    if env.memory_limit_bytes is not None:
        memory, memory_source = int(env.memory_limit_bytes), "CELERIAC_MEMORY_LIMIT_BYTES"
    return PodLimits(cpu, memory, cpu_source, memory_source)


class CeleriacAutoscaler(Autoscaler):
    def __init__(
        self,
        pool: Any,
        max_concurrency: int,
        min_concurrency: int = 0,
        worker: Any = None,
        keepalive: float = AUTOSCALE_KEEPALIVE,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            pool, max_concurrency, min_concurrency, worker=worker, keepalive=TICK_S, **kwargs
        )
        self.max_hold_s = float(keepalive)
        self.env = WorkerEnv()
        self.limits = pod_limits(self.env)
        log.info(
            "pod limits: %.2f cores (%s), memory %s (%s)",
            self.limits.cpu_cores,
            self.limits.cpu_source,
            self.limits.memory_bytes,
            self.limits.memory_source,
        )
        self.cpu = CpuSampler(self.pool_pids)
        self.demand = TaskDemand(proc_stats.schedstat_ns)
        OBSERVER.on_accepted.append(
            lambda task_id, name, pid: self.demand.started(task_id, name, pid, time.monotonic())
        )
        OBSERVER.on_finished.append(lambda task_id: self.demand.finished(task_id, time.monotonic()))
        self._range_checked = time.monotonic()
        # RangeFromFile already applied the file's range to the worker; remember the text
        # so only a later change of the file counts as the operator's.
        self._range_seen = read_text(self.env.range_file)
        self._busy_at = time.monotonic()
        self._idle_since: float | None = None
        self._decided_at = 0.0
        self.recent_gaps_s: deque[float] = deque(maxlen=GAPS_KEPT)
        self.cpu_limited = 0
        self.memory_limited = 0
        self.held_by: str | None = None
        self.reporter: LoadReporter | None = None
        if self.env.pool_id and worker is not None:
            self.reporter = LoadReporter(self, self.env)
            self.reporter.start()

    # --- the operator's range ------------------------------------------------------

    def _read_range_file(self) -> tuple[int, int] | None:
        text = read_text(self.env.range_file)
        if text is None:
            return None
        self._range_seen = text
        return parse_range(text)

    def _reload_range_file(self) -> None:
        now = time.monotonic()
        if now - self._range_checked < RANGE_FILE_RELOAD_S:
            return
        self._range_checked = now
        before = self._range_seen
        parsed = self._read_range_file()
        if (
            parsed is not None
            and self._range_seen != before
            and parsed != (self.min_concurrency, self.max_concurrency)
        ):
            # The operator's annotation changed while we missed its broadcast (e.g. a reconnect).
            self.update(max=parsed[1], min=parsed[0])

    # --- observation (I/O) ----------------------------------------------------------

    def pool_pids(self) -> list[int]:
        # billiard's Pool keeps its worker processes in `_pool`; before the pool starts
        # (or after it closed) there is none.
        workers = getattr(getattr(self.pool, "_pool", None), "_pool", None) or []
        return [int(p.pid) for p in workers if getattr(p, "pid", None)]

    def _task_names(self) -> list[str]:
        """Names of the tasks this worker holds: running first, then waiting in arrival order."""
        running = list(state.active_requests)
        waiting = [r for r in state.reserved_requests if r not in state.active_requests]
        waiting.sort(key=lambda r: getattr(r, "time_start", None) or 0.0)
        return [str(r.name) for r in running + waiting]

    def _memory_view(self) -> tuple[float | None, int | None]:
        """(bytes the pool processes may use, the highest peak a pool process reached)."""
        limit = self.limits.memory_bytes
        if limit is None:
            return None, None
        main_rss = proc_stats.rss_bytes(self.cpu.pid) or 0
        peaks = [proc_stats.peak_rss_bytes(pid) or 0 for pid in self.pool_pids()]
        return limit * self.env.target_memory - main_rss, max(peaks, default=0) or None

    def view(self, processes: int) -> pool_sizing.PoolView:
        now = time.monotonic()
        self.cpu.sample_if_older(TICK_S / 2)
        self.demand.sample_running(now)
        budget_bytes, peak_bytes = self._memory_view()
        names = self._task_names()
        # Under a memory limit, a task's memory peak must be known before the pool grows
        # past its cores for it: a sleeping task may still be about to load a file.
        settled_only = self.limits.memory_bytes is not None
        return pool_sizing.PoolView(
            processes=processes,
            range_min=self.min_concurrency,
            range_max=self.max_concurrency,
            task_cores=self.demand.estimates(names, settled_only),
            task_cores_low=self.demand.estimates(names, settled_only, peak=False),
            cpu_budget_cores=self.limits.cpu_cores * self.env.target_cpu,
            cpu_limit_cores=self.limits.cpu_cores,
            cpu_used_cores=self.cpu.cores(),
            memory_budget_bytes=budget_bytes,
            process_peak_bytes=peak_bytes,
        )

    # --- Celery's hooks ------------------------------------------------------------

    def _maybe_scale(self, req: Any = None) -> bool:
        try:
            procs = self.processes
        except AttributeError:
            # A message can still arrive while a cold shutdown closes the pool; asking the
            # closed pool its size raised and turned a clean shutdown into exit code 1.
            return False
        self._reload_range_file()
        now = time.monotonic()
        self._track_gaps(req, now)
        held = len(state.reserved_requests)
        if req is not None or held >= procs:
            self._busy_at = now
        if not held and procs == self.min_concurrency:
            return False  # idle at the floor: nothing to measure, nothing to decide
        if now - self._decided_at < MIN_DECISION_GAP_S and held <= procs:
            # A stream of messages to a pool that has a process for each: the main process
            # dispatches them, and reading /proc for every one would slow that down.
            return False
        self._decided_at = now
        view = self.view(procs)
        sizing = pool_sizing.size_for(view)
        self._note_hold(sizing)
        if sizing.processes > procs:
            self.scale_up(sizing.processes - procs)
            return True
        hold_s = self.idle_hold_s()
        release = pool_sizing.processes_to_release(view, now - self._busy_at, hold_s)
        if release > 0:
            self._shrink(release)
            return True
        return False

    def _track_gaps(self, req: Any, now: float) -> None:
        """Idle gaps: from the pool holding no task to the next task received."""
        if req is not None:
            if self._idle_since is not None:
                self.recent_gaps_s.append(now - self._idle_since)
            self._idle_since = None
        elif not state.reserved_requests and self._idle_since is None:
            self._idle_since = now

    def idle_hold_s(self) -> float:
        return pool_sizing.idle_hold_s(
            OBSERVER.durations.mean_s, list(self.recent_gaps_s), self.max_hold_s
        )

    def _note_hold(self, sizing: pool_sizing.Sizing) -> None:
        if sizing.held_by != self.held_by:
            log.info("pool growth held by %s", sizing.held_by or "nothing")
        self.held_by = sizing.held_by
        if sizing.held_by == pool_sizing.HELD_BY_CPU:
            self.cpu_limited += 1
        elif sizing.held_by == pool_sizing.HELD_BY_MEMORY:
            self.memory_limited += 1

    def update(self, max: int | None = None, min: int | None = None) -> tuple[int, int]:
        result: tuple[int, int] = super().update(max=max, min=min)
        log.info("autoscale range now %s-%s", self.min_concurrency, self.max_concurrency)
        return result

    def info(self) -> dict[str, Any]:
        doc: dict[str, Any] = super().info()
        doc["cpu_cores"] = round(self.cpu.cores(), 3)
        doc["cpu_limit_cores"] = self.limits.cpu_cores
        doc["memory_limit_bytes"] = self.limits.memory_bytes
        doc["held_by"] = self.held_by
        doc["task_cores"] = {
            n: round(self.demand.peak(n) or c, 3) for n, c in self.demand.latest(10).items()
        }
        doc["cpu_limited"] = self.cpu_limited
        doc["memory_limited"] = self.memory_limited
        doc["idle_hold_s"] = round(self.idle_hold_s(), 3)
        return doc
