"""CPU used by the worker's process tree, in cores, sampled at most once a second."""

from __future__ import annotations

import contextlib
import os
import threading
import time

import psutil


class CpuSampler:
    def __init__(self, pid: int | None = None, min_interval_s: float = 1.0) -> None:
        self.root = psutil.Process(pid or os.getpid())
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._last_t = time.monotonic()
        self._last_cpu = self._tree_cpu_s()
        self._cores = 0.0

    def _tree_cpu_s(self) -> float:
        total = 0.0
        procs = [self.root]
        with contextlib.suppress(psutil.Error):
            procs += self.root.children(recursive=True)
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue  # a child that exited between listing and reading
            total += times.user + times.system
        return total

    def cores(self) -> float:
        """Cores busy since the previous sample (1.0 = one core fully used)."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_t >= self.min_interval_s:
                cpu = self._tree_cpu_s()
                # Exited children take their CPU time with them: never report a negative rate.
                self._cores = max(0.0, (cpu - self._last_cpu) / (now - self._last_t))
                self._last_t, self._last_cpu = now, cpu
            return self._cores
