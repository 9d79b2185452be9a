"""The harness itself: a real apiserver that schedules and runs (fake) pods."""

from __future__ import annotations

import json

from celeriac_dev.controlplane import FAKE_NODE_NAME, ControlPlane
from tests.support.waiting import wait_for


def test_apiserver_reports_the_built_version(cluster: ControlPlane) -> None:
    version = json.loads(cluster.kubectl("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"].startswith("v1.32.")


def test_a_deployment_gets_a_replicaset_and_running_pods(
    cluster: ControlPlane, namespace: str
) -> None:
    cluster.kubectl("-n", namespace, "create", "deployment", "web", "--image=nginx", "--replicas=3")

    def running() -> list[str]:
        pods = json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-o", "json"))["items"]
        phases = [p["status"].get("phase") for p in pods]
        return phases if phases.count("Running") == 3 else []

    wait_for("3 Running pods", running, timeout_s=60)
    rs = json.loads(cluster.kubectl("-n", namespace, "get", "rs", "-o", "json"))["items"]
    assert len(rs) == 1
    assert rs[0]["metadata"]["ownerReferences"][0]["name"] == "web"


def test_the_crd_is_established_and_served(crd_installed: ControlPlane) -> None:
    resources = crd_installed.kubectl("api-resources", "--api-group=celeriac.dev", "-o", "name")
    assert resources.split() == ["celeryworkerpools.celeriac.dev"]


def test_pod_metrics_report_a_cluster_without_metrics_server(cluster: ControlPlane) -> None:
    from kubernetes import client

    from celeriac.signals.pod_metrics import PodMetricsReader

    reader = PodMetricsReader(client.CustomObjectsApi(cluster.api_client()))
    pods, error = reader.read("default", "app=x")
    assert pods is None
    assert error is not None
    assert "metrics.k8s.io/v1beta1 is not served by this cluster (HTTP 404)" in error


def test_the_fake_node_heartbeats_through_a_lease_renewed_well_within_the_grace_period(
    cluster: ControlPlane,
) -> None:
    # Without a lease kwok heartbeats about once a minute and the node flaps NotReady.
    def lease() -> dict[str, object]:
        out = cluster.kubectl(
            "-n", "kube-node-lease", "get", "lease", FAKE_NODE_NAME, "-o", "json", check=False
        )
        return dict(json.loads(out)["spec"]) if out else {}

    first = wait_for("the fake node's lease", lease, timeout_s=30, every_s=0.5)
    assert first["leaseDurationSeconds"] == 40

    def renewed() -> bool:
        return lease().get("renewTime") != first["renewTime"]

    wait_for("a renewal of the lease", renewed, timeout_s=30, every_s=1.0)
