"""The worker image on a real node: containerd + runc run it, a real kubelet sends SIGTERM,
a real metrics-server reports its CPU, and no pod reaches beyond this machine.

The image comes from this repository's worker-image/Dockerfile (hack/build-images.sh), pulled
from the node's local registry, in a namespace that enforces Pod Security `restricted`, with a
read-only root filesystem.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from celeriac_dev.controlplane import ControlPlane
from celeriac_dev.nodeconfig import placement
from celeriac_dev.realnode import ImageToPush, RealNode
from tests.support.redis_server import RedisServer, running_redis
from tests.support.waiting import wait_for
from tests.support.worker_process import autoscaler_info

ROOT = Path(__file__).resolve().parents[2]
WORKER = ImageToPush("localhost/celeriac/worker:0.1.0", "celeriac/worker", "0.1.0")
LONG_JOB = "celeriac_worker.tasks.long_job"


@pytest.fixture(scope="module")
def real_node(cluster: ControlPlane) -> Iterator[RealNode]:
    # Builds on the cached base image; a rebuild with nothing changed reuses every layer.
    subprocess.run(["bash", str(ROOT / "hack" / "build-images.sh")], check=True, timeout=1800)
    node = RealNode(cluster)
    node.start(images=[WORKER])
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def pod_broker(real_node: RealNode) -> Iterator[RedisServer]:
    """redis-server on loopback and on the node bridge's host address, where pods reach it."""
    extra = ["--bind", "127.0.0.1", real_node.net.gateway, "--protected-mode", "no"]
    with running_redis(extra_args=extra) as server:
        yield server


@pytest.fixture
def restricted_ns(cluster: ControlPlane) -> Iterator[str]:
    name = f"rn-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def restricted_pod(
    name: str, image: str, args: list[str], env: dict[str, str], grace_s: int = 30
) -> dict[str, Any]:
    """What Pod Security `restricted` demands, plus a read-only root with /tmp as emptyDir."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            **placement(),
            "terminationGracePeriodSeconds": grace_s,
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "args": args,
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "resources": {"limits": {"cpu": "1", "memory": "512Mi"}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        },
    }


def pod(cluster: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("-n", ns, "get", "pod", name, "-o", "json", "--ignore-not-found")
    return json.loads(out) if out.strip() else {}


def running(cluster: ControlPlane, ns: str, name: str) -> bool:
    return pod(cluster, ns, name).get("status", {}).get("phase") == "Running"


def describe(cluster: ControlPlane, ns: str, name: str) -> str:
    return cluster.kubectl("-n", ns, "describe", "pod", name, check=False)[-3000:]


def start_worker(
    cluster: ControlPlane, node: RealNode, broker: RedisServer, ns: str, queue: str
) -> str:
    name = f"worker-{uuid.uuid4().hex[:6]}"
    assert node.registry is not None
    image = node.registry.image(WORKER.repository, WORKER.tag)
    env = {
        "CELERY_BROKER_URL": f"redis://{node.net.gateway}:{broker.port}/0",
        "AUTOSCALE_KEEPALIVE": "2",
        "CELERIAC_TERMINATION_GRACE_SECONDS": "30",
        "CELERIAC_LONGEST_TASK_SECONDS": "30",
    }
    manifest = restricted_pod(name, image, ["worker", f"--queues={queue}", "--autoscale=3,1"], env)
    cluster.kubectl("-n", ns, "apply", "-f", "-", input_text=json.dumps(manifest))
    wait_for(
        f"pod {name} Running",
        lambda: running(cluster, ns, name),
        timeout_s=120,
        every_s=0.5,
        context=lambda: describe(cluster, ns, name),
    )
    return name


def test_worker_image_under_restricted_pulls_from_the_registry_and_grows_and_shrinks(
    cluster: ControlPlane, real_node: RealNode, pod_broker: RedisServer, restricted_ns: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:6]}"
    name = start_worker(cluster, real_node, pod_broker, restricted_ns, queue)
    status = pod(cluster, restricted_ns, name)
    assert status["spec"]["nodeName"] == "celeriac-real-0"
    container = status["status"]["containerStatuses"][0]
    assert container["image"] == f"{real_node.registry.host}/celeriac/worker:0.1.0"  # type: ignore[union-attr]
    assert container["containerID"].startswith("containerd://")

    app = Celery("t", broker=pod_broker.url, backend=pod_broker.url)
    hostname = f"celery@{name}"
    wait_for("worker answers", lambda: autoscaler_info(app, hostname), timeout_s=60)
    results = [app.send_task(LONG_JOB, args=[6, 0.5], queue=queue) for _ in range(3)]
    grown = wait_for(
        "prefork pool grows to 3",
        lambda: (info := autoscaler_info(app, hostname)) and info["current"] == 3 and info,
        timeout_s=30,
    )
    assert grown["max"] == 3
    assert [r.get(timeout=60) for r in results] == [{"steps": 6, "seconds": 3.0}] * 3
    wait_for(
        "prefork pool shrinks to 1",
        lambda: (info := autoscaler_info(app, hostname)) and info["current"] == 1,
        timeout_s=30,
    )


def test_real_kubelet_sigterm_lets_the_running_task_finish(
    cluster: ControlPlane, real_node: RealNode, pod_broker: RedisServer, restricted_ns: str
) -> None:
    queue = f"q-{uuid.uuid4().hex[:6]}"
    name = start_worker(cluster, real_node, pod_broker, restricted_ns, queue)
    app = Celery("t", broker=pod_broker.url, backend=pod_broker.url)
    wait_for("worker answers", lambda: autoscaler_info(app, f"celery@{name}"), timeout_s=60)
    result = app.send_task(LONG_JOB, args=[16, 0.5], queue=queue)
    wait_for("task running", lambda: result.state == "PROGRESS", timeout_s=30)

    deleted_at = time.monotonic()
    cluster.kubectl("-n", restricted_ns, "delete", "pod", name, "--wait=false")
    assert result.get(timeout=40) == {"steps": 16, "seconds": 8.0}
    last: dict[str, Any] = {}

    def terminated() -> dict[str, Any] | None:
        statuses = pod(cluster, restricted_ns, name).get("status", {}).get("containerStatuses")
        if statuses:
            last.update(statuses[0]["state"])
        return last.get("terminated")

    state = wait_for("container terminated", terminated, timeout_s=40, every_s=0.2)
    exited_s = time.monotonic() - deleted_at
    # The worker exited by itself within the 30 s grace period: no SIGKILL (137) was needed.
    assert state["exitCode"] == 0, state
    assert exited_s < 30, exited_s


def test_real_metrics_server_reports_a_busy_pod_above_half_a_core(
    cluster: ControlPlane, real_node: RealNode, restricted_ns: str
) -> None:
    assert real_node.registry is not None
    image = real_node.registry.image(WORKER.repository, WORKER.tag)
    name = "busy"
    manifest = restricted_pod(name, image, [], {})
    manifest["spec"]["containers"][0]["command"] = ["python", "-c", "while True: pass"]
    cluster.kubectl("-n", restricted_ns, "apply", "-f", "-", input_text=json.dumps(manifest))
    wait_for("busy pod Running", lambda: running(cluster, restricted_ns, name), timeout_s=60)

    def cpu_nanocores() -> float:
        out = cluster.kubectl(
            "get",
            "--raw",
            f"/apis/metrics.k8s.io/v1beta1/namespaces/{restricted_ns}/pods/{name}",
            check=False,
        )
        if not out.strip():
            return 0.0
        usage = json.loads(out)["containers"][0]["usage"]["cpu"]
        return _cores(usage)

    seen: list[float] = []

    def busy() -> float:
        seen.append(cpu_nanocores())
        return seen[-1] if seen[-1] > 0.5 else 0.0

    cores = wait_for(
        "PodMetrics above 0.5 core",
        busy,
        timeout_s=90,
        every_s=2,
        context=lambda: (
            f"cores seen: {sorted(set(seen))}; node: {cluster.kubectl('get', '--raw', '/apis/metrics.k8s.io/v1beta1/nodes', check=False)}"
        ),
    )
    assert 0.5 < cores <= 1.1


def _cores(quantity: str) -> float:
    units = {"n": 1e-9, "u": 1e-6, "m": 1e-3}
    if quantity[-1] in units:
        return float(quantity[:-1]) * units[quantity[-1]]
    return float(quantity)


def test_a_pod_reaches_this_machine_and_nothing_beyond(
    cluster: ControlPlane, real_node: RealNode, pod_broker: RedisServer, restricted_ns: str
) -> None:
    assert real_node.registry is not None
    image = real_node.registry.image(WORKER.repository, WORKER.tag)
    gateway = _default_gateway()
    probe = f"""
