"""Each step of `decide`, one rule per test, called on its own."""

from __future__ import annotations

import math

import pytest

from celeriac.api.pool import Concurrency, HPAScalingPolicy, Scaling, ScalingRules
from celeriac.policy.cpu_range import pod_range
from celeriac.policy.decide import held_on_stale_signals, paused
from celeriac.policy.estimate import little_service
from celeriac.policy.limits import History, clamp, rate_limit, scale_down, scale_up, stabilized
from celeriac.policy.model import (
    ArrivalSample,
    Mode,
    PolicyInput,
    PolicyMemory,
    Recommendation,
    ScaleEvent,
)
from celeriac.policy.panic import PANIC_HOLD_S, panic_until
from celeriac.policy.reason import MAX_REASON_CHARS, observed, reason_text
from celeriac.policy.sizing import Load, held_past, pods_for, size, slots_after_start_up
from celeriac.policy.zero import zero_floor
from celeriac.signals.model import PoolSignals, QueueBacklog, WorkerLoad

NOW = 1_000_000.0


def load(waiting: int = 0, running: int = 0, service_s: float = 1.0, rate: float = 0.0) -> Load:
    return Load(
        waiting=waiting,
        backlog=waiting + running,
        running=running,
        service_s=service_s,
        rate_per_s=rate,
        burst_rate_per_s=rate,
    )


def policy_input(
    current: int, waiting: int = 0, workers: list[WorkerLoad] | None = None, **scaling: object
) -> PolicyInput:
    return PolicyInput(
        now=NOW,
        scaling=Scaling.model_validate(scaling),
        concurrency=Concurrency(min=1, max=4),
        signals=PoolSignals(
            observed_at=NOW,
            queues=[QueueBacklog(queue="q", waiting=waiting, reserved=0)],
            workers=workers,
        ),
        current_replicas=current,
        ready_replicas=current,
    )


# Sizing.


def test_keep_up_and_drain_add_up_to_the_slots() -> None:
    # 2 tasks/s x 1 s / 0.85 = 2.35 slots to keep up; 40 waiting x 1 s / 10 s = 4 to drain.
    inp = policy_input(current=3, targetQueueWaitSeconds=10)
    need = size(inp, PolicyMemory(), load(waiting=40, rate=2.0), per_pod=4)
    assert need.slots == 2.0 / 0.85 + 4.0
    assert need.pods == 2
    assert need.steady_pods == 1  # once drained, keep-up alone: 2.35 slots


def test_long_tasks_in_hand_keep_their_slots_from_what_waits() -> None:
    # 8 running tasks of ~300 s hold their slots past a 10 s target: 40 waiting need 4 x 300/10
    # slots beyond them, not among them.
    long = held_past(load(running=8, service_s=300.0), 10.0)
    assert long == 8 * math.exp(-10 / 300)
    short = held_past(load(running=8, service_s=1.0), 10.0)
    assert short < 0.001  # one-second tasks free their slots well within the target


def test_a_long_running_pool_remembers_its_held_slots_as_steady_need() -> None:
    inp = policy_input(current=3, targetQueueWaitSeconds=10)
    need = size(inp, PolicyMemory(startup_s=20.0), load(running=12, service_s=300.0), per_pod=4)
    assert need.steady_pods == 3  # the 12 running long tasks, not a transient


def test_new_pods_are_sized_for_what_still_waits_after_start_up() -> None:
    # 4 ready slots serve 4 x 30 s / 1 s = 120 of 400 waiting before help comes; 280 left.
    slots = slots_after_start_up(
        load(waiting=400), have=4, ready_slots=4, startup_s=30.0, target_s=10.0
    )
    assert slots == 4 + 28
    assert slots_after_start_up(load(waiting=100), 4, 4, 30.0, 10.0) == 4.0  # served in time


def test_pods_round_slots_up() -> None:
    assert [pods_for(s, 4) for s in (0.0, 0.5, 4.0, 4.01)] == [0, 1, 1, 2]


def test_little_service_counts_long_tasks_from_their_start() -> None:
    # 60 s at 10 running, 50 completions: 600 busy process-seconds / 50 = 12 s a task, though
    # every completed task may have been short.
    samples = [
        ArrivalSample(t=NOW - i, arrivals=1, dt=1.0, completed=50 / 60, running=10)
        for i in range(60)
    ]
    assert little_service(samples) == pytest.approx(12.0)
    few = [ArrivalSample(t=NOW, arrivals=1, dt=1.0, completed=3, running=10)]
    assert little_service(few) is None


# The per-pod range.


def test_cpu_saturated_pods_get_fewer_processes() -> None:
    hot = [
        WorkerLoad(
            hostname=f"w{i}",
            running=4,
            pool_size=4,
            range_min=1,
            range_max=4,
            cpu_percent=95.0,
            ts=NOW,
        )
        for i in range(2)
    ]
    inp = policy_input(current=2, workers=hot, targetCpuUtilizationPercent=60)
    assert pod_range(inp, None) == (1, 2, "CPU 95% > 60%")


def test_no_cpu_reports_keep_the_last_range() -> None:
    assert pod_range(policy_input(current=2), 3) == (1, 3, None)


# Zero.


def test_an_idle_pool_at_zero_stays_there_below_the_activation_backlog() -> None:
    scaling = Scaling(min_replicas=0, activation_backlog=5)
    assert zero_floor(0, 0, backlog=5, running=0, scaling=scaling, last_busy_at=None, now=NOW) == 0
    assert zero_floor(0, 0, backlog=6, running=0, scaling=scaling, last_busy_at=None, now=NOW) == 1


