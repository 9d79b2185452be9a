"""How many cores a task of each name wants while it runs, learned from the tasks themselves.

Each task is measured from its own start (when the main process hears its pool process
accepted it) to its end, and long tasks also while they run, so an idle period never
dilutes the reading (the old sampler averaged over the time since its previous sample,
mostly idle after a quiet spell). The share is CPU time over the time the task was not
waiting for a core (run / (elapsed - run-queue wait)): a CPU-bound task reads 1.0 even
when eight share two cores (CPU time alone would read 0.25 and invite more growth), and
a sleeping task reads near 0 even on a crowded node (run + wait over elapsed counted
each wake-up's queueing as demand). A name never measured has no estimate: the sizing
treats it as CPU-bound until its first task is measured.

A name's share is CPU time over runnable time summed over its last readings, so a short
window (the main process, busy forking, heard of a task's start late and of its end at
once) weighs as little as it lasted. Growth plans with a slowly decaying peak of that
share, release with the share itself: on a crowded node a CPU-bound task reads between
0.6 and 0.95 (the clock and /proc are read a scheduling delay apart, large against the
little CPU each process gets), and sizing both ways on one swinging number grew and
released processes in turn.

Task names and ids come from the broker and may be hostile: both tables are bounded.
Clock readings and /proc readings are arguments, so this is testable without processes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

MAX_NAMES = 256
MAX_IN_FLIGHT = 4096
# Shorter windows are mostly scheduling noise.
MIN_WINDOW_S = 0.02
# Long tasks are re-measured at most this often while running.
LIVE_WINDOW_S = 0.2
READINGS = 32
# A name is settled once a task of it finished or ran this long: its memory peak is
# then known too, which a pod with a memory limit waits for before growing past its cores.
SETTLE_S = 1.0
# Per reading: a one-off high reading fades over some 45 readings to a tenth of its excess.
PEAK_DECAY = 0.95

# pid -> (run ns, run-queue wait ns) so far, None if the process is gone.
SchedReader = Callable[[int], tuple[int, int] | None]


@dataclass
class _Running:
    name: str
    pid: int
    since_s: float
    run_ns: int
    wait_ns: int
    started_s: float = 0.0


def runnable_window(run_s: float, wait_s: float, window_s: float) -> tuple[float, float]:
    """(CPU time, time not spent queueing for a core) of one reading."""
    runnable_s = window_s - wait_s
    if runnable_s <= 0:
        return window_s, window_s  # queued all along: it wanted a core the whole time
    return min(run_s, runnable_s), runnable_s


def core_share(readings: Iterable[tuple[float, float]]) -> float:
    """CPU time over runnable time, summed over readings, within [0, 1]."""
    run = runnable = 0.0
    for r, w in readings:
        run, runnable = run + r, runnable + w
    return 1.0 if runnable <= 0 else min(1.0, max(0.0, run / runnable))


class TaskDemand:
    def __init__(self, read_sched_ns: SchedReader) -> None:
        self.read_sched_ns = read_sched_ns
        self._cores: OrderedDict[str, float] = OrderedDict()
        self._peaks: dict[str, float] = {}
        self._readings: dict[str, deque[tuple[float, float]]] = {}
        self._settled: set[str] = set()
        self._running: OrderedDict[str, _Running] = OrderedDict()
        self._lock = threading.Lock()

    def cores(self, name: str) -> float | None:
        """Cores one running task of `name` wants over its recent readings; None if never measured."""
        with self._lock:
            return self._cores.get(name)

    def peak(self, name: str) -> float | None:
        """The decaying peak of `name`'s readings, what sizing plans with."""
        with self._lock:
            return self._peaks.get(name)

    def started(self, task_id: str, name: str, pid: int, now_s: float) -> None:
        stat = self.read_sched_ns(pid)
        if stat is None:
            return
        with self._lock:
            self._running[task_id] = _Running(name, pid, now_s, *stat, started_s=now_s)
            while len(self._running) > MAX_IN_FLIGHT:
                self._running.popitem(last=False)

    def finished(self, task_id: str, now_s: float) -> None:
        with self._lock:
            run = self._running.pop(task_id, None)
        if run is not None:
            self._measure(run, now_s, finished=True)

    def sample_running(self, now_s: float) -> None:
        """Re-measure tasks running for longer than a live window (a 10-minute task teaches too)."""
        with self._lock:
            due = [r for r in self._running.values() if now_s - r.since_s >= LIVE_WINDOW_S]
        for run in due:
            self._measure(run, now_s)

    def _measure(self, run: _Running, now_s: float, finished: bool = False) -> None:
        if finished or now_s - run.started_s >= SETTLE_S:
            with self._lock:
                if run.name in self._cores or len(self._settled) < MAX_NAMES:
                    self._settled.add(run.name)
        window_s = now_s - run.since_s
        if window_s < MIN_WINDOW_S:
            return
        stat = self.read_sched_ns(run.pid)
        if stat is None or stat[0] < run.run_ns or stat[1] < run.wait_ns:
            return  # the process is gone (or the pid was reused)
        reading = runnable_window(
            (stat[0] - run.run_ns) / 1e9, (stat[1] - run.wait_ns) / 1e9, window_s
        )
        run.since_s, run.run_ns, run.wait_ns = now_s, stat[0], stat[1]
        self._learn(run.name, reading)

    def _learn(self, name: str, reading: tuple[float, float]) -> None:
        with self._lock:
            readings = self._readings.setdefault(name, deque(maxlen=READINGS))
            readings.append(reading)
            share = core_share(readings)
            self._cores.pop(name, None)
            self._cores[name] = share
            self._peaks[name] = max(share, self._peaks.get(name, 0.0) * PEAK_DECAY)
            while len(self._cores) > MAX_NAMES:
                evicted, _ = self._cores.popitem(last=False)
                self._peaks.pop(evicted, None)
                self._readings.pop(evicted, None)
                self._settled.discard(evicted)

    def latest(self, count: int) -> dict[str, float]:
        """The most recently learned names and their estimates (for inspect stats)."""
        with self._lock:
            return dict(list(self._cores.items())[-count:])

    def estimates(
        self, names: Iterable[str], settled_only: bool = False, peak: bool = True
    ) -> list[float | None]:
        """Each task's share by its name: the decaying peak (growth) or the share (release).

        None, planned as a whole core, if unmeasured or, with `settled_only`, unsettled.
        """
        table = self._peaks if peak else self._cores
        with self._lock:
            return [
                None if settled_only and n not in self._settled else table.get(n) for n in names
            ]
