"""What one pool process costs, read from /proc: CPU it wanted and memory it reached.

CPU is run time and run-queue wait (`/proc/<pid>/task/*/schedstat`, ns): with the wait
known, a task's share of a core can be read apart from how crowded the cores were
(see task_demand).
Memory is the peak resident set (`VmHWM` in `/proc/<pid>/status`): what a process
reached while running a task, not what it holds while idle.
"""

from __future__ import annotations

import os


def parse_schedstat(text: str) -> tuple[int, int] | None:
    """'<run ns> <wait ns> <slices>' -> (run ns, run-queue wait ns)."""
    parts = text.split()
    if len(parts) < 2:
        return None
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        return None


def parse_status_kib(text: str, field: str) -> int | None:
    """A 'VmHWM:   1932 kB' line of /proc/<pid>/status -> bytes."""
    prefix = field + ":"
    for line in text.splitlines():
        if line.startswith(prefix):
            parts = line[len(prefix) :].split()
            if parts and parts[0].isdigit():
                return int(parts[0]) * 1024
    return None


def schedstat_ns(pid: int, proc: str = "/proc") -> tuple[int, int] | None:
    """(run ns, run-queue wait ns) summed over every thread of `pid`; None if it is gone."""
    base = f"{proc}/{pid}/task"
    try:
        threads = os.listdir(base)
    except OSError:
        return None
    run = wait = 0
    for tid in threads:
        try:
            with open(f"{base}/{tid}/schedstat") as f:
                value = parse_schedstat(f.read())
        except OSError:
            continue  # a thread that ended between listing and reading
        if value is not None:
            run, wait = run + value[0], wait + value[1]
    return run, wait


def peak_rss_bytes(pid: int, proc: str = "/proc") -> int | None:
    try:
        with open(f"{proc}/{pid}/status") as f:
            return parse_status_kib(f.read(), "VmHWM")
    except OSError:
        return None


def rss_bytes(pid: int, proc: str = "/proc") -> int | None:
    try:
        with open(f"{proc}/{pid}/status") as f:
            return parse_status_kib(f.read(), "VmRSS")
    except OSError:
        return None
