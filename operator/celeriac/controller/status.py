"""Builds the pool's status from what was observed and decided. Pure: time is an argument."""

from __future__ import annotations

from dataclasses import dataclass

from celeriac.api.pool import (
    CeleryWorkerPoolStatus,
    Condition,
    ConditionStatus,
    PodRange,
    QueueStatus,
)
from celeriac.policy.model import Decision, Mode
from celeriac.signals.model import PoolSignals

READY = "Ready"
SCALING_ACTIVE = "ScalingActive"
SCALING_LIMITED = "ScalingLimited"
DEGRADED = "Degraded"


@dataclass(frozen=True)
class Observed:
    """The Deployment as read (or written) on this tick."""

    exists: bool
    replicas: int
    ready_replicas: int


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


def degraded_reason(
    signals: PoolSignals | None, stale_after_s: float, now: float
) -> tuple[str, str] | None:
    if signals is None:
        return "SignalsUnavailable", "no signals gathered yet"
    if signals.queues is None:
        return (
            "BrokerUnavailable",
            f"backlog unreadable: {signals.backlog_error or 'unknown error'}",
        )
    age = now - signals.observed_at
    if age > stale_after_s:
        return (
            "SignalsStale",
            f"backlog reading is {age:.0f} s old (staleAfterSeconds {stale_after_s:.0f})",
        )
    return None


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


def build_status(
    *,
    previous: CeleryWorkerPoolStatus,
    generation: int | None,
    pool_name: str,
    selector: str,
    observed: Observed,
    decision: Decision,
    signals: PoolSignals | None,
    stale_after_s: float,
    now: float,
    now_iso: str,
    scaled: bool,
    applied_spec_replicas: int | None,
) -> CeleryWorkerPoolStatus:
    conditions = list(previous.conditions)

    ready = observed.exists and observed.ready_replicas >= decision.desired_replicas
    conditions = set_condition(
        conditions,
        READY,
        ConditionStatus.TRUE if ready else ConditionStatus.FALSE,
        "AllReplicasReady" if ready else "ReplicasNotReady",
        f"{observed.ready_replicas}/{decision.desired_replicas} worker pods ready",
        now_iso,
        generation,
    )

    active = decision.mode not in (Mode.PAUSED, Mode.HOLD)
    active_reason = {Mode.PAUSED: "Paused", Mode.HOLD: "SignalsUnavailable"}.get(
        decision.mode, "Scaling"
    )
    conditions = set_condition(
        conditions,
        SCALING_ACTIVE,
        ConditionStatus.TRUE if active else ConditionStatus.FALSE,
        active_reason,
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

    degraded = degraded_reason(signals, stale_after_s, now)
    if degraded is None:
        conditions = set_condition(
            conditions,
            DEGRADED,
            ConditionStatus.FALSE,
            "SignalsHealthy",
            "all signals fresh",
            now_iso,
            generation,
        )
    else:
        reason, message = degraded
        was = _since(conditions, DEGRADED)
        conditions = set_condition(
            conditions,
            DEGRADED,
            ConditionStatus.TRUE,
            reason,
            f"{message} (since {was or now_iso})",
            now_iso,
            generation,
        )

    queues = (
        [
            QueueStatus(
                name=q.queue,
                waiting=q.waiting,
                reserved=q.reserved,
                oldest_age_seconds=None if q.oldest_age_s is None else round(q.oldest_age_s, 1),
            )
            for q in signals.queues
        ]
        if signals is not None and signals.queues is not None
        else previous.queues
    )
    pod_range = PodRange(min=decision.range_min, max=decision.range_max)
    return CeleryWorkerPoolStatus(
        observed_generation=generation,
        replicas=observed.replicas,
        ready_replicas=observed.ready_replicas,
        desired_replicas=decision.desired_replicas,
        selector=selector,
        backlog=signals.backlog if signals is not None else previous.backlog,
        queues=queues,
        cpu_percent=_cpu_percent(signals),
        pod_range=str(pod_range),
        desired_range=pod_range,
        last_scale_time=now_iso if scaled else previous.last_scale_time,
        reason=decision.reason,
        applied_spec_replicas=applied_spec_replicas,
        conditions=conditions,
    )


def _limit_reason(limited_by: str | None) -> str:
    if limited_by is None:
        return "DesiredWithinRange"
    words = "".join(part[:1].upper() + part[1:] for part in limited_by.replace("-", " ").split())
    return f"LimitedBy{words}"[:128]


def invalid_spec_status(
    previous: CeleryWorkerPoolStatus, generation: int | None, message: str, now_iso: str
) -> CeleryWorkerPoolStatus:
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