import json, socket
def tcp(host, port):
    try:
        socket.create_connection((host, port), timeout=3).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__
def dns(name):
    try:
        return socket.getaddrinfo(name, 443)[0][4][0]
    except OSError as exc:
        return type(exc).__name__
seen = json.dumps({{
    "host_redis": tcp("{real_node.net.gateway}", {pod_broker.port}),
    "outside": tcp("{gateway}", 80),
    "dns": dns("pypi.org"),
}})
# The kubelet reports this file as the container's termination message.
with open("/dev/termination-log", "w") as out:
    out.write(seen)
"""
    manifest = restricted_pod("probe", image, [], {})
    manifest["spec"]["containers"][0]["command"] = ["python", "-c", probe]
    cluster.kubectl("-n", restricted_ns, "apply", "-f", "-", input_text=json.dumps(manifest))
    wait_for(
        "probe pod Succeeded",
        lambda: pod(cluster, restricted_ns, "probe").get("status", {}).get("phase") == "Succeeded",
        timeout_s=60,
        context=lambda: describe(cluster, restricted_ns, "probe"),
    )
    # Not `kubectl logs`: the local apiserver has no kubelet client certificate.
    state = pod(cluster, restricted_ns, "probe")["status"]["containerStatuses"][0]["state"]
    seen = json.loads(state["terminated"]["message"])
    assert seen["host_redis"] == "connected"
    # Dropped, not refused: a refusal would mean the packet reached the gateway.
    assert seen["outside"] == "TimeoutError", seen
    assert seen["dns"] == "gaierror"


def _default_gateway() -> str:
    """The machine's next hop to the outside world: the nearest address a pod must not reach."""
    route = subprocess.run(
        ["ip", "-j", "route", "show", "default"], capture_output=True, text=True, check=True
    )
    routes = json.loads(route.stdout)
    assert routes, "no default route on this machine"
    return str(routes[0]["gateway"])
