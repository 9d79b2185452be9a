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
from celeriac.policy.estimate import DEFAULT_SERVICE_S, DEFAULT_STARTUP_S, measure, short_rate
from celeriac.policy.model import (
    Decision,
    Mode,
    PolicyInput,
    Recommendation,
    ScaleEvent,
)

TARGET_UTILIZATION = 0.85  # rho: keep-up slots run at most this busy
PANIC_HOLD_S = 60.0  # Knative's stable window: panic lasts this long after its last trigger
HISTORY_S = 1800.0


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

    mem = measure(inp)
    range_min, range_max, cpu_note = pod_range(inp, inp.memory.range_max)
    per_pod = max(range_max, 1)

    waiting = sig.waiting or 0
    backlog = sig.backlog or 0
    running = sum(w.running for w in (sig.workers or []))
    service = mem.service_s or DEFAULT_SERVICE_S
    target = scaling.target_queue_wait_seconds
    rate = mem.arrival_rate_per_s or 0.0
    # The panic window's rate and its second half's: a burst shows in the latter seconds sooner.
    panic_s = scaling.panic_window_seconds
    burst_rate = max(
        rate, short_rate(mem.arrivals, now, panic_s), short_rate(mem.arrivals, now, panic_s / 2)
    )
    keep_up = rate * service / TARGET_UTILIZATION
    # Work in hand (running or prefetched) is never left without its slot.
    in_hand = max(float(running), float(backlog - waiting))
    slots = max(in_hand, keep_up + waiting * service / target)
    have = current * per_pod
    if slots > have:
        # A pod asked for now serves only after start-up: size new pods for what will still
        # wait then, given the pods that are ready or already starting.
        startup = mem.startup_s or DEFAULT_STARTUP_S
        ready_slots = min(inp.ready_replicas, current) * per_pod
        starting_slots = have - ready_slots
        served = (ready_slots + starting_slots / 2) * startup / service
        later = waiting + burst_rate * startup - served
        slots = (
            max(have, burst_rate * service / TARGET_UTILIZATION) + later * service / target
            if later > 0
            else max(float(have), in_hand)
        )
    oldest = sig.oldest_age_s
    raw = math.ceil(slots / per_pod - 1e-9) if slots > 0 else 0
    # The stabilization window remembers what the pool needs once its backlog is gone, not the
    # transient drain, so capacity added for a backlog leaves once it is worked off.
    # Work in hand counts up to half again the keep-up need: enough that Poisson noise does not
    # flap the pool, too little for a drained backlog to hold its pods through the window.
    steady = max(keep_up, min(in_hand, 1.5 * keep_up))
    steady_pods = min(raw, math.ceil(steady / per_pod - 1e-9))

    mode = Mode.NORMAL
    reason_parts = [f"backlog {backlog} tasks"]
    if oldest is not None:
        late = ">" if oldest > target else "<="
        reason_parts.append(f"wait {oldest:.0f}s {late} {target:.0f}s target")
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
    panic_until = mem.panic_until
    demand = max(slots, burst_rate * service / TARGET_UTILIZATION)
    if demand / max(have, per_pod) >= scaling.panic_threshold and raw > current:
        panic_until = now + max(PANIC_HOLD_S, float(scaling.panic_window_seconds))
    if waiting == 0 and raw <= current:
        # The queue is empty: what panic protects (queued work on too few pods) is over.
        panic_until = None
    panicking = panic_until is not None and now < panic_until
    if panicking:
        mode = Mode.PANIC
    recs = [r for r in mem.recommendations if now - r.t <= HISTORY_S] + [
        Recommendation(t=now, replicas=steady_pods)
    ]

    desired = raw
    limited_by: str | None = None
    behavior = scaling.behavior
    events = [e for e in mem.scale_events if now - e.t <= HISTORY_S]
    if raw > current:
        up_s = behavior.scale_up.stabilization_window_seconds
        # The window holds past recommendations and this tick's need as computed now.
        window = [*(r.replicas for r in recs[:-1] if now - r.t <= up_s), raw]
        desired = raw if panicking else max(current, min(window))
        limit = None if panicking else _rate_limit(behavior.scale_up, current, events, now, up=True)
        if limit is not None and desired > limit:
            desired, limited_by = max(limit, current), "scaleUp policy"
    elif raw < current:
        down_s = behavior.scale_down.stabilization_window_seconds
        window = [*(r.replicas for r in recs[:-1] if now - r.t <= down_s), raw]
        desired = min(current, max(window))
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
