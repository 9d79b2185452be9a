"""The scaling policy: signals and memory in, desired replicas and per-pod range out.

One tick is a sequence of named steps, each its own module and each testable alone:
measure (estimate), the per-pod range (cpu_range), sizing, the zero rules (zero), panic,
the stabilization windows and rate policies, the min/max clamp (limits), the floors of
schedules and predicted bursts (floors), the reason text.
Missing or stale signals hold the current size; a paused pool keeps everything.
"""

from __future__ import annotations

from celeriac.policy.cpu_range import pod_range
from celeriac.policy.estimate import measure
from celeriac.policy.floors import capacity_floor, with_learned_profile
from celeriac.policy.limits import History, clamp, scale_down, scale_up
from celeriac.policy.model import Decision, Mode, PolicyInput, Recommendation, ScaleEvent
from celeriac.policy.panic import panic_until
from celeriac.policy.reason import MAX_REASON_CHARS, observed, reason_text
from celeriac.policy.schedules import raised_to_floor
from celeriac.policy.sizing import current_load, size
from celeriac.policy.zero import zero_floor

HISTORY_S = 1800.0
KEEP_RECOMMENDATIONS = 200
KEEP_SCALE_EVENTS = 100


def paused(inp: PolicyInput) -> Decision:
    current = inp.current_replicas
    return Decision(
        desired_replicas=current,
        range_min=inp.concurrency.min,
        range_max=inp.concurrency.max,
        mode=Mode.PAUSED,
        reason=f"paused at {current} replicas",
        memory=inp.memory,
    )


def held_on_stale_signals(inp: PolicyInput) -> Decision | None:
    """Missing or old signals hold the current size (within min/max): never scale in blind."""
    sig, scaling = inp.signals, inp.scaling
    age = inp.now - sig.observed_at
    if sig.queues is not None and age <= scaling.stale_after_seconds:
        return None
    held = min(max(inp.current_replicas, scaling.min_replicas), scaling.max_replicas)
    why = sig.backlog_error or f"signals {age:.0f} s old"
    return Decision(
        desired_replicas=held,
        range_min=inp.concurrency.min,
        range_max=inp.memory.range_max or inp.concurrency.max,
        mode=Mode.HOLD,
        reason=f"holding {held}: {why}"[:MAX_REASON_CHARS],
        memory=inp.memory,
    )


def limited(
    inp: PolicyInput,
    raw: int,
    panicking: bool,
    past: list[Recommendation],
    events: list[ScaleEvent],
) -> tuple[int, str | None]:
    """The need through panic, the stabilization windows and rate policies, then min/max."""
    current, behavior = inp.current_replicas, inp.scaling.behavior
    desired, limited_by = raw, None
    seen = History(past, events, inp.now)
    if raw > current:
        if not panicking:
            desired, limited_by = scale_up(raw, current, behavior.scale_up, seen)
    elif raw < current:
        if panicking:
            desired, limited_by = current, "panic"
        else:
            desired, limited_by = scale_down(raw, current, behavior.scale_down, seen)
    return clamp(desired, limited_by, inp.scaling.min_replicas, inp.scaling.max_replicas)


def decide(inp: PolicyInput) -> Decision:
    if inp.scaling.paused:
        return paused(inp)
    hold = held_on_stale_signals(inp)
    if hold is not None:
        return hold
    scaling, now, current = inp.scaling, inp.now, inp.current_replicas
    mem = with_learned_profile(inp, measure(inp))
    range_min, range_max, cpu_note = pod_range(inp, inp.memory.range_max)
    per_pod = max(range_max, 1)
    load = current_load(inp, mem)
    need = size(inp, mem, load, per_pod)
    raw = zero_floor(need.pods, current, load.backlog, load.running, scaling, mem.last_busy_at, now)
    until = panic_until(
        mem.panic_until,
        need.demand_slots,
        current * per_pod,
        per_pod,
        scaling.panic_threshold,
        wants_more=raw > current,
        queue_empty=load.waiting == 0,
        now=now,
        window_s=float(scaling.panic_window_seconds),
    )
    past = [r for r in mem.recommendations if now - r.t <= HISTORY_S]
    events = [e for e in mem.scale_events if now - e.t <= HISTORY_S]
    desired, limited_by = limited(inp, raw, until is not None, past, events)
    floor, why = capacity_floor(inp, mem, per_pod)
    desired, limited_by = raised_to_floor(desired, limited_by, floor, why, scaling.max_replicas)
    if desired != current:
        events.append(ScaleEvent(t=now, from_replicas=current, to_replicas=desired))
    idle = desired == 0 and current == 0 and scaling.min_replicas == 0
    mode = Mode.IDLE if idle else Mode.PANIC if until is not None else Mode.NORMAL
    seen = observed(
        load.backlog, inp.signals.oldest_age_s, scaling.target_queue_wait_seconds, cpu_note
    )
    recs = [*past, Recommendation(t=now, replicas=need.steady_pods)]
    return Decision(
        desired_replicas=desired,
        range_min=range_min,
        range_max=range_max,
        mode=mode,
        reason=reason_text(seen, current, desired, raw, limited_by, mode == Mode.PANIC),
        limited_by=limited_by,
        memory=mem.model_copy(
            update={
                "recommendations": recs[-KEEP_RECOMMENDATIONS:],
                "scale_events": events[-KEEP_SCALE_EVENTS:],
                "panic_until": until,
                "range_max": range_max,
            }
        ),
    )
