"""Set-up for the hostile-input suite: the chart's RBAC and admission policies, the operator
running as the chart's ServiceAccount, and a canary pool whose scaling every case checks."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml

from celeriac_dev.controlplane import ControlPlane, find_binaries
from tests.support import waiting
from tests.support.operator_process import OperatorProcess
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "celeriac"
RELEASE = "hostile"
SECURITY_TEMPLATES = (
    "templates/serviceaccount.yaml",
    "templates/rbac.yaml",
    "templates/admission.yaml",
    "templates/aggregated-roles.yaml",
)


def render_security(release_ns: str, *values: str) -> list[dict[str, Any]]:
    """The chart's ServiceAccount, RBAC, admission policies and aggregated roles."""
    shows = [arg for t in SECURITY_TEMPLATES for arg in ("--show-only", t)]
    out = subprocess.run(
        [
            str(find_binaries() / "helm"),
            "template",
            RELEASE,
            str(CHART),
            "-n",
            release_ns,
            "--kube-version",
            "1.32.0",
            "--api-versions",
            "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy",
            *shows,
            *values,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def sa_kubeconfig(cluster: ControlPlane, ns: str, sa: str, path: Path) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount, as the in-cluster operator would."""
    token = cluster.kubectl("-n", ns, "create", "token", sa, "--duration=2h").strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    admin["users"] = [{"name": sa, "user": {"token": token}}]
    admin["contexts"][0]["context"]["user"] = sa
    path.write_text(yaml.safe_dump(admin))
    return path


def apply(cluster: ControlPlane, ns: str, doc: dict[str, Any], *flags: str) -> None:
    cluster.kubectl("-n", ns, "apply", *flags, "-f", "-", input_text=json.dumps(doc))


def attempt(
    cluster: ControlPlane, *args: str, doc: dict[str, Any] | None = None
) -> tuple[bool, str]:
    """(succeeded, stderr) of a kubectl call expected to be refused."""
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        input=None if doc is None else json.dumps(doc),
        timeout=60,
        check=False,
    )
    return result.returncode == 0, result.stderr


def get(cluster: ControlPlane, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    out = cluster.kubectl("-n", ns, "get", kind, name, "-o", "json", "--ignore-not-found")
    return json.loads(out) if out.strip() else None


def pool(name: str, secret: str = "broker", key: str = "url", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "queues": [f"{name}-q"],
        "template": {"image": "example/worker:1", "app": "proj.celery_app"},
        "broker": {"urlSecretRef": {"name": secret, "key": key}},
        "scaling": {"minReplicas": 1, "maxReplicas": 8, "pollingIntervalSeconds": 1},
    }
    body.update(spec)
    return {
        "apiVersion": "celeriac.dev/v1alpha1",
        "kind": "CeleryWorkerPool",
        "metadata": {"name": name},
        "spec": body,
    }


@dataclass
class Hostile:
    """What every case shares: the cluster, the operator (as its ServiceAccount), the canary."""

    cluster: ControlPlane
    broker: RedisServer
    operator: OperatorProcess
    ns: str  # where the pools live
    release_ns: str  # where the operator's ServiceAccount lives
    canary_backlog: int = 0
    canary_replicas: list[int] = field(default_factory=list)

    @property
    def operator_user(self) -> str:
        return f"system:serviceaccount:{self.release_ns}:{RELEASE}-celeriac"

    def wait(self, what: str, fn: Any, timeout_s: float = 45.0) -> Any:
        return waiting.wait_for(
            what, fn, timeout_s, 0.25, lambda: f"--- operator log ---\n{self.operator.log_tail()}"
        )

    def canary_keeps_scaling(self) -> None:
        """The canary pool reads its new backlog and applies its decision: nothing stalled it."""
        self.canary_backlog += 7
        client = redis.Redis(port=self.broker.port)
        client.lpush("canary-q", *[b"{}"] * 7)

        def applied() -> tuple[int, int] | None:
            cwp = get(self.cluster, self.ns, "cwp", "canary") or {}
            status = cwp.get("status", {})
            dep = get(self.cluster, self.ns, "deployment", "canary-workers") or {}
            replicas = dep.get("spec", {}).get("replicas")
            if status.get("backlog") != self.canary_backlog or replicas is None:
                return None
            if status.get("desiredReplicas") != replicas:
                return None
            return self.canary_backlog, int(replicas)

        _, replicas = self.wait(f"the canary to read backlog {self.canary_backlog}", applied)
        self.canary_replicas.append(replicas)

    def pool_text(self, name: str) -> str:
        """Everything a pool's reader can see of it: the object, its events, and the Deployment."""
        parts = [
            self.cluster.kubectl("-n", self.ns, "get", "cwp", name, "-o", "json"),
            self.cluster.kubectl(
                "-n",
                self.ns,
                "get",
                "events",
                "--field-selector",
                f"involvedObject.name={name}",
                "-o",
                "json",
            ),
            self.cluster.kubectl("-n", self.ns, "get", "cwp"),
        ]
        return "\n".join(parts)

    def degraded_message(self, name: str) -> str | None:
        status = (get(self.cluster, self.ns, "cwp", name) or {}).get("status", {})
        for cond in status.get("conditions", []):
            if cond["type"] == "Degraded" and cond["status"] == "True":
                return str(cond.get("message", "")) + " | " + str(status.get("reason", ""))
        return None


def new_namespace(cluster: ControlPlane) -> str:
    name = f"h-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    return name


def settle(seconds: float) -> None:
    # Lets a few 1 s reconcile ticks pass before a check that something did NOT happen.
    time.sleep(seconds)
