"""A pool's world as data, for driving plan() and act() tick by tick without a cluster.

`World` plays the apiserver's part (the Deployment, pods, status writes, managedFields)
and `World.tick` does what the runtime does around the pure plan: observe, plan, act,
remember what was planned and written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from celeriac.actuators.render import FIELD_MANAGER
from celeriac.api.pool import ScaleTargetRef
from celeriac.api.status import CeleryWorkerPoolStatus
from celeriac.controller.act import ActResult, act
from celeriac.controller.observation import (
    Observation,
    PoolRef,
    ProbedLoad,
    deployment_view,
    parse_status,
    pod_view,
    scale_target_view,
)
from celeriac.controller.plan import Decide, Plan, plan
from celeriac.controller.runtime import parse_spec
from celeriac.policy.model import Decision, Mode, PolicyInput
from celeriac.signals.model import PoolSignals, WorkerLoad

NOW = 1_700_000_000.0
REF = PoolRef(namespace="ns", name="pool", uid="uid-1", generation=3)
SPEC: dict[str, Any] = {
    "queues": ["celery"],
    "template": {"image": "w:1", "app": "proj"},
    "broker": {"urlSecretRef": {"name": "b"}},
    "scaling": {"minReplicas": 1, "maxReplicas": 5},
}


def replicas_owner(manager: str) -> list[dict[str, Any]]:
    return [{"manager": manager, "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]


def ready_pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": "2023-11-14T22:00:00Z"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def load(pod: str, running: int, rng: tuple[int, int] = (1, 4)) -> WorkerLoad:
    return WorkerLoad(
        hostname=f"celery@{pod}",
        pod=pod,
        running=running,
        pool_size=max(running, 1),
        range_min=rng[0],
        range_max=rng[1],
        ts=NOW,
    )


def wants(replicas: int) -> Decide:
    def decide(inp: PolicyInput) -> Decision:
        return Decision(
            desired_replicas=replicas,
            range_min=inp.concurrency.min,
            range_max=inp.concurrency.max,
            mode=Mode.NORMAL,
            reason=f"policy wants {replicas}",
            memory=inp.memory,
        )

    return decide


@dataclass
class World:
    deployment: dict[str, Any] | None = None
    pods: list[dict[str, Any]] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)  # on the resource
    applied: list[dict[str, Any]] = field(default_factory=list)
    scaled: list[int] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    annotations: dict[str, dict[str, str | None]] = field(default_factory=dict)
    planned: CeleryWorkerPoolStatus | None = None
    written: CeleryWorkerPoolStatus | None = None
    written_at: float | None = None
    reverted_generation: int | None = None
    # Attached pools: `deployment` is the user's workload, scaled only through /scale.
    target_scales: list[int] = field(default_factory=list)
    probed: dict[str, ProbedLoad] = field(default_factory=dict)

    @classmethod
    def with_deployment(cls, replicas: int, ready: int = 0, manager: str = FIELD_MANAGER) -> World:
        return cls(
            deployment={
                "metadata": {"managedFields": replicas_owner(manager)},
                "spec": {"replicas": replicas},
                "status": {"readyReplicas": ready},
            }
        )

    @property
    def replicas(self) -> int | None:
        return None if self.deployment is None else int(self.deployment["spec"]["replicas"])

    def set_image_by_hand(self, image: str) -> None:
        assert self.deployment is not None
        meta = self.deployment["metadata"]
        meta["generation"] = int(meta.get("generation") or 1) + 1
        self.deployment["spec"]["template"]["spec"]["containers"][0]["image"] = image
        meta["managedFields"] = [
            *meta["managedFields"],
            {"manager": "kubectl-set", "fieldsV1": {"f:spec": {"f:template": {}}}},
        ]

    def edit_by_hand(self, replicas: int) -> None:
        assert self.deployment is not None
        self.deployment["spec"]["replicas"] = replicas
        self.deployment["metadata"]["managedFields"] = replicas_owner("kubectl-edit")

    # --- the Kubernetes edge act() writes through --------------------------------------

    def apply_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(body)
        ready = (self.deployment or {}).get("status", {}).get("readyReplicas", 0)
        meta = {**body["metadata"], "managedFields": replicas_owner(FIELD_MANAGER)}
        self.deployment = {
            "metadata": meta,
            "spec": body["spec"],
            "status": {"readyReplicas": ready},
        }
        return self.deployment

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        assert self.deployment is not None
        self.scaled.append(replicas)
        self.deployment["spec"]["replicas"] = replicas
        self.deployment["metadata"]["managedFields"] = replicas_owner(FIELD_MANAGER)

    def scale_target(self, namespace: str, target: ScaleTargetRef, replicas: int) -> None:
        assert self.deployment is not None
        self.target_scales.append(replicas)
        self.deployment["spec"]["replicas"] = replicas
        self.deployment["metadata"]["managedFields"] = replicas_owner(FIELD_MANAGER)

    def patch_pool_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)
        self.status = status

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        self.annotations.setdefault(name, {}).update(annotations)
        for pod in self.pods:
            if pod["metadata"]["name"] == name:
                pod["metadata"].setdefault("annotations", {}).update(annotations)

    # --- one tick, as the runtime runs it -----------------------------------------------

    def observe(self, spec: dict[str, Any], signals: PoolSignals | None, now: float) -> Observation:
        parsed, error = parse_spec(spec)
        pods = tuple(pod_view(p) for p in self.pods)
        attached = parsed is not None and parsed.attached
        if attached and self.deployment is not None:
            scale = {"spec": {"replicas": self.replicas}, "status": {"selector": "app=mine"}}
            view = scale_target_view(self.deployment, scale, pods)
        else:
            view = deployment_view(self.deployment)
        return Observation(
            ref=REF,
            now=now,
            spec=parsed,
            spec_error=error,
            previous=self.planned or parse_status(self.status),
            deployment=view,
            pods=pods,
            signals=signals,
            written=self.written,
            written_at=self.written_at,
            reverted_generation=self.reverted_generation,
            target_error=None if self.deployment or not attached else "Deployment mine not found",
            target_selector="app=mine" if attached else None,
            probed=dict(self.probed),
        )

    def tick(
        self,
        decide: Decide,
        spec: dict[str, Any] = SPEC,
        signals: PoolSignals | None = None,
        now: float = NOW,
    ) -> tuple[Plan, ActResult]:
        the_plan = plan(self.observe(spec, signals, now), decide)
        result = act(the_plan, REF, self, now)
        self.planned = result.status
        if the_plan.reverted_generation is not None:
            self.reverted_generation = the_plan.reverted_generation
        if result.status_written:
            self.written, self.written_at = result.status, now
        return the_plan, result
