"""`inspect active` for stock workers, as a control job off the tick (controller.ranges'
ControlJobs: at most one in flight per pool, a silent worker costs its reply timeout
there, not in a tick). The answers are kept here until the next tick reads them, which
ranks pods by them or asks again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

from celeriac.actuators.celery_inspect import ActiveAnswer
from celeriac.controller.observation import ProbedLoad
from celeriac.controller.plan import Event

JOB_KIND = "inspect-active"


class ActiveEdge(Protocol):
    def ask(
        self, broker_url: str, pods: Iterable[str], global_keyprefix: str = ""
    ) -> ActiveAnswer: ...


def as_loads(answer: ActiveAnswer) -> dict[str, ProbedLoad]:
    """Answered pods only: a silent pod stays unknown (it may be busy, or gone)."""
    return {pod: ProbedLoad(answer.asked_at, n) for pod, n in answer.running.items()}


class ProbeAnswers:
    """pool id -> pod -> the newest answer. Written by jobs (threads), read by ticks."""

    def __init__(self) -> None:
        self._answers: dict[str, dict[str, ProbedLoad]] = {}
        self._lock = threading.Lock()

    def record(self, pool_id: str, answer: ActiveAnswer) -> None:
        with self._lock:
            self._answers.setdefault(pool_id, {}).update(as_loads(answer))

    def loads(self, pool_id: str, pods: Iterable[str]) -> dict[str, ProbedLoad]:
        """The answers for pods that still exist (those of deleted pods are dropped)."""
        with self._lock:
            known = self._answers.get(pool_id, {})
            kept = {p: known[p] for p in pods if p in known}
            self._answers[pool_id] = kept
            return dict(kept)

    def forget(self, pool_id: str) -> None:
        with self._lock:
            self._answers.pop(pool_id, None)


def ask_active(
    inspector: ActiveEdge,
    answers: ProbeAnswers,
    pool_id: str,
    pods: tuple[str, ...],
    broker_url: str,
    keyprefix: str,
) -> list[Event]:
    """Blocking: one question; the answers are kept, no event (it runs every scale-in tick)."""
    answers.record(pool_id, inspector.ask(broker_url, pods, keyprefix))
    return []
