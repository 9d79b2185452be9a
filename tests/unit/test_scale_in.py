"""Drain-aware scale-in: idle pods go first; busy pods are held until the drain deadline."""

from __future__ import annotations

from celeriac.policy.scale_in import (
    BUSY_BASE_COST,
    PodState,
    deletion_cost,
    plan_scale_in,
)

NOW = 10_000.0


def pod(name: str, running: int | None, age_s: float = 100, ready: bool = True) -> PodState:
    return PodState(name=name, created_at=NOW - age_s, running=running, ready=ready)


def test_idle_pods_cost_less_than_any_busy_pod() -> None:
    idle_old = deletion_cost(pod("a", 0, age_s=80_000))
    busy_young = deletion_cost(pod("b", 1, age_s=1))
    assert idle_old < BUSY_BASE_COST <= busy_young


def test_more_running_tasks_cost_more() -> None:
    assert deletion_cost(pod("a", 1)) < deletion_cost(pod("b", 3))


def test_not_ready_pods_go_first() -> None:
    assert deletion_cost(pod("a", None, ready=False)) == 0
    assert deletion_cost(pod("a", None, ready=False)) < deletion_cost(pod("b", 0))


def test_scale_in_to_the_idle_pods_is_allowed_as_decided() -> None:
    pods = [pod("busy", 2), pod("idle1", 0), pod("idle2", 0)]
    plan = plan_scale_in(
        pods, 3, 1, backlog_gone=True, busy_since=None, drain_deadline_s=600, now=NOW
    )
    assert plan.allowed_replicas == 1
    assert plan.held_for_drain is False
    ranked = sorted(plan.deletion_costs, key=lambda n: plan.deletion_costs[n])
    assert ranked[-1] == "busy"


def test_never_below_the_busy_pods_before_the_drain_deadline() -> None:
    pods = [pod("b1", 1), pod("b2", 4), pod("idle", 0)]
    plan = plan_scale_in(
        pods, 3, 0, backlog_gone=True, busy_since=NOW - 10, drain_deadline_s=600, now=NOW
    )
    assert plan.allowed_replicas == 2
    assert plan.held_for_drain is True
    assert plan.busy_pods == 2
    assert plan.reason == "holding 2 replicas while 2 pods finish running tasks"


def test_busy_pods_may_go_once_backlog_is_gone_and_deadline_passed() -> None:
    pods = [pod("b1", 1), pod("b2", 4)]
    plan = plan_scale_in(
        pods, 2, 0, backlog_gone=True, busy_since=NOW - 601, drain_deadline_s=600, now=NOW
    )
    assert plan.allowed_replicas == 0
    assert plan.held_for_drain is False


def test_deadline_alone_is_not_enough_while_work_is_queued() -> None:
    pods = [pod("b1", 1), pod("b2", 4)]
    plan = plan_scale_in(
        pods, 2, 1, backlog_gone=False, busy_since=NOW - 9999, drain_deadline_s=600, now=NOW
    )
    assert plan.allowed_replicas == 2
    assert plan.held_for_drain is True


def test_scale_up_is_never_touched() -> None:
    plan = plan_scale_in(
        [pod("a", 3)], 1, 4, backlog_gone=False, busy_since=None, drain_deadline_s=0, now=NOW
    )
    assert plan.allowed_replicas == 4
    assert plan.held_for_drain is False
