"""What one tick saw: the pool, its Deployment and pods, its signals. Plain data.

The views are built from the JSON the watch caches hold (`deployment_view`, `pod_view`),
so the plan never touches a Kubernetes object, and a test builds them from literals.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from celeriac.actuators import render
from celeriac.api.pool import CeleryWorkerPoolSpec
from celeriac.api.status import CeleryWorkerPoolStatus
from celeriac.policy.model import PolicyMemory
from celeriac.policy.scale_in import DELETION_COST
from celeriac.signals.model import PoolSignals


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
class DeploymentView:
    replicas: int
    ready_replicas: int
    template_hash: str | None = None  # the rendered body last applied (render.TEMPLATE_HASH)
    replicas_manager: str | None = None  # who last set spec.replicas, if not celeriac
    template_manager: str | None = None  # who else set fields of spec.template, if anyone
    generation: int = 0


@dataclass(frozen=True)
class PodView:
    name: str
    created_at: float
    ready: bool
    deleting: bool
    deletion_cost: str | None = None
    range_annotation: str | None = None
    draining: bool = False  # its worker was told to stop consuming (controller.drain)


@dataclass(frozen=True)
class ProbedLoad:
    """A stock worker's answer to `inspect active`: tasks running, and when it was asked."""

    at: float
    running: int


@dataclass(frozen=True)
class Observation:
    """Everything a plan may look at.

    `previous` is the newest status this process planned (memory included), or the
    resource's own after a restart; `written` is what this process last wrote, and when.
    """

    ref: PoolRef
    now: float
    spec: CeleryWorkerPoolSpec | None
    spec_error: str | None
    previous: CeleryWorkerPoolStatus
    deployment: DeploymentView | None
    pods: tuple[PodView, ...] = ()
    signals: PoolSignals | None = None
    written: CeleryWorkerPoolStatus | None = None
    written_at: float | None = None
    reverted_generation: int | None = None  # the Deployment generation last restored
    # Attached pools (spec.scaleTargetRef): `deployment` is then the user's workload as its
    # /scale shows it, `pods` those its selector picks; an unreadable target is an error.
    target_error: str | None = None
    target_selector: str | None = None
    probed: Mapping[str, ProbedLoad] = field(default_factory=dict)  # pod -> answer

    @property
    def memory(self) -> PolicyMemory:
        return self.previous.policy_memory or PolicyMemory()


def _timestamp(stamp: str | None) -> float:
    if not stamp:
        return 0.0
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()


def replicas_manager(managed_fields: list[dict[str, Any]]) -> str | None:
    """The field manager that owns spec.replicas, unless celeriac is one of them."""
    owners = _owners(managed_fields, "f:replicas")
    if not owners or render.FIELD_MANAGER in owners:
        return None
    return sorted(owners)[0]


def template_manager(managed_fields: list[dict[str, Any]]) -> str | None:
    """Another field manager that set fields of the pod template (`kubectl set image`)."""
    owners = _owners(managed_fields, "f:template") - {render.FIELD_MANAGER}
    return sorted(owners)[0] if owners else None


def _owners(managed_fields: list[dict[str, Any]], spec_field: str) -> set[str]:
    return {
        entry.get("manager") or "unknown"
        for entry in managed_fields
        if spec_field in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    }


def deployment_view(raw: dict[str, Any] | None) -> DeploymentView | None:
    if raw is None:
        return None
    meta = raw.get("metadata", {})
    return DeploymentView(
        replicas=int(raw.get("spec", {}).get("replicas", 0) or 0),
        ready_replicas=int(raw.get("status", {}).get("readyReplicas", 0) or 0),
        template_hash=(meta.get("annotations") or {}).get(render.TEMPLATE_HASH),
        replicas_manager=replicas_manager(meta.get("managedFields") or []),
        template_manager=template_manager(meta.get("managedFields") or []),
        generation=int(meta.get("generation") or 0),
    )


def scale_target_view(
    body: dict[str, Any], scale: dict[str, Any], pods: tuple[PodView, ...]
) -> DeploymentView:
    """A user's workload as the plan sees it: replicas from its Scale, who set them from
    its managedFields (a /scale write is recorded there too), ready pods counted when the
    kind has no readyReplicas."""
    meta = body.get("metadata", {})
    ready = (body.get("status") or {}).get("readyReplicas")
    return DeploymentView(
        replicas=int((scale.get("spec") or {}).get("replicas", 0) or 0),
        ready_replicas=int(ready) if ready is not None else sum(p.ready for p in pods),
        replicas_manager=replicas_manager(meta.get("managedFields") or []),
        generation=int(meta.get("generation") or 0),
    )


def parse_status(raw: dict[str, Any] | None) -> CeleryWorkerPoolStatus:
    """The resource's status; a policy memory another version wrote is dropped, not fatal
    (it is only a cache of recent history)."""
    try:
        return CeleryWorkerPoolStatus.model_validate(raw or {})
    except ValidationError:
        without = {k: v for k, v in (raw or {}).items() if k != "policyMemory"}
        return CeleryWorkerPoolStatus.model_validate(without)


def pod_view(raw: dict[str, Any]) -> PodView:
    meta = raw.get("metadata", {})
    annotations = meta.get("annotations") or {}
    conditions = raw.get("status", {}).get("conditions") or []
    return PodView(
        name=meta["name"],
        created_at=_timestamp(meta.get("creationTimestamp")),
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
        deleting=bool(meta.get("deletionTimestamp")),
        deletion_cost=annotations.get(DELETION_COST),
        range_annotation=annotations.get(render.RANGE_ANNOTATION),
        draining=annotations.get(render.DRAINING) == "true",
    )
