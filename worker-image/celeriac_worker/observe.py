"""What the worker's main process sees of each task: outcome, queue wait and run time.

Everything is observed in the main process through a custom Request class (Celery's
documented `Task.Request` hook), so the metrics and the load report need no
cross-process plumbing: prefork children never touch them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from billiard.einfo import ExceptionWithTraceback
from celery.exceptions import Ignore, Reject, Retry, WorkerLostError
from celery.worker.request import Request

PUBLISHED_AT_HEADER = "celeriac_published_at"


def queue_wait_s(published_at: float | None, eta: float | None, started_at: float) -> float | None:
    """Seconds a task waited to start: from publication, or from its ETA if it had one."""
    if published_at is None:
        return None
    ready_at = max(published_at, eta) if eta is not None else published_at
    return max(0.0, started_at - ready_at)


def outcome_of(exc: BaseException) -> str:
    """The metric state for an exception handed to Request.on_failure."""
    if isinstance(exc, ExceptionWithTraceback):
        exc = exc.exc
    if isinstance(exc, Retry):
        return "retried"
    if isinstance(exc, Reject):
        return "rejected"
    if isinstance(exc, Ignore):
        return "ignored"
    if isinstance(exc, WorkerLostError | SystemExit | KeyboardInterrupt):
        return "lost"
    return "failed"


class TaskDurations:
    """Mean and p99 of recent task run times (the operator sizes the grace period on the p99)."""

    def __init__(self, alpha: float = 0.2, window: int = 256) -> None:
        self.alpha = alpha
        self.mean_s: float | None = None
        self.recent: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            self.mean_s = (
                seconds
                if self.mean_s is None
                else self.mean_s + self.alpha * (seconds - self.mean_s)
            )
            self.recent.append(seconds)

    @property
    def p99_s(self) -> float | None:
        with self._lock:
            if not self.recent:
                return None
            ordered = sorted(self.recent)
        return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


# (task name, queue, state) -> None; (queue, wait_s); (task name, run_s)
OutcomeHook = Callable[[str, str, str], None]
WaitHook = Callable[[str, float], None]
RunHook = Callable[[str, float], None]
# (task id, task name, pool process pid); (task id): a task's start and end in its process
AcceptedHook = Callable[[str, str, int], None]
FinishedHook = Callable[[str], None]


class Observer:
    """Fan-out of task events in the main process; metrics and durations subscribe."""

    def __init__(self) -> None:
        self.durations = TaskDurations()
        self.on_outcome: list[OutcomeHook] = []
        self.on_wait: list[WaitHook] = []
        self.on_run: list[RunHook] = []
        self.on_accepted: list[AcceptedHook] = []
        self.on_finished: list[FinishedHook] = []

    def accepted(self, task_id: str, task: str, pid: int) -> None:
        for hook in self.on_accepted:
            hook(task_id, task, pid)

    def finished(self, task_id: str) -> None:
        for hook in self.on_finished:
            hook(task_id)

    def outcome(self, task: str, queue: str, state: str) -> None:
        for hook in self.on_outcome:
            hook(task, queue, state)

    def waited(self, queue: str, seconds: float) -> None:
        for hook in self.on_wait:
            hook(queue, seconds)

    def ran(self, task: str, seconds: float) -> None:
        self.durations.observe(seconds)
        for hook in self.on_run:
            hook(task, seconds)


OBSERVER = Observer()


def _queue(request: Request) -> str:
    info = request.delivery_info or {}
    return str(info.get("routing_key") or info.get("exchange") or "unknown")


def _ran_for(request: Request) -> float | None:
    return None if not request.time_start else max(0.0, time.time() - request.time_start)


def _record_success(request: Request) -> None:
    OBSERVER.finished(request.id)
    OBSERVER.outcome(request.name, _queue(request), "succeeded")
    ran = _ran_for(request)
    if ran is not None:
        OBSERVER.ran(request.name, ran)


def _observing_success(on_success: Callable[..., Any]) -> Callable[..., Any]:
    def observed(self: Request, failed__retval__runtime: Any, **kwargs: Any) -> Any:
        if not failed__retval__runtime[0]:
            _record_success(self)
        return on_success(self, failed__retval__runtime, **kwargs)

    return observed


class CeleriacRequest(Request):
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # create_request_cls() subclasses the task's Request and redefines on_success
        # without calling super() (celery/worker/request.py), so wrap the new one too.
        if "on_success" in cls.__dict__:
            cls.on_success = _observing_success(cls.__dict__["on_success"])

    def on_accepted(self, pid: int, time_accepted: float) -> None:
        super().on_accepted(pid, time_accepted)
        OBSERVER.accepted(self.id, self.name, pid)
        queue = _queue(self)
        OBSERVER.outcome(self.name, queue, "started")
        published = self.request_dict.get(PUBLISHED_AT_HEADER)
        wait = queue_wait_s(
            float(published) if published is not None else None,
            _unix(self.eta),
            self.time_start,
        )
        if wait is not None:
            OBSERVER.waited(queue, wait)

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        OBSERVER.finished(self.id)
        state = outcome_of(exc_info.exception)
        OBSERVER.outcome(self.name, _queue(self), state)
        ran = _ran_for(self)
        if ran is not None and state in ("failed", "retried"):
            OBSERVER.ran(self.name, ran)
        return super().on_failure(
            exc_info, send_failed_event=send_failed_event, return_ok=return_ok
        )


CeleriacRequest.on_success = _observing_success(Request.on_success)


def _unix(eta: datetime | None) -> float | None:
    return None if eta is None else eta.timestamp()
