"""A CPU- and backlog-aware `--autoscale` for prefork workers, steered by the operator.

Celery calls `_maybe_scale` on every received task and every `keepalive` seconds
(prefork on Redis has no autoscaler thread). This subclass grows towards the local
backlog only while the process tree has CPU headroom below the target, shrinks idle
processes after the keepalive (billiard's shrink never takes a busy process), and
starts from the range the operator last recorded on the pod (a downward-API file),
so a restarted worker keeps it. The operator changes the range live with
`app.control.autoscale(max, min)`, which calls `update`.
"""

from __future__ import annotations

import logging
import math
import re
import time
from typing import Any

from celery import bootsteps
from celery.worker import state
from celery.worker.autoscale import Autoscaler

from celeriac_worker.cpu import CpuSampler
from celeriac_worker.load_report import LoadReporter
from celeriac_worker.settings import WorkerEnv

log = logging.getLogger(__name__)
RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
# Re-read on Celery's own ticks (each task received, and every keepalive when idle).
RANGE_FILE_RELOAD_S = 5.0


def parse_range(text: str) -> tuple[int, int] | None:
    """'2-8' -> (2, 8); anything else (empty, reversed, garbage) -> None."""
    match = RANGE.match(text or "")
    if not match:
        return None
    low, high = int(match.group(1)), int(match.group(2))
    if high < 1 or low > high:
        return None
    return low, high


def allowed_growth(
    wanted: int, processes: int, busy_cores: float, running: int, limit_cores: float, target: float
) -> int:
    """How many of `wanted` new processes the CPU budget allows.

    A process costs what the running ones cost on average; with nothing running yet,
    growth is not limited (an idle pod has all its headroom).
    """
    if wanted <= 0:
        return 0
    if processes == 0:
        return min(wanted, 1) if busy_cores >= limit_cores * target else wanted
    budget = limit_cores * target - busy_cores
    if budget <= 0:
        return 0
    if running == 0 or busy_cores <= 0.05 * max(running, 1):
        return wanted
    per_process = busy_cores / running
    return max(0, min(wanted, math.floor(budget / per_process)))


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


class CeleriacAutoscaler(Autoscaler):
    def __init__(
        self,
        pool: Any,
        max_concurrency: int,
        min_concurrency: int = 0,
        worker: Any = None,
        **kwargs: Any,
    ) -> None:
        # keepalive defaults to env AUTOSCALE_KEEPALIVE (read by celery.worker.autoscale).
        super().__init__(pool, max_concurrency, min_concurrency, worker=worker, **kwargs)
        self.env = WorkerEnv()
        self.cpu = CpuSampler()
        self._range_checked = time.monotonic()
        # RangeFromFile already applied the file's range to the worker; remember the text
        # so only a later change of the file counts as the operator's.
        self._range_seen = read_text(self.env.range_file)
        self.cpu_limited = 0
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

    # --- Celery's hooks ------------------------------------------------------------

    def _maybe_scale(self, req: Any = None) -> bool:
        try:
            self.processes  # noqa: B018 - probes that the pool is still open
        except AttributeError:
            # A message can still arrive while a cold shutdown closes the pool; asking the
            # closed pool its size raised and turned a clean shutdown into exit code 1.
            return False
        self._reload_range_file()
        procs = self.processes
        if procs < self.min_concurrency:
            # The floor is the operator's promise of capacity: no CPU check (a lost process, a new min).
            self.scale_up(self.min_concurrency - procs)
            return True
        wanted = min(self.qty, self.max_concurrency)
        if wanted > procs:
            grow = allowed_growth(
                wanted - procs,
                procs,
                self.cpu.cores(),
                len(state.active_requests),
                self.env.cpu_limit_cores,
                self.env.target_cpu,
            )
            if grow > 0:
                self.scale_up(grow)
                return True
            self.cpu_limited += 1
            return False
        floor = max(self.qty, self.min_concurrency)
        if floor < procs:
            self.scale_down(procs - floor)
            return True
        return False

    def update(self, max: int | None = None, min: int | None = None) -> tuple[int, int]:
        result: tuple[int, int] = super().update(max=max, min=min)
        log.info("autoscale range now %s-%s", self.min_concurrency, self.max_concurrency)
        return result

    def info(self) -> dict[str, Any]:
        doc: dict[str, Any] = super().info()
        doc["cpu_cores"] = round(self.cpu.cores(), 3)
        doc["cpu_limited"] = self.cpu_limited
        return doc
