"""The Kubernetes edge against a real apiserver: writes reuse their connection.

At 1,000 pools a new TLS connection per write (about 30 ms of handshake on each side
against 5 ms for a request on an open one) was a large part of the operator's and the
apiserver's CPU (issue #16).
"""

from __future__ import annotations

import json
from typing import Any

from celeriac.actuators.kube import Kube
from celeriac_dev.controlplane import ControlPlane

WRITES = 12


def _connections_opened(kube: Kube) -> int:
    pools = kube.apps.api_client.rest_client.pool_manager.pools
    return sum(pools[key].num_connections for key in pools.keys())  # noqa: SIM118 - not a dict


def _deployment(namespace: str) -> dict[str, Any]:
    labels = {"app": "conn-reuse"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "conn-reuse", "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "w", "image": "example/worker:1"}]},
            },
        },
    }


def _pool(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "celeriac.dev/v1alpha1",
        "kind": "CeleryWorkerPool",
        "metadata": {"name": "conn-reuse", "namespace": namespace},
        "spec": {
            "queues": ["celery"],
            "template": {"image": "example/worker:1", "app": "proj.celery_app"},
            "broker": {"urlSecretRef": {"name": "broker"}},
        },
    }


def test_status_scale_and_annotation_writes_reuse_one_connection(
    crd_installed: ControlPlane, namespace: str
) -> None:
    cluster = crd_installed
    cluster.kubectl("apply", "-f", "-", input_text=json.dumps(_pool(namespace)))
    cluster.kubectl(
        "-n", namespace, "run", "conn-reuse-pod", "--image=example/worker:1", "--restart=Never"
    )
    kube = Kube(cluster.api_client())
    kube.apply_deployment(_deployment(namespace))
    opened_before = _connections_opened(kube)
    for i in range(WRITES):
        kube.scale_deployment(namespace, "conn-reuse", i % 2)
        kube.patch_pool_status(namespace, "conn-reuse", {"desiredReplicas": i})
        kube.annotate_pod(namespace, "conn-reuse-pod", {"bench/i": str(i)})
    assert _connections_opened(kube) - opened_before == 0
    status = json.loads(cluster.kubectl("-n", namespace, "get", "cwp", "conn-reuse", "-o", "json"))
    assert status["status"]["desiredReplicas"] == WRITES - 1


def test_annotating_a_pod_that_is_already_gone_is_not_an_error(
    cluster: ControlPlane, namespace: str
) -> None:
    kube = Kube(cluster.api_client())
    kube.annotate_pod(namespace, "deleted-since-the-watch-saw-it", {"bench/i": "1"})
    out = cluster.kubectl("-n", namespace, "get", "pods", "-o", "name")
    assert out.split() == []
