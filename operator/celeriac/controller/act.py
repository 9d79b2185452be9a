"""Carries out a Plan against the Kubernetes edge, and folds back what the world answered.

Writes happen only for what the plan says changed. A Deployment the apiserver refuses
(admission, quota, a forbidden pod template) is not an operator error: it becomes the
pool's status and REASON, so the author sees why without reading the operator's log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from celeriac.actuators import render
from celeriac.api.pool import ScaleTargetRef
from celeriac.api.status import CeleryWorkerPoolStatus, ConditionStatus
from celeriac.controller.observation import PoolRef
from celeriac.controller.plan import Plan
from celeriac.controller.status import DEGRADED, iso, set_condition
from celeriac.policy.scale_in import DELETION_COST


class KubeWrites(Protocol):
    def apply_deployment(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None: ...
    def scale_target(self, namespace: str, target: ScaleTargetRef, replicas: int) -> None: ...
    def patch_pool_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...
    def annotate_pod(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> None: ...


@dataclass(frozen=True)
class ActResult:
    status: CeleryWorkerPoolStatus  # as written (or as it would have been)
    status_written: bool
    deployment_error: str | None = None
    writes: int = 0


def refused_status(
    status: CeleryWorkerPoolStatus, ref: PoolRef, now: float, message: str
) -> CeleryWorkerPoolStatus:
    conditions = set_condition(
        list(status.conditions),
        DEGRADED,
        ConditionStatus.TRUE,
        "DeploymentRefused",
        message,
        iso(now),
        ref.generation,
    )
    return status.model_copy(
        update={"conditions": conditions, "reason": f"DeploymentRefused: {message}"[:200]}
    )


def _refusal(exc: ApiException, what: str = "the worker Deployment") -> str:
    """The apiserver's own message (it names the field and the rule), never the body sent."""
    reason = exc.reason or "refused"
    try:
        message = str(json.loads(exc.body or "{}").get("message") or reason)
    except (ValueError, AttributeError):
        message = reason
    return f"the apiserver refused {what} ({exc.status}): {message}"[:900]


def act(plan: Plan, ref: PoolRef, kube: KubeWrites, now: float) -> ActResult:
    writes = 0
    error: str | None = None
    name = render.deployment_name(ref.name)
    try:
        if plan.deployment is not None:
            kube.apply_deployment(plan.deployment)
            writes += 1
        elif plan.scale_to is not None and plan.scale_target is not None:
            kube.scale_target(ref.namespace, plan.scale_target, plan.scale_to)
            writes += 1
        elif plan.scale_to is not None:
            kube.scale_deployment(ref.namespace, name, plan.scale_to)
            writes += 1
    except ApiException as exc:
        if exc.status not in (400, 403, 422):
            raise
        target = plan.scale_target
        error = _refusal(
            exc, f"scaling {target.kind} {target.name}" if target else "the worker Deployment"
        )
    for pod, cost in sorted(plan.deletion_costs.items()):
        kube.annotate_pod(ref.namespace, pod, {DELETION_COST: str(cost)})
        writes += 1
    status = plan.status if error is None else refused_status(plan.status, ref, now, error)
    write = plan.write_status or error is not None
    if write:
        # None is sent as null: a merge patch removes the field (a drain hold that ended).
        body = status.model_dump(by_alias=True, mode="json")
        kube.patch_pool_status(ref.namespace, ref.name, body)
        writes += 1
    return ActResult(status, write, error, writes)
