"""Reads an attached pool's workload: its Scale, who set its replicas, and its pods.

Blocking (run on a worker thread). Three requests per tick for an attached pool: the
object (managedFields), its /scale (replicas and selector), and its pods by that
selector; kopf's pool-label indices cannot see pods of a chart celeriac did not render.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from celeriac.actuators.kube import ScaleTargetError
from celeriac.api.pool import ScaleTargetRef
from celeriac.controller.observation import DeploymentView, PodView, pod_view, scale_target_view


class TargetReads(Protocol):
    def read_scale_target(
        self, namespace: str, target: ScaleTargetRef
    ) -> tuple[dict[str, Any], dict[str, Any]]: ...
    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class TargetRead:
    view: DeploymentView | None
    pods: tuple[PodView, ...] = ()
    selector: str | None = None
    error: str | None = None


def read_target(kube: TargetReads, namespace: str, target: ScaleTargetRef) -> TargetRead:
    try:
        body, scale = kube.read_scale_target(namespace, target)
    except ScaleTargetError as exc:
        return TargetRead(None, error=str(exc))
    selector = (scale.get("status") or {}).get("selector")
    if not selector:
        return TargetRead(
            None, error=f"{target.kind} {target.name}'s /scale has no selector: no pods to rank"
        )
    raw = kube.list_pods(namespace, str(selector))
    pods = tuple(sorted((pod_view(p) for p in raw), key=lambda p: p.name))
    return TargetRead(scale_target_view(body, scale, pods), pods, str(selector))
