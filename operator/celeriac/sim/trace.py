"""Task traces: one row per task, `enqueue_s,service_s[,queue,priority]`, sorted by enqueue_s."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


class TraceError(ValueError):
    """A trace the simulator cannot use; the message names the row and the fix."""


@dataclass(frozen=True)
class Task:
    enqueue_s: float
    service_s: float
    queue: str = "celery"
    priority: int = 0


def load_trace(path: Path) -> list[Task]:
    if not path.exists():
        raise TraceError(f"{path}: no such file")
    tasks: list[Task] = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        fields = set(reader.fieldnames or [])
        missing = {"enqueue_s", "service_s"} - fields
        if missing:
            raise TraceError(
                f"{path}: header lacks {', '.join(sorted(missing))} (need enqueue_s,service_s)"
            )
        previous = float("-inf")
        for line, row in enumerate(reader, start=2):
            try:
                enqueue = float(row["enqueue_s"])
                service = float(row["service_s"])
                priority = int(row.get("priority") or 0)
            except ValueError as exc:
                raise TraceError(f"{path}:{line}: {exc}") from exc
            if enqueue < 0 or service < 0:
                raise TraceError(f"{path}:{line}: enqueue_s and service_s must be >= 0")
            if enqueue < previous:
                raise TraceError(
                    f"{path}:{line}: rows must be sorted by enqueue_s ({enqueue} after {previous})"
                )
            previous = enqueue
            tasks.append(Task(enqueue, service, row.get("queue") or "celery", priority))
    if not tasks:
        raise TraceError(f"{path}: no tasks")
    return tasks


def write_trace(path: Path, tasks: list[Task]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["enqueue_s", "service_s", "queue", "priority"])
        for t in tasks:
            writer.writerow([f"{t.enqueue_s:.3f}", f"{t.service_s:.3f}", t.queue, t.priority])


BURST_BUCKET_S = 10.0
BURST_FACTOR = 3.0  # a bucket with this many times the trace's mean arrivals is a burst
BURST_MIN_TASKS = 50


def bursts(tasks: list[Task]) -> list[tuple[int, int]]:
    """Index ranges [first, last] of tasks that arrived in bursts: runs of 10 s buckets that
    each received at least 3x the trace's mean and 50 tasks. The same for every policy, since
    it reads only the trace."""
    if not tasks:
        return []
    span_s = max(tasks[-1].enqueue_s - tasks[0].enqueue_s, BURST_BUCKET_S)
    floor = max(BURST_MIN_TASKS, BURST_FACTOR * len(tasks) * BURST_BUCKET_S / span_s)
    counts: dict[int, list[int]] = {}
    for i, t in enumerate(tasks):
        counts.setdefault(int(t.enqueue_s // BURST_BUCKET_S), []).append(i)
    found: list[tuple[int, int]] = []
    previous: int | None = None
    for bucket in sorted(counts):
        members = counts[bucket]
        if len(members) < floor:
            previous = None
            continue
        if previous is not None and bucket == previous + 1:
            found[-1] = (found[-1][0], members[-1])
        else:
            found.append((members[0], members[-1]))
        previous = bucket
    return found
