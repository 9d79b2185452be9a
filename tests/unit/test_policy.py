"""The policy's behaviour, one rule per test."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac.api.pool import Concurrency, Scaling
from celeriac.policy import decide
from celeriac.policy.estimate import steady_rate
from celeriac.policy.model import (
    ArrivalSample,
    Decision,
    Mode,
    PolicyInput,
    PolicyMemory,
    Recommendation,
    ScaleEvent,
)
from celeriac.signals.model import PoolSignals, QueueBacklog, WorkerLoad

NOW = 1_000_000.0


def signals(
    waiting: int = 0,
    reserved: int = 0,
    oldest: float | None = None,
    workers: list[WorkerLoad] | None = None,
    at: float = NOW,
) -> PoolSignals:
    return PoolSignals(
        observed_at=at,
        queues=[
            QueueBacklog(queue="celery", waiting=waiting, reserved=reserved, oldest_age_s=oldest)
        ],
        workers=workers,
    )


def worker(
    i: int,
    running: int = 0,
    cpu: float | None = None,
    size: int = 4,
    mean_s: float | None = 1.0,
    processed: int = 0,
) -> WorkerLoad:
    return WorkerLoad(
        hostname=f"w{i}",
        pod=f"p{i}",
        running=running,
        pool_size=size,
        range_min=1,
        range_max=4,
        cpu_percent=cpu,
        processed_total=processed,
        mean_task_seconds=mean_s,
        ts=NOW,
    )


def run(
    sig: PoolSignals,
    current: int,
    memory: PolicyMemory | None = None,
    ready: int | None = None,
    **scaling: Any,
) -> Decision:
    return decide(
        PolicyInput(
            now=NOW,
            scaling=Scaling.model_validate(scaling),
            concurrency=Concurrency(min=1, max=4),
            signals=sig,
            current_replicas=current,
            ready_replicas=current if ready is None else ready,
            memory=memory or PolicyMemory(),
        )
    )


def test_backlog_is_sized_to_start_within_the_wait_target() -> None:
    # 80 waiting, 1 s each, 10 s target: 8 slots busy draining, 4 slots a pod -> 2 pods.
    d = run(signals(waiting=80), current=2, targetQueueWaitSeconds=10)
    assert d.desired_replicas == 2
    assert d.mode == Mode.NORMAL


def test_a_burst_panics_and_scales_up_past_the_rate_policy() -> None:
    # 400 waiting, 1 s each: the ready pod runs 4 x 30 s (default start-up) = 120 of them before
    # a new pod is up; the 280 left, started within 10 s, need 28 slots: 4 + 28 = 32 -> 8 pods.
    d = run(signals(waiting=400), current=1, targetQueueWaitSeconds=10, maxReplicas=20)
    assert d.mode == Mode.PANIC
    assert d.desired_replicas == 8
    assert d.memory.panic_until == NOW + 60
    assert d.reason == "panic: backlog 400 tasks: 1 -> 8 pods"


def test_new_pods_are_sized_with_the_learned_start_up_time() -> None:
    # Pods took 10 s to start: the ready pod runs only 40 before help comes; 360 left -> 36 + 4.
    mem = PolicyMemory(startup_s=10.0)
    d = run(signals(waiting=400), current=1, memory=mem, targetQueueWaitSeconds=10, maxReplicas=20)
    assert d.desired_replicas == 10


def test_no_new_pods_when_the_fleet_clears_the_backlog_before_one_could_start() -> None:
    # 120 waiting need 24 slots to start within 5 s, but 20 ready slots run 600 in 30 s.
    d = run(signals(waiting=120), current=5, targetQueueWaitSeconds=5, maxReplicas=20)
    assert d.desired_replicas == 5
    assert d.mode == Mode.NORMAL


def test_pods_still_starting_count_as_half_their_capacity() -> None:
    # 1 ready + 4 starting = 4 + 8 slots x 30 s = 360 served; 400 - 360 = 40 left -> 20 + 4 slots.
    d = run(signals(waiting=400), current=5, ready=1, targetQueueWaitSeconds=10, maxReplicas=20)
    assert d.desired_replicas == 6


def test_start_up_time_is_learned_from_the_scale_up_that_asked_for_the_pods() -> None:
    mem = PolicyMemory(
        last_ready=2, scale_events=[ScaleEvent(t=NOW - 25, from_replicas=2, to_replicas=4)]
    )
    d = run(signals(waiting=0), current=4, memory=mem)
    assert d.memory.startup_s == 25.0


def test_a_one_off_dump_is_backlog_not_an_arrival_rate() -> None:
    # Six 10 s buckets at 1 task/s, one of which also received 5000 tasks at once.
    samples = [ArrivalSample(t=NOW - 5 - 10 * i, arrivals=10.0, dt=10.0) for i in range(6)]
    samples[2] = ArrivalSample(t=NOW - 25, arrivals=5010.0, dt=10.0)
    assert steady_rate(samples, NOW) == 1.0


def test_a_drained_backlog_does_not_hold_its_pods_through_the_window() -> None:
    # The window remembers the steady need (1 pod), not the drain that needed 8: shed 50 %.
    mem = PolicyMemory(recommendations=[Recommendation(t=NOW - 30, replicas=1)])
    d = run(signals(waiting=0), current=8, memory=mem)
    assert d.desired_replicas == 4
    assert d.limited_by == "scaleDown policy"


def test_scale_up_without_panic_obeys_the_rate_policy() -> None:
    # Pods start in 5 s: 8 ready slots run 40, 230 left -> 8 + 23 slots = 8 pods, 3.9x: below the
    # panic threshold of 4; +100 % / +4 pods per 15 s caps it at 6.
    d = run(
        signals(waiting=270),
        current=2,
        memory=PolicyMemory(startup_s=5.0),
        targetQueueWaitSeconds=10,
        maxReplicas=20,
        panicThreshold=4,
    )
    assert d.desired_replicas == 6
    assert d.limited_by == "scaleUp policy"


def test_no_scale_down_during_panic_while_work_waits() -> None:
    mem = PolicyMemory(panic_until=NOW + 30)
    d = run(signals(waiting=5), current=5, memory=mem)
    assert d.desired_replicas == 5
    assert d.mode == Mode.PANIC


def test_an_empty_queue_ends_panic() -> None:
    mem = PolicyMemory(panic_until=NOW + 30)
    d = run(signals(waiting=0), current=5, memory=mem)
    assert d.mode == Mode.NORMAL
    assert d.memory.panic_until is None


def test_scale_down_waits_for_the_stabilization_window() -> None:
    mem = PolicyMemory(recommendations=[Recommendation(t=NOW - 60, replicas=6)])
    d = run(signals(waiting=0), current=6, memory=mem)
    assert d.desired_replicas == 6
    assert d.limited_by == "scaleDown stabilization"


def test_scale_down_after_the_window_is_rate_limited_to_half() -> None:
    mem = PolicyMemory(recommendations=[Recommendation(t=NOW - 200, replicas=8)])
    d = run(signals(waiting=0), current=8, memory=mem)
    assert d.desired_replicas == 4
    assert d.limited_by == "scaleDown policy"


def test_stale_or_missing_signals_hold_and_never_scale_in() -> None:
    down = PoolSignals(observed_at=NOW, backlog_error="ConnectionError: refused")
    d = run(down, current=5)
    assert (d.desired_replicas, d.mode) == (5, Mode.HOLD)
    assert "refused" in d.reason
    old = signals(waiting=0, at=NOW - 120)
    assert run(old, current=3).desired_replicas == 3


def test_min_and_max_bound_every_decision() -> None:
    assert run(signals(waiting=10_000), current=3, maxReplicas=4).desired_replicas == 4
    d = run(signals(), current=1, minReplicas=2)
    assert (d.desired_replicas, d.limited_by) == (2, "minReplicas")


def test_scale_to_zero_only_after_the_idle_time() -> None:
    recent = PolicyMemory(last_busy_at=NOW - 100)
    assert run(signals(), current=1, memory=recent, minReplicas=0).desired_replicas == 1
    idle = PolicyMemory(
        last_busy_at=NOW - 301, recommendations=[Recommendation(t=NOW - 500, replicas=1)]
    )
    assert run(signals(), current=1, memory=idle, minReplicas=0).desired_replicas == 0


def test_wake_from_zero_above_the_activation_backlog() -> None:
    assert (
        run(signals(waiting=3), current=0, minReplicas=0, activationBacklog=5).desired_replicas == 0
    )
    assert (
        run(signals(waiting=6), current=0, minReplicas=0, activationBacklog=5).desired_replicas == 1
    )


def test_cpu_saturated_pods_get_fewer_processes_and_the_pool_more_pods() -> None:
    hot = [worker(i, running=4, cpu=95.0, size=4) for i in range(2)]
    d = run(
        signals(waiting=40, workers=hot),
        current=2,
        targetQueueWaitSeconds=10,
        targetCpuUtilizationPercent=60,
    )
    assert d.range_max == 2
    assert d.desired_replicas > 2


def test_idle_cpu_gives_pods_their_full_range() -> None:
    cool = [worker(i, running=1, cpu=10.0) for i in range(2)]
    d = run(signals(waiting=0, workers=cool), current=2)
    assert (d.range_min, d.range_max) == (1, 4)


def test_paused_keeps_everything() -> None:
    d = run(signals(waiting=999), current=2, paused=True)
    assert (d.desired_replicas, d.mode) == (2, Mode.PAUSED)


def test_the_reason_names_backlog_wait_and_the_change() -> None:
    d = run(
        signals(waiting=400, oldest=45),
        current=1,
        memory=PolicyMemory(startup_s=10.0),
        targetQueueWaitSeconds=30,
        panicThreshold=10,
    )
    assert d.reason == "backlog 400 tasks, wait 45s > 30s target: 1 -> 4 pods"


def test_minutes_long_tasks_count_in_the_service_time_before_they_end() -> None:
    # Workers report 1 s means (only short tasks have finished), but 12 processes stayed busy
    # for the minute in which 55 tasks completed: 720 / 55 = 13.1 s a task by Little's law.
    # Keep-up 1/s x 13.1 / 0.85 = 15.4 slots; the 3 ready pods serve 18 tasks in the 20 s
    # start-up, so 30 + 20 - 18 = 32 still wait then, 42 slots to start them in 10 s: 15 pods.
    # With the reported 1 s mean the 12 busy slots would look like enough: 3 pods.
    samples = [
        ArrivalSample(t=NOW - 5 - 5 * i, arrivals=5.0, dt=5.0, completed=5.0, running=12.0)
        for i in range(12)
    ]
    busy = [worker(i, running=4, mean_s=1.0) for i in range(3)]
    mem = PolicyMemory(arrivals=samples, last_t=NOW - 5, last_backlog=42, startup_s=20.0)
    d = run(
        signals(waiting=30, reserved=12, workers=busy),
        current=3,
        memory=mem,
        maxReplicas=50,
        targetQueueWaitSeconds=10,
    )
    assert d.memory.service_s == pytest.approx(720 / 55)
    assert d.desired_replicas == 15
