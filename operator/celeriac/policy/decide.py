"""The scaling policy: signals and memory in, desired replicas and per-pod range out.

Sizing is Little's law on worker slots: to keep up, rate*S/rho slots; to start every waiting
task within the target wait T, another W*S/T. A pod has as many slots as its range
maximum, which CPU headroom decides (a CPU-bound pod gets fewer processes, so the pool
gets more pods instead). Bursts enter a panic mode that scales up at once and never
down; calm periods release through HPA-style stabilization windows and rate policies.
Missing or stale signals hold the current size.
"""

from __future__ import annotations

import math

from celeriac.api.pool import HPAScalingPolicy, ScalingRules
from celeriac.policy.model import (
    Decision,
    Mode,
    PolicyInput,
    PolicyMemory,
    Recommendation,
    ScaleEvent,
)

DEFAULT_SERVICE_S = 1.0  # until workers report their task durations
TARGET_UTILIZATION = 0.85  # rho: keep-up slots run at most this busy
EWMA_ALPHA = 0.3
PANIC_HOLD_S = 60.0  # Knative's stable window: panic lasts this long after its last trigger
HISTORY_S = 1800.0


def _ewma(previous: float | None, sample: float) -> float:
    return sample if previous is None else previous + EWMA_ALPHA * (sample - previous)


def _measure(inp: PolicyInput) -> PolicyMemory:
    """Fold this tick's readings into smoothed arrival rate and service time."""
    mem = inp.memory
    sig = inp.signals
    backlog = sig.backlog or 0
    workers = sig.workers or []
    completed = sum(w.processed_total for w in workers) if workers else None
    durations = [(w.mean_task_seconds, w.pool_size) for w in workers if w.mean_task_seconds]
    service = mem.service_s
    if durations:
        weight = sum(max(n, 1) for _, n in durations)
        sample = sum(d * max(n, 1) for d, n in durations if d is not None) / weight
        service = _ewma(service, sample)
    rate = mem.arrival_rate_per_s
    if mem.last_t is not None and inp.now > mem.last_t and mem.last_backlog is not None:
        dt = inp.now - mem.last_t
        done = 0
        if completed is not None and mem.last_completed_total is not None:
            # A restarted or removed worker resets its counter: count no negative completions.
            done = max(0, completed - mem.last_completed_total)
        arrivals = max(0.0, (backlog - mem.last_backlog) + done)
        rate = _ewma(rate, arrivals / dt)
    busy = backlog > 0 or any(w.running for w in workers)
    return mem.model_copy(
        update={
            "arrival_rate_per_s": rate,
            "service_s": service,
            "last_completed_total": completed,
            "last_backlog": backlog,
            "last_t": inp.now,
            "last_busy_at": inp.now if busy else mem.last_busy_at,
        }
    )


def pod_range(inp: PolicyInput, previous_max: int | None) -> tuple[int, int, str | None]:
    """Per-pod --autoscale (min, max) from CPU headroom."""
    bounds = inp.concurrency
    top = bounds.max
    floor = max(bounds.min, 1)
    workers = [w for w in (inp.signals.workers or []) if w.cpu_percent is not None and w.pool_size]
    if not workers:
        return bounds.min, previous_max or top, None
    target = inp.scaling.target_cpu_utilization_percent / 100.0
    utils = [(w.cpu_percent or 0.0) / (100.0 * (w.cpu_limit_cores or 1.0)) for w in workers]
    util = sum(utils) / len(utils)
    processes = sum(w.pool_size for w in workers) / len(workers)
    current = previous_max or top
    if util > target:
        # Each process already burns CPU the pod does not have: fewer per pod, more pods.
        shrunk = max(floor, min(top, math.floor(processes * target / util)))
        return bounds.min, min(current, shrunk), f"CPU {util:.0%} > {target:.0%}"
    if util < target * 0.6:
        return bounds.min, top, None
    return bounds.min, min(max(current, floor), top), None


def _rate_limit(
    rules: ScalingRules, current: int, events: list[ScaleEvent], now: float, up: bool
) -> int | None:
    """The HPA's behavior policies: the replica count the period budget allows, or None for no limit."""
    if rules.select_policy == "Disabled":
        return current
    if not rules.policies:
        return None

    def allowed(policy: HPAScalingPolicy) -> int:
        window = [e for e in events if now - e.t < policy.period_seconds]
        changed = sum(
            (e.to_replicas - e.from_replicas)
            for e in window
            if (e.to_replicas > e.from_replicas) == up
        )
        base = current - changed
        if policy.type == "Pods":
            return base + policy.value if up else base - policy.value
        if up:
            return math.ceil(base * (1 + policy.value / 100.0))
        return math.floor(base * (1 - policy.value / 100.0))

    limits = [allowed(p) for p in rules.policies]
    most_change = max(limits) if up else min(limits)
    least_change = min(limits) if up else max(limits)
    return most_change if rules.select_policy == "Max" else least_change


