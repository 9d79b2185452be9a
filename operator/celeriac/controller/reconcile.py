"""One reconcile of one pool: load spec, take signals, decide, apply, report.

The decision itself is `celeriac.policy.decide` (pure). What is here is the order of
the steps and the rules about when the user's own action (`kubectl scale`, `paused`)
comes before the policy's.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from celeriac.actuators import render
from celeriac.actuators.celery_control import RangeResult
from celeriac.api.pool import CeleryWorkerPoolSpec, CeleryWorkerPoolStatus
from celeriac.controller import metrics
from celeriac.controller.status import Observed, build_status, invalid_spec_status
from celeriac.policy.model import Decision, Mode, PolicyInput, PolicyMemory, Recommendation
from celeriac.policy.scale_in import DELETION_COST, PodState, grace_period, plan_scale_in
from celeriac.signals.model import PoolSignals

log = logging.getLogger(__name__)


class KubeEdge(Protocol):
    def read_deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def apply_deployment(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def patch_pool_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...
    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...
    def annotate_pod(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> None: ...


class ControlEdge(Protocol):
    def apply_range(
        self,
        broker_url: str,
        hostnames: Iterable[str],
        range_min: int,
        range_max: int,
        global_keyprefix: str = "",
    ) -> RangeResult: ...


EventSink = Callable[[str, str, str], None]  # (type Normal|Warning, reason, message)
Decide = Callable[[PolicyInput], Decision]


@dataclass(frozen=True)
class PoolRef:
    namespace: str
    name: str
    uid: str
    generation: int | None

    @property
    def pool_id(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Outcome:
    decision: Decision | None
    scaled_from: int | None
    status: CeleryWorkerPoolStatus
    error: str | None = None


def iso(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_spec(raw: dict[str, Any]) -> CeleryWorkerPoolSpec:
    return CeleryWorkerPoolSpec.model_validate(raw)


def validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = "spec." + ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def load_memory(raw_status: dict[str, Any]) -> PolicyMemory:
    try:
        return PolicyMemory.model_validate(raw_status.get("policyMemory") or {})
    except ValidationError:
        # A memory written by another version is only a cache of history: start afresh.
        return PolicyMemory()


def manual_scale(
    spec: CeleryWorkerPoolSpec, previous: CeleryWorkerPoolStatus, memory: PolicyMemory, now: float
) -> Decision | None:
    """`kubectl scale cwp` writes spec.replicas: honour it once, as a jump the policy continues from."""
    wanted = spec.replicas
    if wanted is None or wanted == previous.applied_spec_replicas:
        return None
    scaling = spec.scaling
    desired = (
        wanted if scaling.paused else max(scaling.min_replicas, min(scaling.max_replicas, wanted))
    )
    concurrency = spec.worker.concurrency
    return Decision(
        desired_replicas=desired,
        range_min=concurrency.min,
        range_max=concurrency.max,
        mode=Mode.PAUSED if scaling.paused else Mode.NORMAL,
        reason=f"scaled by hand to {wanted}"
        + ("" if desired == wanted else f", clamped to {desired}"),
        limited_by=None
        if desired == wanted
        else ("minReplicas" if desired > wanted else "maxReplicas"),
        unclamped_replicas=wanted,
        # The jump becomes the policy's recent history so stabilization does not undo it at once.
        memory=memory.model_copy(
            update={"recommendations": [Recommendation(t=now, replicas=desired)]}
        ),
    )


def prefetch_warning(spec: CeleryWorkerPoolSpec) -> str | None:
    """Workers that prefetch more than they run hold tasks behind long ones while others idle."""
    multiplier = spec.worker.prefetch_multiplier
    if multiplier <= 1:
        return None
    hoard = multiplier * spec.worker.concurrency.max
    return (
        f"worker.prefetchMultiplier={multiplier}: each pod may reserve {hoard} tasks for "
        f"{spec.worker.concurrency.max} processes; reserved tasks wait behind running ones "
        "even when other pods are idle. Set prefetchMultiplier: 1 (and task_acks_late)."
    )


def _pod_created(pod: dict[str, Any]) -> float:
    stamp = pod["metadata"].get("creationTimestamp")
    if not stamp:
        return 0.0
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


def _pod_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class PoolReconciler:
    def __init__(
        self,
        kube: KubeEdge,
        decide: Decide,
        emit: EventSink | None = None,
        control: ControlEdge | None = None,
    ) -> None:
        self.kube = kube
        self.decide = decide
        self.emit = emit or (lambda _type, _reason, _message: None)
        self.control = control

    def reconcile(
        self,
        ref: PoolRef,
        raw_spec: dict[str, Any],
        raw_status: dict[str, Any],
        signals: PoolSignals | None,
        now: float,
        broker_url: str | None = None,
    ) -> Outcome:
        previous = CeleryWorkerPoolStatus.model_validate(raw_status or {})
        try:
            spec = parse_spec(raw_spec)
        except ValidationError as exc:
            message = validation_message(exc)
            status = invalid_spec_status(previous, ref.generation, message, iso(now))
            self._write_status(ref, status, None)
            self.emit("Warning", "InvalidSpec", message)
            metrics.RECONCILE_ERRORS.labels(ref.namespace, ref.name, "InvalidSpec").inc()
            return Outcome(None, None, status, error=message)

        deployment = self.kube.read_deployment(ref.namespace, render.deployment_name(ref.name))
        live = int(deployment["spec"].get("replicas", 0)) if deployment else None
        # The operator owns the replica count: a hand edit of the Deployment is not a new
        # "current" for the policy to stabilize around, it is reverted to the last decision.
        current = live
        if (
            live is not None
            and not spec.scaling.paused
            and previous.desired_replicas is not None
            and live != previous.desired_replicas
        ):
            self.emit(
                "Warning",
                "DeploymentEdited",
                f"{render.deployment_name(ref.name)} had {live} replicas set outside celeriac; "
                f"restoring {previous.desired_replicas} (use `kubectl scale cwp` instead)",
            )
            current = previous.desired_replicas
        ready = int((deployment or {}).get("status", {}).get("readyReplicas", 0) or 0)
        memory = load_memory(raw_status or {})

        decision = manual_scale(spec, previous, memory, now)
        if decision is None and spec.scaling.paused:
            held = current if current is not None else spec.scaling.min_replicas
            decision = Decision(
                desired_replicas=held,
                range_min=spec.worker.concurrency.min,
                range_max=spec.worker.concurrency.max,
                mode=Mode.PAUSED,
                reason=f"paused at {held} replicas",
                memory=memory,
            )
        if decision is None:
            decision = self.decide(
                PolicyInput(
                    now=now,
                    scaling=spec.scaling,
                    concurrency=spec.worker.concurrency,
                    signals=signals
                    or PoolSignals(observed_at=0.0, backlog_error="not gathered yet"),
                    current_replicas=current if current is not None else spec.scaling.min_replicas,
                    ready_replicas=ready,
                    memory=memory,
                )
            )

        drain_hold_since: float | None = None
        if current is not None and signals is not None and signals.workers is not None:
            decision, drain_hold_since = self._drain_aware(
                ref, spec, decision, current, signals, previous, now
            )

        grace_s = grace_period(
            spec.termination_grace_period_seconds,
            [w.p99_task_seconds for w in (signals.workers or []) if w.p99_task_seconds]
            if signals is not None
            else [],
            previous.grace_period_seconds,
        )
        body = render.render_deployment(
            ref.name, ref.namespace, ref.uid, spec, decision.desired_replicas, grace_s
        )
        applied = self.kube.apply_deployment(body)
        applied_ready = int(applied.get("status", {}).get("readyReplicas", 0) or 0)
        scaled = current is not None and current != decision.desired_replicas
        if current is None:
            self.emit(
                "Normal",
                "DeploymentCreated",
                f"created {body['metadata']['name']} with {decision.desired_replicas} replicas",
            )
        elif scaled:
            self.emit(
                "Normal", "Scaled", f"{current} -> {decision.desired_replicas}: {decision.reason}"
            )
            metrics.SCALING_ACTIONS.labels(
                ref.namespace, ref.name, "up" if decision.desired_replicas > current else "down"
            ).inc()

        status = build_status(
            previous=previous,
            generation=ref.generation,
            pool_name=ref.name,
            selector=render.selector_string(ref.name),
            observed=Observed(
                exists=True, replicas=decision.desired_replicas, ready_replicas=applied_ready
            ),
            decision=decision,
            signals=signals,
            stale_after_s=spec.scaling.stale_after_seconds,
            now=now,
            now_iso=iso(now),
            scaled=scaled,
            applied_spec_replicas=spec.replicas,
        )
        applied_ranges, reporting = self._apply_ranges(ref, spec, decision, signals, broker_url)
        warning = prefetch_warning(spec)
        if warning and warning not in previous.warnings:
            self.emit("Warning", "PrefetchHoarding", warning)
        status = status.model_copy(
            update={
                "ranges_applied": applied_ranges,
                "ranges_reporting": reporting,
                "drain_hold_since": drain_hold_since,
                "grace_period_seconds": grace_s,
                "warnings": [warning] if warning else [],
            }
        )
        self._write_status(ref, status, decision.memory)
        metrics.observe_decision(ref.namespace, ref.name, decision, current, signals)
        return Outcome(decision, current if scaled else None, status)

    def _drain_aware(
        self,
        ref: PoolRef,
        spec: CeleryWorkerPoolSpec,
        decision: Decision,
        current: int,
        signals: PoolSignals,
        previous: CeleryWorkerPoolStatus,
        now: float,
    ) -> tuple[Decision, float | None]:
        """Keep every pod's deletion cost current; scale in only over pods already ranked.

        The ReplicaSet controller reads pod-deletion-cost from its informer cache, so a cost
        written in the same moment as a lower replica count may not be seen: a scale-in waits
        one tick whenever a ranking had to change. Busy pods are held until the drain deadline.
        """
        pods = self.kube.list_pods(ref.namespace, render.selector_string(ref.name))
        running = {w.pod: w.running for w in (signals.workers or [])}
        states = [
            PodState(
                name=p["metadata"]["name"],
                created_at=_pod_created(p),
                running=running.get(p["metadata"]["name"]),
                ready=_pod_ready(p),
            )
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
        ]
        busy_since = previous.drain_hold_since or now
        plan = plan_scale_in(
            states,
            current,
            decision.desired_replicas,
            # Only running tasks left: what is reserved is on the busy pods themselves.
            backlog_gone=signals.waiting == 0,
            busy_since=busy_since,
            drain_deadline_s=spec.scaling.drain_deadline_seconds,
            now=now,
        )
        reranked = False
        for p in pods:
            name = p["metadata"]["name"]
            cost = plan.deletion_costs.get(name)
            have = (p["metadata"].get("annotations") or {}).get(DELETION_COST)
            if cost is not None and have != str(cost):
                self.kube.annotate_pod(ref.namespace, name, {DELETION_COST: str(cost)})
                reranked = True
        if decision.desired_replicas >= current:
            return decision, None
        if reranked:
            return (
                decision.model_copy(
                    update={
                        "desired_replicas": current,
                        "reason": f"{decision.reason}; ranking pods before scale-in",
                        "limited_by": "drain",
                    }
                ),
                previous.drain_hold_since,
            )
        if plan.allowed_replicas == decision.desired_replicas:
            return decision, None
        held = decision.model_copy(
            update={
                "desired_replicas": plan.allowed_replicas,
                "reason": f"{decision.reason}; {plan.reason}",
                "limited_by": "drain",
            }
        )
        return held, busy_since

    def _apply_ranges(
        self,
        ref: PoolRef,
        spec: CeleryWorkerPoolSpec,
        decision: Decision,
        signals: PoolSignals | None,
        broker_url: str | None,
    ) -> tuple[int | None, int | None]:
        """Send the desired --autoscale range to workers that report another one."""
        if signals is None or signals.workers is None:
            return None, None
        wanted = (decision.range_min, decision.range_max)
        workers = signals.workers
        stale = [w for w in workers if (w.range_min, w.range_max) != wanted]
        applied = len(workers) - len(stale)
        if not stale or self.control is None or broker_url is None or decision.mode == Mode.PAUSED:
            return applied, len(workers)
        result = self.control.apply_range(
            broker_url,
            [w.hostname for w in stale],
            decision.range_min,
            decision.range_max,
            spec.broker.transport.global_keyprefix,
        )
        value = f"{decision.range_min}-{decision.range_max}"
        for worker in stale:
            if worker.hostname in result.confirmed and worker.pod:
                # The worker re-reads this (downward API) after a restart, so the range survives it.
                self.kube.annotate_pod(ref.namespace, worker.pod, {render.RANGE_ANNOTATION: value})
        if result.unconfirmed:
            self.emit(
                "Warning",
                "RangeNotConfirmed",
                f"--autoscale {value} not confirmed by {', '.join(result.unconfirmed)} "
                f"after {result.attempts} attempts",
            )
        else:
            self.emit(
                "Normal",
                "RangeApplied",
                f"--autoscale {value} applied to {len(result.confirmed)} workers "
                f"in {result.elapsed_s:.2f} s",
            )
        return applied + len(result.confirmed), len(workers)

    def _write_status(
        self, ref: PoolRef, status: CeleryWorkerPoolStatus, memory: PolicyMemory | None
    ) -> None:
        body = status.model_dump(by_alias=True, mode="json", exclude_none=True)
        if memory is not None:
            body["policyMemory"] = memory.model_dump(mode="json", exclude_none=True)
        self.kube.patch_pool_status(ref.namespace, ref.name, body)
