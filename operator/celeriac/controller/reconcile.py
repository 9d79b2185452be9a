"""One reconcile of one pool: load spec, take signals, decide, apply, report.

The decision itself is `celeriac.policy.decide` (pure). What is here is the order of
the steps and the rules about when the user's own action (`kubectl scale`, `paused`)
comes before the policy's.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from celeriac.actuators import render
from celeriac.api.pool import CeleryWorkerPoolSpec, CeleryWorkerPoolStatus
from celeriac.controller import metrics
from celeriac.controller.status import Observed, build_status, invalid_spec_status
from celeriac.policy.model import Decision, Mode, PolicyInput, PolicyMemory, Recommendation
from celeriac.signals.model import PoolSignals

log = logging.getLogger(__name__)


class KubeEdge(Protocol):
    def read_deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def apply_deployment(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def patch_pool_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...


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


class PoolReconciler:
    def __init__(self, kube: KubeEdge, decide: Decide, emit: EventSink | None = None) -> None:
        self.kube = kube
        self.decide = decide
        self.emit = emit or (lambda _type, _reason, _message: None)

    def reconcile(
        self,
        ref: PoolRef,
        raw_spec: dict[str, Any],
        raw_status: dict[str, Any],
        signals: PoolSignals | None,
        now: float,
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
        current = int(deployment["spec"].get("replicas", 0)) if deployment else None
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

        body = render.render_deployment(
            ref.name, ref.namespace, ref.uid, spec, decision.desired_replicas
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
        self._write_status(ref, status, decision.memory)
        metrics.observe_decision(ref.namespace, ref.name, decision, current, signals)
        return Outcome(decision, current if scaled else None, status)

    def _write_status(
        self, ref: PoolRef, status: CeleryWorkerPoolStatus, memory: PolicyMemory | None
    ) -> None:
        body = status.model_dump(by_alias=True, mode="json", exclude_none=True)
        if memory is not None:
            body["policyMemory"] = memory.model_dump(mode="json", exclude_none=True)
        self.kube.patch_pool_status(ref.namespace, ref.name, body)
