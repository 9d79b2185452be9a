"""Builds the pool's status from what was observed and decided. Pure: time is an argument."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from celeriac.actuators.render import selector_string
from celeriac.api.status import (
    CeleryWorkerPoolStatus,
    Condition,
    ConditionStatus,
    PodRange,
    QueueStatus,
)
from celeriac.controller.observation import Observation
from celeriac.policy.model import Decision, Mode
from celeriac.signals.freshness import signal_problem
from celeriac.signals.model import PoolSignals

READY = "Ready"
SCALING_ACTIVE = "ScalingActive"
SCALING_LIMITED = "ScalingLimited"
DEGRADED = "Degraded"


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now_iso: str,
    generation: int | None,
) -> list[Condition]:
    """Replace one condition, keeping lastTransitionTime when its status did not change."""
    previous = next((c for c in conditions if c.type == type_), None)
    since = previous.last_transition_time if previous and previous.status == status else now_iso
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    return [c for c in conditions if c.type != type_] + [updated]


def _since(conditions: list[Condition], type_: str) -> str | None:
    cond = next((c for c in conditions if c.type == type_), None)
    return cond.last_transition_time if cond and cond.status == ConditionStatus.TRUE else None


def _cpu_percent(signals: PoolSignals | None) -> int | None:
    if signals is None:
        return None
    if signals.workers:
        values = [w.cpu_percent for w in signals.workers if w.cpu_percent is not None]
        if values:
            return round(sum(values) / len(values))
    if signals.pod_cpu:
        # metrics-server's view when workers do not report: 100 = one core, as above.
        return round(sum(p.cpu_millicores for p in signals.pod_cpu) / len(signals.pod_cpu) / 10)
    return None


@dataclass(frozen=True)
class TickOutcome:
    """What the plan settled on this tick, beyond the policy's decision."""

    decision: Decision
    ready_replicas: int
    scaled: bool
    drain_hold_since: float | None = None
    ranges_applied: int | None = None
    ranges_reporting: int | None = None
    warnings: tuple[str, ...] = ()


def _conditions(obs: Observation, out: TickOutcome, now_iso: str) -> list[Condition]:
    decision, generation = out.decision, obs.ref.generation
    conditions = list(obs.previous.conditions)
    ready = out.ready_replicas >= decision.desired_replicas
    conditions = set_condition(
        conditions,
        READY,
        ConditionStatus.TRUE if ready else ConditionStatus.FALSE,
        "AllReplicasReady" if ready else "ReplicasNotReady",
        f"{out.ready_replicas}/{decision.desired_replicas} worker pods ready",
        now_iso,
        generation,
    )
    active = decision.mode not in (Mode.PAUSED, Mode.HOLD)
    conditions = set_condition(
        conditions,
        SCALING_ACTIVE,
        ConditionStatus.TRUE if active else ConditionStatus.FALSE,
        {Mode.PAUSED: "Paused", Mode.HOLD: "SignalsUnavailable"}.get(decision.mode, "Scaling"),
        decision.reason,
        now_iso,
        generation,
    )
    limited = decision.limited_by is not None
    conditions = set_condition(
        conditions,
        SCALING_LIMITED,
        ConditionStatus.TRUE if limited else ConditionStatus.FALSE,
        _limit_reason(decision.limited_by),
        f"desired replicas limited by {decision.limited_by}" if limited else "within limits",
        now_iso,
        generation,
    )
    return _degraded(conditions, obs, now_iso)


def _degraded(conditions: list[Condition], obs: Observation, now_iso: str) -> list[Condition]:
    stale_after = obs.spec.scaling.stale_after_seconds if obs.spec else 60.0
    problem = signal_problem(obs.signals, stale_after, obs.now)
    if problem is None:
        status, reason, message = ConditionStatus.FALSE, "SignalsHealthy", "all signals fresh"
    else:
        was = _since(conditions, DEGRADED)
        status, reason = ConditionStatus.TRUE, problem[0]
        message = f"{problem[1]} (since {was or now_iso})"
    return set_condition(conditions, DEGRADED, status, reason, message, now_iso, obs.ref.generation)


def _queues(obs: Observation) -> list[QueueStatus]:
    signals = obs.signals
    if signals is None or signals.queues is None:
        return obs.previous.queues
    return [
        QueueStatus(
            name=q.queue,
            waiting=q.waiting,
            reserved=q.reserved,
            oldest_age_seconds=None if q.oldest_age_s is None else round(q.oldest_age_s, 1),
            oldest_age_is_lower_bound=q.oldest_age_is_lower_bound or None,
        )
        for q in signals.queues
    ]


def build_status(obs: Observation, out: TickOutcome) -> CeleryWorkerPoolStatus:
    """The whole status, policy memory included: its one builder."""
    now_iso = iso(obs.now)
    decision, previous = out.decision, obs.previous
    pod_range = PodRange(min=decision.range_min, max=decision.range_max)
    return CeleryWorkerPoolStatus(
        observed_generation=obs.ref.generation,
        replicas=decision.desired_replicas,
        ready_replicas=out.ready_replicas,
        desired_replicas=decision.desired_replicas,
        selector=selector_string(obs.ref.name),
        backlog=obs.signals.backlog if obs.signals is not None else previous.backlog,
        queues=_queues(obs),
        cpu_percent=_cpu_percent(obs.signals),
        pod_range=str(pod_range),
        desired_range=pod_range,
        last_scale_time=now_iso if out.scaled else previous.last_scale_time,
        reason=decision.reason,
        applied_spec_replicas=obs.spec.replicas if obs.spec else None,
        ranges_applied=out.ranges_applied,
        ranges_reporting=out.ranges_reporting,
        drain_hold_since=out.drain_hold_since,
        warnings=list(out.warnings),
        conditions=_conditions(obs, out, now_iso),
        policy_memory=decision.memory,
    )


def iso(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _limit_reason(limited_by: str | None) -> str:
    if limited_by is None:
        return "DesiredWithinRange"
    words = "".join(part[:1].upper() + part[1:] for part in limited_by.replace("-", " ").split())
    return f"LimitedBy{words}"[:128]


def invalid_spec_status(obs: Observation, message: str) -> CeleryWorkerPoolStatus:
    previous, generation, now_iso = obs.previous, obs.ref.generation, iso(obs.now)
    conditions = set_condition(
        list(previous.conditions),
        DEGRADED,
        ConditionStatus.TRUE,
        "InvalidSpec",
        message,
        now_iso,
        generation,
    )
    conditions = set_condition(
        conditions,
        SCALING_ACTIVE,
        ConditionStatus.FALSE,
        "InvalidSpec",
        message,
        now_iso,
        generation,
    )
    return previous.model_copy(
        update={
            "observed_generation": generation,
            "conditions": conditions,
            "reason": "InvalidSpec",
        }
    )
