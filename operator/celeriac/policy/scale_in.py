"""Drain-aware scale-in: which pods go first, and how far in the pool may go now.

The ReplicaSet controller deletes pods with the lowest
`controller.kubernetes.io/pod-deletion-cost` first, so ranking pods by the work they
hold makes a replica decrease remove idle pods, not the one running a 20-minute task.
Pure: pods and their load in, annotations and an allowed replica count out.
"""

from __future__ import annotations

from dataclasses import dataclass

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
# Busy pods cost at least this much, so any idle pod goes before any busy one.
BUSY_BASE_COST = 1_000_000
IDLE_COST = 1000


@dataclass(frozen=True)
class PodState:
    name: str
    created_at: float
    running: int | None  # None: the worker has not reported (starting, or its report is stale)
    ready: bool


@dataclass(frozen=True)
class ScaleInPlan:
    allowed_replicas: int
    deletion_costs: dict[str, int]
    busy_pods: int
    held_for_drain: bool
    reason: str


def deletion_cost(pod: PodState) -> int:
    """Not-ready pods are cheapest, then idle ones; busy ones cost more the more they run.

    The value depends only on readiness and the running count in powers of two (1, 2-3,
    4-7, ...), not on time or age, so it changes (and costs a pod PATCH, and may hold a
    scale-in for a tick) only when a pod's load changes by a factor, not with every task.
    """
    if not pod.ready:
        return 0
    if not pod.running:
        return IDLE_COST
    return BUSY_BASE_COST + min(pod.running, 1000).bit_length() * 1000


def plan_scale_in(
    pods: list[PodState],
    current_replicas: int,
    desired_replicas: int,
    backlog_gone: bool,
    busy_since: float | None,
    drain_deadline_s: float,
    now: float,
) -> ScaleInPlan:
    costs = {p.name: deletion_cost(p) for p in pods}
    busy = sum(1 for p in pods if p.ready and p.running)
    if desired_replicas >= current_replicas:
        return ScaleInPlan(desired_replicas, costs, busy, False, "no scale-in")
    floor = busy
    deadline_passed = busy_since is not None and now - busy_since >= drain_deadline_s
    if desired_replicas >= floor:
        return ScaleInPlan(
            desired_replicas,
            costs,
            busy,
            False,
            f"removing {current_replicas - desired_replicas} idle pods",
        )
    if backlog_gone and deadline_passed:
        return ScaleInPlan(
            desired_replicas,
            costs,
            busy,
            False,
            f"drain deadline {drain_deadline_s:.0f} s passed: removing busy pods",
        )
    allowed = max(min(floor, current_replicas), desired_replicas)
    return ScaleInPlan(
        allowed,
        costs,
        busy,
        True,
        f"holding {allowed} replicas while {busy} pods finish running tasks",
    )
