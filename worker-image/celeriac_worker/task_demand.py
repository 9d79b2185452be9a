"""How many cores a task of each name wants while it runs, learned from the tasks themselves.

Each task is measured from its own start (the pool process's CPU demand when the main
process hears it was accepted) to its end, and long tasks also while they run, so an
idle period never dilutes the reading (the old sampler averaged over the time since its
previous sample, mostly idle after a quiet spell). A name never measured has no
estimate: the sizing treats it as CPU-bound until its first task is measured.

Task names and ids come from the broker and may be hostile: both tables are bounded.
Clock readings and /proc readings are arguments, so this is testable without processes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

MAX_NAMES = 256
MAX_IN_FLIGHT = 4096
# Shorter windows are mostly scheduling noise.
MIN_WINDOW_S = 0.02
# Long tasks are re-measured at most this often while running.
LIVE_WINDOW_S = 0.1
ALPHA = 0.3

DemandReader = Callable[[int], int | None]


@dataclass
class _Running:
    name: str
    pid: int
    since_s: float
    demand_ns: int


class TaskDemand:
    def __init__(self, read_demand_ns: DemandReader) -> None:
        self.read_demand_ns = read_demand_ns
        self._cores: OrderedDict[str, float] = OrderedDict()
        self._running: OrderedDict[str, _Running] = OrderedDict()
        self._lock = threading.Lock()

    def cores(self, name: str) -> float | None:
        """Estimated cores one running task of `name` wants; None if never measured."""
        with self._lock:
            return self._cores.get(name)

    def started(self, task_id: str, name: str, pid: int, now_s: float) -> None:
        demand = self.read_demand_ns(pid)
        if demand is None:
            return
        with self._lock:
            self._running[task_id] = _Running(name, pid, now_s, demand)
            while len(self._running) > MAX_IN_FLIGHT:
                self._running.popitem(last=False)

    def finished(self, task_id: str, now_s: float) -> None:
        with self._lock:
            run = self._running.pop(task_id, None)
        if run is not None:
            self._measure(run, now_s)

    def sample_running(self, now_s: float) -> None:
        """Re-measure tasks running for longer than a live window (a 10-minute task teaches too)."""
        with self._lock:
            due = [r for r in self._running.values() if now_s - r.since_s >= LIVE_WINDOW_S]
        for run in due:
            self._measure(run, now_s)

    def _measure(self, run: _Running, now_s: float) -> None:
        window_s = now_s - run.since_s
        if window_s < MIN_WINDOW_S:
            return
        demand = self.read_demand_ns(run.pid)
        if demand is None or demand < run.demand_ns:
            return  # the process is gone (or the pid was reused)
        cores = (demand - run.demand_ns) / 1e9 / window_s
        run.since_s, run.demand_ns = now_s, demand
        self._learn(run.name, cores)

    def _learn(self, name: str, cores: float) -> None:
        with self._lock:
            old = self._cores.pop(name, None)
            self._cores[name] = cores if old is None else old + ALPHA * (cores - old)
            while len(self._cores) > MAX_NAMES:
                self._cores.popitem(last=False)

    def estimates(self, names: Iterable[str]) -> list[float | None]:
        with self._lock:
            return [self._cores.get(n) for n in names]
