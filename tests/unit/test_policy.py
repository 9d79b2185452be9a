"""The policy's behaviour, one rule per test."""

from __future__ import annotations

from typing import Any

from celeriac.api.pool import Concurrency, Scaling
from celeriac.policy import decide
from celeriac.policy.model import Decision, Mode, PolicyInput, PolicyMemory, Recommendation
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
    sig: PoolSignals, current: int, memory: PolicyMemory | None = None, **scaling: Any
) -> Decision:
    return decide(
        PolicyInput(
            now=NOW,
            scaling=Scaling.model_validate(scaling),
            concurrency=Concurrency(min=1, max=4),
            signals=sig,
            current_replicas=current,
            ready_replicas=current,
            memory=memory or PolicyMemory(),
        )
    )


def test_backlog_is_sized_to_start_within_the_wait_target() -> None:
    # 80 waiting, 1 s each, 10 s target: 8 slots busy draining, 4 slots a pod -> 2 pods.
    d = run(signals(waiting=80), current=2, targetQueueWaitSeconds=10)
    assert d.desired_replicas == 2
    assert d.mode == Mode.NORMAL


def test_a_burst_panics_and_scales_up_past_the_rate_policy() -> None:
    d = run(signals(waiting=400), current=1, targetQueueWaitSeconds=10, maxReplicas=20)
    assert d.mode == Mode.PANIC
    assert d.desired_replicas == 10
    assert d.memory.panic_until == NOW + 60


def test_scale_up_without_panic_obeys_the_rate_policy() -> None:
    # 2 -> 7 wanted is 3.5x: below the panic threshold of 4; +100 % / +4 pods per 15 s caps it at 6.
    d = run(
        signals(waiting=270), current=2, targetQueueWaitSeconds=10, maxReplicas=20, panicThreshold=4
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


def test_old_tasks_grow_the_pool_even_when_the_estimate_is_low() -> None:
    d = run(signals(waiting=2, oldest=60), current=2, targetQueueWaitSeconds=10)
    assert d.desired_replicas == 4
