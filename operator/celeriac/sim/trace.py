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
