"""Plan rules for pools that attach to the user's own workload (`spec.scaleTargetRef`)
and for pools that only recommend (`spec.scaling.mode: Recommend`). Pure, like plan.

Attached, celeriac owns one field of someone else's object: spec.replicas, written through
/scale. Anyone else who writes it (a chart with `replicas:`, an HPA, a KEDA ScaledObject)
fights it; one edit is restored quietly, repeated edits are a contest the user must settle,
said in a Warning event and the ScaleTargetContested condition.
"""

from __future__ import annotations

from celeriac.actuators import render
from celeriac.api.pool import CeleryWorkerPoolSpec, ScalingMode
from celeriac.api.status import CeleryWorkerPoolStatus, ConditionStatus
from celeriac.controller.observation import Observation
from celeriac.controller.status import DEGRADED, SCALING_ACTIVE, iso, set_condition
from celeriac.policy.model import Decision

SCALE_TARGET_CONTESTED = "ScaleTargetContested"
# Edits by someone else within this window count towards a contest; this many make one.
CONTEST_WINDOW_S = 600.0
CONTEST_EDITS = 2
EDITS_KEPT = 10


def recommending(spec: CeleryWorkerPoolSpec) -> bool:
    return spec.scaling.mode == ScalingMode.RECOMMEND


def workload_name(obs: Observation, spec: CeleryWorkerPoolSpec) -> str:
    """How events name the workload whose replicas celeriac sets."""
    target = spec.scale_target_ref
    if target is not None:
        return f"{target.kind} {target.name}"
    return render.deployment_name(obs.ref.name)


def target_scale(obs: Observation, replicas: int) -> int | None:
    """The replica count to write through /scale: only when it differs."""
    if obs.deployment is None or obs.deployment.replicas == replicas:
        return None
    return replicas


def foreign_edit(obs: Observation, spec: CeleryWorkerPoolSpec) -> bool:
    """Someone else set the target's replicas to a value celeriac did not decide."""
    target = obs.deployment
    if target is None or target.replicas_manager is None or spec.scaling.paused:
        return False
    decided = obs.previous.desired_replicas
    return decided is not None and decided != target.replicas


def contest(
    obs: Observation, spec: CeleryWorkerPoolSpec, status: CeleryWorkerPoolStatus
) -> tuple[CeleryWorkerPoolStatus, str | None]:
    """The status with the recent foreign edits and the contest condition; and the warning
    to raise when a contest starts (once, not every tick it lasts)."""
    edits = [t for t in obs.previous.scale_target_edits if obs.now - t < CONTEST_WINDOW_S]
    if foreign_edit(obs, spec):
        edits.append(obs.now)
    edits = edits[-EDITS_KEPT:]
    contested = len(edits) >= CONTEST_EDITS
    by = obs.deployment.replicas_manager if obs.deployment else None
    name = workload_name(obs, spec)
    if contested:
        message = (
            f"{name}'s replicas were changed {len(edits)} times in {CONTEST_WINDOW_S:.0f} s "
            f"by another field manager (last: {by!r}); remove `replicas:` from its chart and "
            "any HPA or ScaledObject on it, or set scaling.mode: Recommend"
        )
    else:
        message = f"celeriac alone sets {name}'s replicas"
    conditions = set_condition(
        list(status.conditions),
        SCALE_TARGET_CONTESTED,
        ConditionStatus.TRUE if contested else ConditionStatus.FALSE,
        "ReplicasFought" if contested else "NotContested",
        message,
        iso(obs.now),
        obs.ref.generation,
    )
    was = any(
        c.type == SCALE_TARGET_CONTESTED and c.status == ConditionStatus.TRUE
        for c in obs.previous.conditions
    )
    updated = status.model_copy(update={"scale_target_edits": edits, "conditions": conditions})
    return updated, (message if contested and not was else None)


def recommended_status(
    status: CeleryWorkerPoolStatus, decision: Decision, actual: int | None
) -> CeleryWorkerPoolStatus:
    """status.replicas is what runs (what /scale and `kubectl get` compare against);
    desiredReplicas is the recommendation."""
    return status.model_copy(
        update={"replicas": actual, "reason": f"recommend only: {decision.reason}"[:1000]}
    )


def recommend_events(obs: Observation, decision: Decision) -> tuple[tuple[str, str], ...]:
    """A Normal event when the recommendation changes, not on every tick it differs."""
    if obs.previous.desired_replicas == decision.desired_replicas:
        return ()
    actual = obs.deployment.replicas if obs.deployment else None
    return (
        (
            "Recommended",
            f"would scale {actual} -> {decision.desired_replicas} (nothing written, "
            f"scaling.mode: Recommend): {decision.reason}",
        ),
    )


def target_unavailable_status(obs: Observation, message: str) -> CeleryWorkerPoolStatus:
    """Nothing to scale: the pool says why and holds (no write reaches any workload)."""
    now_iso, generation = iso(obs.now), obs.ref.generation
    conditions = list(obs.previous.conditions)
    for type_ in (DEGRADED, SCALING_ACTIVE):
        status = ConditionStatus.TRUE if type_ == DEGRADED else ConditionStatus.FALSE
        conditions = set_condition(
            conditions, type_, status, "ScaleTargetUnavailable", message, now_iso, generation
        )
    return obs.previous.model_copy(
        update={
            "observed_generation": generation,
            "conditions": conditions,
            "reason": f"ScaleTargetUnavailable: {message}"[:200],
        }
    )
