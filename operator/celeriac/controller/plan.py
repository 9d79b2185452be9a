"""One tick's decision: from what was observed to what to write. Pure: no I/O, no clock.

`plan(observation)` runs in order: the spec's validity, who set the current replica count
(a hand edit is reverted), the replica decision (a `kubectl scale` jump, pause, or the
policy), drain-aware scale-in, the Deployment write, live ranges, the status and events.
The operator and the simulator call this same function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celeriac.actuators import render
from celeriac.api.crd import POOL_NAME_MESSAGE
from celeriac.api.pool import MAX_NAME_LENGTH, CeleryWorkerPoolSpec, ScaleTargetRef
from celeriac.api.status import CeleryWorkerPoolStatus
from celeriac.controller import attach
from celeriac.controller.drain import ConsumerChange, Drained, drain
from celeriac.controller.observation import Observation
from celeriac.controller.status import TickOutcome, build_status, invalid_spec_status
from celeriac.policy import decide as policy_decide
from celeriac.policy.model import Decision, Mode, PolicyInput, Recommendation
from celeriac.signals import worker_trust
from celeriac.signals.model import PoolSignals

# Numbers that move every tick (backlog, CPU, the policy's memory) reach the status at most
# this often; a decision, a condition or a warning that changes is written at once.
STATUS_REFRESH_S = 30.0
# ...except a backlog that moved by more than this, which is written after at least 5 s.
BACKLOG_REFRESH_S = 5.0
BACKLOG_STEP_TASKS = 5
BACKLOG_STEP_RATIO = 0.2
# A scaling action this recent keeps the memory worth writing (the longest default window,
# scale-down stabilization plus its rate period, is well inside it).
MEMORY_MATTERS_S = 600.0

Decide = Callable[[PolicyInput], Decision]


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class RangeChange:
    """Send `--autoscale max,min` to these workers (hostname -> pod name)."""

    range_min: int
    range_max: int
    workers: dict[str, str | None]


@dataclass(frozen=True)
class Plan:
    status: CeleryWorkerPoolStatus
    write_status: bool
    decision: Decision | None = None
    deployment: dict[str, Any] | None = None  # the whole body, when created or changed
    scale_to: int | None = None  # only the replica count, when that alone changed
    deletion_costs: dict[str, int] = field(default_factory=dict)  # only those that change
    ranges: RangeChange | None = None
    consumers: ConsumerChange | None = None  # workers to stop (or resume) consuming
    events: tuple[Event, ...] = ()
    scaled_from: int | None = None
    reverted_generation: int | None = None  # a hand-edited template was restored
    scale_target: ScaleTargetRef | None = None  # scale_to goes through this /scale, attached
    probe: tuple[str, ...] = ()  # stock workers to ask `inspect active` (off the tick)


def plan(obs: Observation, decide: Decide = policy_decide) -> Plan:
    if obs.spec is None:
        return _invalid_spec(obs, obs.spec_error or "invalid spec")
    if len(obs.ref.name) > MAX_NAME_LENGTH:
        # The CRD refuses these; a pool made under an older CRD is reported, not rendered.
        return _invalid_spec(obs, POOL_NAME_MESSAGE)
    spec = obs.spec
    if spec.attached and (obs.deployment is None or obs.target_error is not None):
        return _target_unavailable(obs, obs.target_error or "scale target not read yet")
    recommend = attach.recommending(spec)
    signals = trusted_signals(obs)
    current, edit_events = current_replicas(obs, spec)
    decision = choose_decision(obs, spec, signals, current, decide)
    # A recommendation is the policy's own number, not a drain hold.
    drained = (
        Drained(decision, None, {}) if recommend else drain(obs, spec, signals, decision, current)
    )
    decision, hold_since, costs = drained.decision, drained.hold_since, drained.costs
    body, scale_to, reverted = workload_writes(obs, spec, decision.desired_replicas)
    ranges, applied, reporting = range_change(signals, decision)
    warnings = pool_warnings(spec, signals)
    scaled = not recommend and current is not None and current != decision.desired_replicas
    status = build_status(
        obs,
        TickOutcome(
            decision=decision,
            ready_replicas=obs.deployment.ready_replicas if obs.deployment else 0,
            scaled=scaled,
            drain_hold_since=hold_since,
            ranges_applied=applied,
            ranges_reporting=reporting,
            warnings=warnings,
        ),
    )
    status, mode_events = mode_status(obs, spec, status, decision, current)
    events = (
        *edit_events,
        *template_events(obs, reverted),
        *mode_events,
        *(Event("Warning", "PoolWarning", w) for w in warnings if w not in obs.previous.warnings),
    )
    return Plan(
        status=status,
        write_status=status_due(obs, status),
        decision=decision,
        deployment=body,
        scale_to=scale_to,
        deletion_costs=costs,
        ranges=None if recommend else ranges,
        consumers=drained.consumers,
        events=events,
        scaled_from=current if scaled else None,
        reverted_generation=reverted,
        scale_target=spec.scale_target_ref,
        probe=drained.probe,
    )


def mode_status(
    obs: Observation,
    spec: CeleryWorkerPoolSpec,
    status: CeleryWorkerPoolStatus,
    decision: Decision,
    current: int | None,
) -> tuple[CeleryWorkerPoolStatus, tuple[Event, ...]]:
    """What attaching and recommending change in the status and the events."""
    events: list[Event] = []
    if spec.attached:
        status = status.model_copy(update={"selector": obs.target_selector})
        if not attach.recommending(spec):
            status, contest_warning = attach.contest(obs, spec, status)
            if contest_warning is not None:
                events.append(Event("Warning", "ScaleTargetContested", contest_warning))
    if attach.recommending(spec):
        status = attach.recommended_status(status, decision, current)
        events.extend(Event("Normal", r, m) for r, m in attach.recommend_events(obs, decision))
    else:
        events.extend(scale_events(obs, current, decision))
    return status, tuple(events)


def workload_writes(
    obs: Observation, spec: CeleryWorkerPoolSpec, replicas: int
) -> tuple[dict[str, Any] | None, int | None, int | None]:
    """Recommending writes nothing; attached, only the replica count through /scale (never
    a template: it is the user's); else the rendered Deployment's writes."""
    if attach.recommending(spec):
        return None, None, None
    if spec.attached:
        return None, attach.target_scale(obs, replicas), None
    return deployment_writes(obs, spec, replicas)


def _target_unavailable(obs: Observation, message: str) -> Plan:
    status = attach.target_unavailable_status(obs, message)
    changed = status_due(obs, status)
    events = (Event("Warning", "ScaleTargetUnavailable", message),) if changed else ()
    return Plan(status=status, write_status=changed, events=events)


def _invalid_spec(obs: Observation, message: str) -> Plan:
    status = invalid_spec_status(obs, message)
    changed = status_due(obs, status)
    events = (Event("Warning", "InvalidSpec", message),) if changed else ()
    return Plan(status=status, write_status=changed, events=events)


def trusted_signals(obs: Observation) -> PoolSignals | None:
    """Worker reports count only for pods of this pool, one each, from the hostname the pod
    runs as: anyone who can write to the broker can publish a report, and a forged one must
    not move another pool's scale or ranking, nor steer control calls to another worker."""
    signals = obs.signals
    if signals is None or signals.workers is None:
        return signals
    workers = worker_trust.from_pool_pods(signals.workers, {p.name for p in obs.pods})
    if workers == signals.workers:
        return signals
    return signals.model_copy(update={"workers": workers})


def current_replicas(
    obs: Observation, spec: CeleryWorkerPoolSpec
) -> tuple[int | None, tuple[Event, ...]]:
    """The replica count the policy continues from, and a warning if someone else set it.

    Who set it is read from the Deployment's managedFields, not by comparing with the last
    status: a lagging watch or a failed status write then cannot pass for a hand edit.
    """
    deployment = obs.deployment
    if deployment is None:
        return None, ()
    edited_by = deployment.replicas_manager
    # Recommending, someone else owns the replicas by design (KEDA, an HPA, a person).
    if spec.scaling.paused or edited_by is None or attach.recommending(spec):
        return deployment.replicas, ()
    restore = obs.previous.desired_replicas
    if restore is None or restore == deployment.replicas:
        return deployment.replicas, ()
    return restore, (
        Event(
            "Warning",
            "ScaleTargetEdited" if spec.attached else "DeploymentEdited",
            f"{attach.workload_name(obs, spec)} had {deployment.replicas} replicas set by "
            f"{edited_by!r}; restoring {restore} (use `kubectl scale cwp` instead)",
        ),
    )


def choose_decision(
    obs: Observation,
    spec: CeleryWorkerPoolSpec,
    signals: PoolSignals | None,
    current: int | None,
    decide: Decide,
) -> Decision:
    """The user's hand first (`kubectl scale cwp`, then `paused`), else the policy."""
    manual = manual_scale(obs, spec)
    if manual is not None:
        return manual
    concurrency = spec.worker.concurrency
    if spec.scaling.paused:
        held = current if current is not None else spec.scaling.min_replicas
        return Decision(
            desired_replicas=held,
            range_min=concurrency.min,
            range_max=concurrency.max,
            mode=Mode.PAUSED,
            reason=f"paused at {held} replicas",
            memory=obs.memory,
        )
    return decide(
        PolicyInput(
            now=obs.now,
            scaling=spec.scaling,
            concurrency=concurrency,
            signals=signals or PoolSignals(observed_at=0.0, backlog_error="not gathered yet"),
            current_replicas=current if current is not None else spec.scaling.min_replicas,
            ready_replicas=obs.deployment.ready_replicas if obs.deployment else 0,
            memory=obs.memory,
        )
    )


def manual_scale(obs: Observation, spec: CeleryWorkerPoolSpec) -> Decision | None:
    """`kubectl scale cwp` writes spec.replicas: honoured once, as a jump the policy
    continues from (it becomes the recent history, so stabilization does not undo it)."""
    wanted = spec.replicas
    if wanted is None or wanted == obs.previous.applied_spec_replicas:
        return None
    scaling = spec.scaling
    desired = (
        wanted if scaling.paused else max(scaling.min_replicas, min(scaling.max_replicas, wanted))
    )
    clamped_by = None
    if desired != wanted:
        clamped_by = "minReplicas" if desired > wanted else "maxReplicas"
    return Decision(
        desired_replicas=desired,
        range_min=spec.worker.concurrency.min,
        range_max=spec.worker.concurrency.max,
        mode=Mode.PAUSED if scaling.paused else Mode.NORMAL,
        reason=f"scaled by hand to {wanted}" + (f", clamped to {desired}" if clamped_by else ""),
        limited_by=clamped_by,
        memory=obs.memory.model_copy(
            update={"recommendations": [Recommendation(t=obs.now, replicas=desired)]}
        ),
    )


def deployment_writes(
    obs: Observation, spec: CeleryWorkerPoolSpec, replicas: int
) -> tuple[dict[str, Any] | None, int | None, int | None]:
    """The whole body when it is new, its rendered form changed, or someone else edited
    its template; else only the replica count, and only when it differs: an unchanged pool
    costs no write. The third value is the Deployment generation a hand edit was restored at
    (restored once per generation: fields the edit added that celeriac does not render stay
    theirs, and must not cost a write every tick)."""
    body = render.stamped(
        render.render_deployment(obs.ref.name, obs.ref.namespace, obs.ref.uid, spec, replicas)
    )
    deployment = obs.deployment
    if deployment is None or deployment.template_hash != render.body_hash(body):
        return body, None, None
    edited = deployment.template_manager is not None
    if edited and deployment.generation != obs.reverted_generation:
        return body, None, deployment.generation
    if deployment.replicas != replicas:
        return None, replicas, None
    return None, None, None


def template_events(obs: Observation, reverted: int | None) -> tuple[Event, ...]:
    if reverted is None or obs.deployment is None:
        return ()
    name = render.deployment_name(obs.ref.name)
    message = (
        f"{name}'s pod template was changed by {obs.deployment.template_manager!r}; "
        "restoring it from the pool's spec (change the CeleryWorkerPool instead)"
    )
    return (Event("Warning", "DeploymentEdited", message),)


def range_change(
    signals: PoolSignals | None, decision: Decision
) -> tuple[RangeChange | None, int | None, int | None]:
    """Workers whose reported range differs from the decided one; and how many already
    run it, of how many report."""
    if signals is None or signals.workers is None:
        return None, None, None
    wanted = (decision.range_min, decision.range_max)
    stale = {w.hostname: w.pod for w in signals.workers if (w.range_min, w.range_max) != wanted}
    applied = len(signals.workers) - len(stale)
    if not stale or decision.mode == Mode.PAUSED:
        return None, applied, len(signals.workers)
    return RangeChange(decision.range_min, decision.range_max, stale), applied, len(signals.workers)


def pool_warnings(spec: CeleryWorkerPoolSpec, signals: PoolSignals | None) -> tuple[str, ...]:
    """Settings that will hurt, said in the status (and once as an event)."""
    warnings: list[str] = []
    multiplier = spec.worker.prefetch_multiplier
    if multiplier > 1:
        hoard = multiplier * spec.worker.concurrency.max
        warnings.append(
            f"worker.prefetchMultiplier={multiplier}: each pod may reserve {hoard} tasks for "
            f"{spec.worker.concurrency.max} processes; reserved tasks wait behind running ones "
            "even when other pods are idle. Set prefetchMultiplier: 1 (and task_acks_late)."
        )
    p99s = [w.p99_task_seconds for w in (signals.workers or [])] if signals else []
    slowest = max((p for p in p99s if p), default=0.0)
    grace = spec.termination_grace_period_seconds
    if slowest > grace:
        # The grace period is the user's: deriving it from durations once cut a rare
        # 20-minute task after 30 s, and every change of it rolled all pods.
        warnings.append(
            f"tasks run up to {slowest:.0f} s (p99) but terminationGracePeriodSeconds is "
            f"{grace}: scale-in and rollouts cut the slowest; raise it above {slowest:.0f}."
        )
    return tuple(warnings)


def scale_events(obs: Observation, current: int | None, decision: Decision) -> tuple[Event, ...]:
    if current is None:
        name = render.deployment_name(obs.ref.name)
        message = f"created {name} with {decision.desired_replicas} replicas"
        return (Event("Normal", "DeploymentCreated", message),)
    if current != decision.desired_replicas:
        message = f"{current} -> {decision.desired_replicas}: {decision.reason}"
        return (Event("Normal", "Scaled", message),)
    return ()


def _settled(status: CeleryWorkerPoolStatus) -> dict[str, Any]:
    """The fields whose change is news to a user or to the next tick."""
    body = status.model_dump(
        mode="json",
        exclude={"backlog", "queues", "cpu_percent", "reason", "policy_memory", "ranges_applied"},
    )
    body["conditions"] = [(c.type, c.status, c.reason) for c in status.conditions]
    return body


def status_due(obs: Observation, status: CeleryWorkerPoolStatus) -> bool:
    written = obs.written
    if written is None or obs.written_at is None:
        return True
    if _settled(status) != _settled(written):
        return True
    visible_changed = _without_memory(status) != _without_memory(written)
    memory_changed = status.policy_memory != written.policy_memory
    if not visible_changed and not (memory_changed and _memory_matters(obs)):
        return False
    since = obs.now - obs.written_at
    if since >= STATUS_REFRESH_S:
        return True
    # A backlog that moved a lot is news while it happens (a burst, a drain), not 30 s later.
    return since >= BACKLOG_REFRESH_S and _moved(written.backlog, status.backlog)


def _without_memory(status: CeleryWorkerPoolStatus) -> CeleryWorkerPoolStatus:
    return status.model_copy(update={"policy_memory": None})


def _memory_matters(obs: Observation) -> bool:
    """Whether a restart would lose something by not having the newest memory: work is
    waiting or running, or a scaling action is recent enough for a window to hold on it.
    An idle, settled pool's memory only ticks its timestamps: not worth a write."""
    signals = obs.signals
    if signals is not None and signals.backlog:
        return True
    events = obs.memory.scale_events
    return bool(events) and obs.now - events[-1].t < MEMORY_MATTERS_S


def _moved(before: int | None, after: int | None) -> bool:
    if before is None or after is None:
        return before != after
    return abs(after - before) > max(BACKLOG_STEP_TASKS, BACKLOG_STEP_RATIO * before)