def decide(inp: PolicyInput) -> Decision:
    scaling, now, current = inp.scaling, inp.now, inp.current_replicas
    lo, hi = scaling.min_replicas, scaling.max_replicas

    if scaling.paused:
        return Decision(
            desired_replicas=current,
            range_min=inp.concurrency.min,
            range_max=inp.concurrency.max,
            mode=Mode.PAUSED,
            reason=f"paused at {current} replicas",
            memory=inp.memory,
        )

    sig = inp.signals
    age = now - sig.observed_at
    if sig.queues is None or age > scaling.stale_after_seconds:
        held = min(max(current, lo), hi)
        why = sig.backlog_error or f"signals {age:.0f} s old"
        return Decision(
            desired_replicas=held,
            range_min=inp.concurrency.min,
            range_max=inp.memory.range_max or inp.concurrency.max,
            mode=Mode.HOLD,
            reason=f"holding {held}: {why}"[:200],
            memory=inp.memory,
        )

    mem = _measure(inp)
    range_min, range_max, cpu_note = pod_range(inp, inp.memory.range_max)
    slots_per_pod = max(range_max, 1)

    waiting = sig.waiting or 0
    backlog = sig.backlog or 0
    running = sum(w.running for w in (sig.workers or []))
    service = mem.service_s or DEFAULT_SERVICE_S
    rate = mem.arrival_rate_per_s or 0.0
    target = scaling.target_queue_wait_seconds
    keep_up = rate * service / TARGET_UTILIZATION
    drain = waiting * service / target
    slots = max(keep_up + drain, float(running), float(backlog - waiting))
    oldest = sig.oldest_age_s
    if oldest is not None and oldest > target and 0 < inp.ready_replicas >= current:
        # Tasks already wait longer than the target with every pod up: the estimate is short,
        # grow by the lateness (at most 2x). Not while pods are still starting: their capacity
        # is on its way, and boosting again each tick would compound into an overshoot.
        slots = max(slots, inp.ready_replicas * slots_per_pod * min(2.0, oldest / target))
    raw = math.ceil(slots / slots_per_pod - 1e-9) if slots > 0 else 0

    mode = Mode.NORMAL
    reason_parts = [f"backlog {backlog}"]
    if oldest is not None:
        reason_parts.append(f"oldest {oldest:.0f}s/{target:.0f}s")
    if cpu_note:
        reason_parts.append(cpu_note)

    # Scale to and from zero.
    if backlog <= scaling.activation_backlog and running == 0 and current == 0:
        raw = 0
    elif current == 0 and backlog > scaling.activation_backlog:
        raw = max(raw, 1)
    if lo == 0 and raw == 0 and current > 0:
        idle_for = now - (mem.last_busy_at if mem.last_busy_at is not None else now)
        if idle_for < scaling.idle_seconds_before_zero:
            raw = 1
    if (backlog > 0 or running > 0) and (current > 0 or backlog > scaling.activation_backlog):
        raw = max(raw, 1)

    # Panic: demand far above capacity scales up at once and blocks scale-down for a while.
    capacity = max(current, 1) * slots_per_pod
    panic_until = mem.panic_until
    if slots / capacity >= scaling.panic_threshold and raw > current:
        panic_until = now + max(PANIC_HOLD_S, float(scaling.panic_window_seconds))
    if waiting == 0 and raw <= current:
        # The queue is empty: what panic protects (queued work on too few pods) is over.
        panic_until = None
    panicking = panic_until is not None and now < panic_until
    if panicking:
        mode = Mode.PANIC
    recs = [r for r in mem.recommendations if now - r.t <= HISTORY_S] + [
        Recommendation(t=now, replicas=raw)
    ]

    desired = raw
    limited_by: str | None = None
    behavior = scaling.behavior
    events = [e for e in mem.scale_events if now - e.t <= HISTORY_S]
    if raw > current:
        window = [
            r.replicas for r in recs if now - r.t <= behavior.scale_up.stabilization_window_seconds
        ]
        desired = max(current, min(window)) if window and not panicking else raw
        limit = None if panicking else _rate_limit(behavior.scale_up, current, events, now, up=True)
        if limit is not None and desired > limit:
            desired, limited_by = max(limit, current), "scaleUp policy"
    elif raw < current:
        window = [
            r.replicas
            for r in recs
            if now - r.t <= behavior.scale_down.stabilization_window_seconds
        ]
        desired = min(current, max(window)) if window else raw
        if desired > raw:
            limited_by = "scaleDown stabilization"
        if panicking:
            desired, limited_by = current, "panic"
        limit = _rate_limit(behavior.scale_down, current, events, now, up=False)
        if limit is not None and desired < limit:
            desired, limited_by = min(limit, current), "scaleDown policy"

    if desired > hi:
        desired, limited_by = hi, "maxReplicas"
    if desired < lo:
        desired, limited_by = lo, "minReplicas"
    if desired == 0 and current == 0 and lo == 0:
        mode = Mode.IDLE

    if desired != current:
        events.append(ScaleEvent(t=now, from_replicas=current, to_replicas=desired))
        reason = f"{', '.join(reason_parts)}: {current} -> {desired} pods"
    else:
        reason = f"{', '.join(reason_parts)}: steady at {desired}"
    if limited_by:
        reason += f" (limited by {limited_by})"
    if mode == Mode.PANIC:
        reason = "panic: " + reason

    return Decision(
        desired_replicas=desired,
        range_min=range_min,
        range_max=range_max,
        mode=mode,
        reason=reason,
        limited_by=limited_by,
        unclamped_replicas=raw,
        memory=mem.model_copy(
            update={
                "recommendations": recs[-200:],
                "scale_events": events[-100:],
                "panic_until": panic_until if panicking else None,
                "range_max": range_max,
            }
        ),
    )
