"""CPU used by the worker's process tree over the last second, in cores.

Samples are taken on the autoscaler's ticks (a few per second) and the rate is computed
over a sliding window, so a reading after an idle spell covers the last second only
instead of everything since the previous reading (which was mostly idle time and hid a
burst that had just started).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable

from celeriac_worker.proc_stats import schedstat_ns

WINDOW_S = 1.0
# cores() between ticks takes a fresh sample when the newest is older than this.
STALE_S = 0.25


CpuSample = tuple[float, dict[int, float]]  # (time, CPU seconds so far by pid)


def windowed_rate(samples: list[CpuSample], now_s: float, window_s: float) -> float:
    """CPU seconds per second from the oldest sample inside the window to the newest.

    Only when the newest is the one sample inside the window does the one before it serve
    as the start (ticks stopped for a while). Summed per process over those present in
    both samples: a process that exited or was forked in between neither subtracts its
    whole past (a negative rate, clamped to 0) nor adds it.
    """
    if len(samples) < 2:
        return 0.0
    newest_t, newest = samples[-1]
    inside = [s for s in samples[:-1] if s[0] >= now_s - window_s]
    start_t, start = inside[0] if inside else samples[-2]
    if newest_t <= start_t:
        return 0.0
    used = sum(max(0.0, cpu - start[pid]) for pid, cpu in newest.items() if pid in start)
    return used / (newest_t - start_t)


class CpuSampler:
    """The worker's main process and its pool processes (the pool names its own pids:
    cheaper than scanning /proc for children on every tick)."""

    def __init__(self, pool_pids: Callable[[], list[int]], window_s: float = WINDOW_S) -> None:
        self.pid = os.getpid()
        self.pool_pids = pool_pids
        self.window_s = window_s
        self._lock = threading.Lock()
        self._samples: deque[CpuSample] = deque()
        self.sample()

    def sample(self) -> None:
        cpu = {}
        for pid in (self.pid, *self.pool_pids()):
            stat = schedstat_ns(pid)
            if stat is not None:
                cpu[pid] = stat[0] / 1e9
        now = time.monotonic()
        with self._lock:
            self._samples.append((now, cpu))
            while len(self._samples) > 2 and self._samples[0][0] < now - self.window_s:
                self._samples.popleft()

    def sample_if_older(self, age_s: float) -> None:
        with self._lock:
            fresh = bool(self._samples) and time.monotonic() - self._samples[-1][0] < age_s
        if not fresh:
            self.sample()

    def cores(self) -> float:
        """Cores busy over the last window (1.0 = one core fully used)."""
        self.sample_if_older(STALE_S)
        with self._lock:
            return windowed_rate(list(self._samples), time.monotonic(), self.window_s)
