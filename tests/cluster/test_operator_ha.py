"""Two operator replicas with kopf peering: one works, and the standby takes over when it dies."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from celeriac_dev.controlplane import ControlPlane
from tests.support.operator_process import OperatorProcess
from tests.support.redis_server import running_redis
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
# Long enough that a busy CI machine does not miss a keepalive, short enough for a test.
LIFETIME_S = 20


def pool(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "celeriac.dev/v1alpha1",
            "kind": "CeleryWorkerPool",
            "metadata": {"name": name},
            "spec": {
                "queues": ["celery"],
                "template": {"image": "example/worker:1", "app": "proj.celery_app"},
                "broker": {"urlSecretRef": {"name": "broker"}},
                "scaling": {"pollingIntervalSeconds": 1},
            },
        }
    )


def peers(cluster: ControlPlane) -> dict[str, object]:
    out = cluster.kubectl("get", "clusterkopfpeering", "celeriac-ha", "-o", "json")
    status: dict[str, object] = json.loads(out).get("status") or {}
    return status


def has_deployment(cluster: ControlPlane, ns: str, name: str) -> bool:
    out = cluster.kubectl(
        "-n", ns, "get", "deployment", f"{name}-workers", "--ignore-not-found", "-o", "name"
    )
    return bool(out.strip())


def test_the_standby_takes_over_when_the_active_operator_dies(
    crd_installed: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cluster, ns = crd_installed, namespace
    cluster.kubectl(
        "apply",
        "--server-side",
        "-f",
        str(ROOT / "deploy/celeriac/crds/kopfpeerings.kopf.dev.yaml"),
    )
    cluster.kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev")
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input_text=json.dumps(
            {
                "apiVersion": "kopf.dev/v1",
                "kind": "ClusterKopfPeering",
                "metadata": {"name": "celeriac-ha"},
            }
        ),
    )
    with running_redis(extra_args=["--notify-keyspace-events", "Kl"]) as redis:
        cluster.kubectl(
            "-n", ns, "create", "secret", "generic", "broker", f"--from-literal=url={redis.url}"
        )
        peering = {
            "CELERIAC_PEERING": "celeriac-ha",
            "CELERIAC_PEERING_LIFETIME_S": str(LIFETIME_S),
        }
        active = OperatorProcess(
            cluster.kubeconfig,
            tmp_path / "active.log",
            {**peering, "CELERIAC_PEERING_PRIORITY": "200"},
        )
        standby = OperatorProcess(
            cluster.kubeconfig,
            tmp_path / "standby.log",
            {**peering, "CELERIAC_PEERING_PRIORITY": "100"},
        )
        active.start()
        standby.start()
        try:
            # Both have registered once the peering object lists two live peers.
            wait_for("two peers", lambda: len(peers(cluster)) == 2, 30)
            cluster.kubectl("-n", ns, "apply", "-f", "-", input_text=pool("first"))
            wait_for(
                "the active operator to serve", lambda: has_deployment(cluster, ns, "first"), 30
            )
            assert "Handler 'spec_changed' succeeded" in active.log_tail(200_000)
            assert "Handler 'spec_changed' succeeded" not in standby.log_tail(200_000)

            active.stop(signal.SIGKILL)
            killed = time.monotonic()
            cluster.kubectl("-n", ns, "apply", "-f", "-", input_text=pool("second"))
            wait_for(
                "the standby to take over",
                lambda: has_deployment(cluster, ns, "second"),
                LIFETIME_S + 30,
            )
            took_over_s = time.monotonic() - killed
            print(
                f"\nfailover after SIGKILL of the active operator: {took_over_s:.1f} s (peer lifetime {LIFETIME_S} s)"
            )
            assert "Resuming operations" in standby.log_tail(50_000)
        finally:
            active.stop()
            standby.stop()
            cluster.kubectl(
                "delete", "clusterkopfpeering", "celeriac-ha", "--wait=false", check=False
            )