def test_the_last_pod_stays_until_the_idle_time_passed() -> None:
    scaling = Scaling(min_replicas=0, idle_seconds_before_zero=300)
    assert zero_floor(0, 1, 0, 0, scaling, last_busy_at=NOW - 299, now=NOW) == 1
    assert zero_floor(0, 1, 0, 0, scaling, last_busy_at=NOW - 300, now=NOW) == 0


def test_work_on_a_running_pool_keeps_a_pod() -> None:
    assert zero_floor(0, 2, backlog=0, running=1, scaling=Scaling(), last_busy_at=NOW, now=NOW) == 1


# Panic.


def test_demand_at_the_threshold_panics_for_the_hold() -> None:
    until = panic_until(
        None, 16.0, 8, 4, 2.0, wants_more=True, queue_empty=False, now=NOW, window_s=6
    )
    assert until == NOW + PANIC_HOLD_S
    calm = panic_until(
        None, 15.9, 8, 4, 2.0, wants_more=True, queue_empty=False, now=NOW, window_s=6
    )
    assert calm is None


def test_panic_ends_with_an_empty_queue_or_its_hold() -> None:
    args = {"demand_slots": 1.0, "have_slots": 8, "per_pod": 4, "threshold": 2.0, "now": NOW}
    assert panic_until(NOW + 30, wants_more=False, queue_empty=True, window_s=6, **args) is None
    assert (
        panic_until(NOW + 30, wants_more=False, queue_empty=False, window_s=6, **args) == NOW + 30
    )
    assert panic_until(NOW - 1, wants_more=False, queue_empty=False, window_s=6, **args) is None


# Stabilization, rate limits, clamping.


def test_stabilization_takes_the_lowest_need_up_and_the_highest_down() -> None:
    past = [Recommendation(t=NOW - 10, replicas=3), Recommendation(t=NOW - 100, replicas=9)]
    assert stabilized(6, 2, past, window_s=60, now=NOW) == 3
    assert stabilized(1, 5, past, window_s=60, now=NOW) == 3
    assert (
        stabilized(1, 5, past, window_s=120, now=NOW) == 5
    )  # 9 in the window, never above current


def test_rate_policies_count_changes_within_their_period() -> None:
    rules = ScalingRules(
        stabilization_window_seconds=0,
        policies=[
            HPAScalingPolicy(type="Percent", value=100, period_seconds=15),
            HPAScalingPolicy(type="Pods", value=4, period_seconds=15),
        ],
    )
    assert rate_limit(rules, 2, [], NOW, up=True) == 6  # max(4, 2 + 4)
    recent = [ScaleEvent(t=NOW - 5, from_replicas=2, to_replicas=6)]
    assert rate_limit(rules, 6, recent, NOW, up=True) == 6  # the budget is spent
    least = rules.model_copy(update={"select_policy": "Min"})
    assert rate_limit(least, 10, [], NOW, up=True) == 14
    off = rules.model_copy(update={"select_policy": "Disabled"})
    assert rate_limit(off, 10, [], NOW, up=True) == 10


def test_scale_up_and_down_name_what_limited_them() -> None:
    up = ScalingRules(
        stabilization_window_seconds=0,
        policies=[HPAScalingPolicy(type="Pods", value=2, period_seconds=15)],
    )
    assert scale_up(10, 3, up, History([], [], NOW)) == (5, "scaleUp policy")
    down = ScalingRules(
        stabilization_window_seconds=60,
        policies=[HPAScalingPolicy(type="Percent", value=50, period_seconds=30)],
    )
    assert scale_down(1, 8, down, History([Recommendation(t=NOW - 5, replicas=6)], [], NOW)) == (
        6,
        "scaleDown stabilization",
    )
    assert scale_down(1, 8, down, History([], [], NOW)) == (4, "scaleDown policy")


def test_min_and_max_clamp_last() -> None:
    assert clamp(12, None, 1, 10) == (10, "maxReplicas")
    assert clamp(0, "scaleDown policy", 1, 10) == (1, "minReplicas")
    assert clamp(5, "scaleDown policy", 1, 10) == (5, "scaleDown policy")


# Reason, pause, stale signals.


def test_the_reason_says_what_a_limit_held_back() -> None:
    seen = observed(120, 45.0, 30.0, None)
    assert seen == "backlog 120 tasks, wait 45s > 30s target"
    text = reason_text(seen, 2, 4, 9, "scaleUp policy", panicking=False)
    assert (
        text
        == "backlog 120 tasks, wait 45s > 30s target: 2 -> 4 pods (limited by scaleUp policy; wants 9)"
    )
    assert reason_text("x", 3, 3, 3, None, panicking=True) == "panic: x: steady at 3"
    assert len(reason_text("y" * 500, 1, 2, 2, None, False)) == MAX_REASON_CHARS


def test_a_paused_pool_keeps_its_size_and_memory() -> None:
    inp = policy_input(current=7, waiting=999, paused=True)
    d = paused(inp)
    assert (d.desired_replicas, d.mode, d.memory) == (7, Mode.PAUSED, inp.memory)


def test_fresh_signals_are_not_held() -> None:
    assert held_on_stale_signals(policy_input(current=2)) is None
