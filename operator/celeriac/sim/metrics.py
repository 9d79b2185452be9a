"""What a run measured, and the queueing theory it is checked against."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

from celeriac.sim.trace import Task, bursts


class TimelinePoint(NamedTuple):
    t: float
    replicas: int
    waiting: int
    oldest_wait_s: float


# The numbers a comparison reports per policy, in table order (all keys of summary()).
HEADLINE = (
    "slo_attainment",
    "wait_p50_s",
    "wait_p95_s",
    "wait_p99_s",
    "drain_mean_s",
    "pod_seconds",
    "pod_seconds_per_task",
    "scaling_actions",
    "max_replicas",
)


def drain_times(tasks: list[Task], waits: list[float]) -> list[float]:
    """Per burst in the trace: seconds from its first arrival until its last task started
    (inf if one never did). For a dump no policy can start within the SLO, this is what
    separates draining in 5 minutes from draining in 20."""
    return [
        max(tasks[i].enqueue_s + waits[i] for i in range(first, last + 1)) - tasks[first].enqueue_s
        for first, last in bursts(tasks)
    ]


@dataclass
class SimResult:
    policy: str
    waits: list[float]  # queue wait per task, inf if it never started
    pod_seconds: float
    scaling_actions: int
    max_replicas: int
    requeued: int  # prefetched tasks a terminating pod handed back
    timeline: list[TimelinePoint]
    slo_wait_s: float
    drain_s: list[float] = field(default_factory=list)  # per burst, see drain_times
    pod_spans: list[tuple[float, float]] = field(default_factory=list)  # billed (from, to)

    def pod_seconds_between(self, start_s: float, end_s: float) -> float:
        """Pod-seconds billed within [start_s, end_s): one day of a multi-day run."""
        return sum(max(0.0, min(b, end_s) - max(a, start_s)) for a, b in self.pod_spans)

    @property
    def tasks(self) -> int:
        return len(self.waits)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.waits)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    def summary(self) -> dict[str, float | int | str | None]:
        met = sum(1 for w in self.waits if w <= self.slo_wait_s)
        return {
            "policy": self.policy,
            "tasks": self.tasks,
            "unfinished": sum(1 for w in self.waits if math.isinf(w)),
            "slo_wait_s": self.slo_wait_s,
            "slo_attainment": round(met / max(1, self.tasks), 4),
            "wait_mean_s": round(sum(self.waits) / max(1, self.tasks), 3),
            "wait_p50_s": round(self.percentile(0.50), 2),
            "wait_p95_s": round(self.percentile(0.95), 2),
            "wait_p99_s": round(self.percentile(0.99), 2),
            "bursts": len(self.drain_s),
            # None when the trace has no burst: no drain to time.
            "drain_mean_s": round(sum(self.drain_s) / len(self.drain_s), 1)
            if self.drain_s
            else None,
            "drain_max_s": round(max(self.drain_s), 1) if self.drain_s else None,
            "pod_seconds": round(self.pod_seconds, 1),
            "pod_seconds_per_task": round(self.pod_seconds / max(1, self.tasks), 3),
            "scaling_actions": self.scaling_actions,
            "max_replicas": self.max_replicas,
            "requeued": self.requeued,
        }


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in M/M/c with `offered` Erlangs, computed stably."""
    if offered >= servers:
        return 1.0
    term = 1.0
    total = 1.0
    for k in range(1, servers):
        term *= offered / k
        total += term
    term *= offered / servers
    top = term * servers / (servers - offered)
    return top / (total + top)


def erlang_wait_within(servers: int, rate: float, service_s: float, wait_s: float) -> float:
    """P(W <= w) = 1 - C(c, a) e^{-(c mu - lambda) w} for M/M/c."""
    offered = rate * service_s
    if offered >= servers:
        return 0.0
    late = erlang_c(servers, offered) * math.exp(-(servers / service_s - rate) * wait_s)
    return 1.0 - late
