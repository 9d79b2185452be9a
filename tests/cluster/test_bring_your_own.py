"""Bring your own Celery app: a stock app (it imports nothing from celeriac), deployed by a
plain Deployment the test applies, attached with spec.scaleTargetRef. Real apiserver, real
operator, real workers run by the process kubelet; every task is counted exactly once."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.result import AsyncResult

from celeriac_dev.controlplane import ControlPlane, find_binaries
from celeriac_dev.kubelet import ProcessKubelet, placement
from tests.support.operator_process import OperatorProcess
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

# The user's own app: nothing from celeriac, only Celery settings a careful team sets.
BURST = 80
CHART = Path(__file__).resolve().parents[2] / "deploy" / "celeriac"
POLICY_ONLY = ("--kube-version", "1.32.0", "--show-only", "templates/scale-target-admission.yaml")
# Server-side dry run: admission decides as for a real create, and nothing is stored, so a
# create admitted before the policy loaded cannot turn every retry into AlreadyExists.
CREATE = ("create", "--dry-run=server", "-f", "-")
STOCK_APP = """
import os
import time

from celery import Celery

app = Celery("stock", broker=os.environ["BROKER_URL"], backend=os.environ["BROKER_URL"])
app.conf.worker_prefetch_multiplier = 1
app.conf.task_acks_late = True
app.conf.task_track_started = True


@app.task(name="stock.work")
def work(tag, seconds):
    time.sleep(seconds)
    print(f"stock task finished {tag}", flush=True)
    return tag
"""


@pytest.fixture(scope="module")
def operator(
    crd_installed: ControlPlane,
    process_kubelet: ProcessKubelet,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(
        kubeconfig=crd_installed.kubeconfig,
        log_path=tmp_path_factory.mktemp("byo") / "operator.log",
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("stockapp")
    (path / "stockapp.py").write_text(STOCK_APP)
    return path


@pytest.fixture
def byo_ns(crd_installed: ControlPlane, namespace: str, broker: RedisServer) -> str:
    crd_installed.kubectl(
        "-n", namespace, "create", "secret", "generic", "broker", f"--from-literal=url={broker.url}"
    )
    return namespace


def users_deployment(name: str, queue: str, app_dir: Path) -> dict[str, Any]:
    """What a team's own chart renders: no `replicas:` (celeriac owns that field)."""
    where = placement()
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": where["nodeSelector"],
                    "tolerations": where["tolerations"],
                    "terminationGracePeriodSeconds": 60,
                    "containers": [
                        {
                            "name": "worker",
                            "image": "registry.example/team/stock-worker:1",
                            # On a real node the hostname is the pod name, so Celery's default
                            # node name is celery@<pod>; the process kubelet shares the host's.
                            "command": ["celery", "-A", "stockapp", "worker", f"--queues={queue}"],
                            "args": [
                                "--concurrency=1",
                                "--hostname=celery@$(POD_NAME)",
                                "--loglevel=INFO",
                            ],
                            "env": [
                                {
                                    "name": "POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                },
                                {
                                    "name": "BROKER_URL",
                                    "valueFrom": {"secretKeyRef": {"name": "broker", "key": "url"}},
                                },
                                {"name": "PYTHONPATH", "value": str(app_dir)},
                                {"name": "PYTHONUNBUFFERED", "value": "1"},
                            ],
                        }
                    ],
                },
            },
        },
    }


def attached_pool(name: str, target: str, queue: str, **scaling: Any) -> dict[str, Any]:
    return {
        "apiVersion": "celeriac.dev/v1alpha1",
        "kind": "CeleryWorkerPool",
        "metadata": {"name": name},
        "spec": {
            "queues": [queue],
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "broker": {"urlSecretRef": {"name": "broker", "key": "url"}},
            "worker": {"concurrency": {"min": 1, "max": 1}},
            "scaling": {
                "minReplicas": 1,
                "maxReplicas": 3,
                "targetQueueWaitSeconds": 5,
                "pollingIntervalSeconds": 1,
                "staleAfterSeconds": 5,
                "behavior": {
                    "scaleDown": {
                        "stabilizationWindowSeconds": 5,
                        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 5}],
                    }
                },
                **scaling,
            },
        },
    }


def apply(cluster: ControlPlane, ns: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "-", input_text=json.dumps(manifest))


def get(cluster: ControlPlane, ns: str, kind: str, name: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("-n", ns, "get", kind, name, "-o", "json"))


def replicas(cluster: ControlPlane, ns: str, name: str) -> int:
    return int(get(cluster, ns, "deployment", name)["spec"]["replicas"])


def live_pods(cluster: ControlPlane, ns: str, app: str) -> set[str]:
    items = json.loads(cluster.kubectl("-n", ns, "get", "pods", "-l", f"app={app}", "-o", "json"))
    return {
        p["metadata"]["name"]
        for p in items["items"]
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p.get("status", {}).get("conditions", [])
        )
    }


def runs(cluster: ControlPlane, ns: str, app: str) -> dict[str, int]:
    """How often each task tag finished, over every pod's log (gone pods included)."""
    counts: dict[str, int] = {}
    for pod_dir in (cluster.state_dir / "pods").glob(f"{ns}_{app}-*"):
        for log in pod_dir.glob("container-*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if "stock task finished " in line:
                    tag = line.rsplit("stock task finished ", 1)[1].strip()
                    counts[tag] = counts.get(tag, 0) + 1
    return counts


def pool_state(cluster: ControlPlane, ns: str, name: str) -> str:
    """What a failed wait prints: the pool's status and its events."""
    status = get(cluster, ns, "cwp", name).get("status", {})
    status.pop("policyMemory", None)
    events = cluster.kubectl(
        "-n", ns, "get", "events", "--field-selector", f"involvedObject.name={name}", check=False
    )
    return f"status: {json.dumps(status)}\nevents:\n{events}"


def attached(cluster: ControlPlane, ns: str, name: str) -> None:
    wait_for(
        "the pool attached (its status shows the target's selector)",
        lambda: get(cluster, ns, "cwp", name).get("status", {}).get("selector") == f"app={name}",
        30,
        0.2,
        context=lambda: pool_state(cluster, ns, name),
    )


def pod_costs(cluster: ControlPlane, ns: str, app: str) -> str:
    items = json.loads(cluster.kubectl("-n", ns, "get", "pods", "-l", f"app={app}", "-o", "json"))
    rows = [
        (
            p["metadata"]["name"],
            (p["metadata"].get("annotations") or {}).get(
                "controller.kubernetes.io/pod-deletion-cost"
            ),
            p["metadata"].get("deletionTimestamp"),
        )
        for p in items["items"]
    ]
    return f"\npods (name, deletion cost, deleting since): {rows}"


def send(app: Celery, queue: str, tags: list[str], seconds: float) -> list[str]:
    return [app.send_task("stock.work", args=[tag, seconds], queue=queue).id for tag in tags]


def all_done(app: Celery, ids: list[str]) -> bool:
    return all(AsyncResult(i, app=app).state == "SUCCESS" for i in ids)


def test_a_stock_app_scales_up_on_a_burst_and_scale_in_removes_only_idle_pods(
    crd_installed: ControlPlane,
    byo_ns: str,
    broker: RedisServer,
    operator: OperatorProcess,
    app_dir: Path,
) -> None:
    cluster, ns = crd_installed, byo_ns
    apply(cluster, ns, users_deployment("stock", "stockq", app_dir))
    wait_for("the user's worker running", lambda: len(live_pods(cluster, ns, "stock")) == 1, 60)
    apply(cluster, ns, attached_pool("stock", "stock", "stockq"))
    attached(cluster, ns, "stock")
    app = Celery("byo", broker=broker.url, backend=broker.url)

    # More than one pod drains before a new one would start (the policy's 30 s default).
    burst = send(app, "stockq", [f"b{i}" for i in range(BURST)], 1.0)
    wait_for(
        "the Deployment scaled up",
        lambda: replicas(cluster, ns, "stock") > 1,
        30,
        0.1,
        context=lambda: pool_state(cluster, ns, "stock"),
    )
    wait_for(f"all {BURST} burst tasks done", lambda: all_done(app, burst), 150, 0.5)

    # Hold three pods, give two of them a long task, then let the pool shrink.
    cluster.kubectl(
        "-n", ns, "patch", "cwp", "stock", "--type=merge",
        "-p", '{"spec":{"scaling":{"minReplicas":3}}}',
    )  # fmt: skip
    wait_for("3 ready pods", lambda: len(live_pods(cluster, ns, "stock")) == 3, 90, 0.5)
    long = send(app, "stockq", ["long-1", "long-2"], 20.0)
    wait_for(
        "2 long tasks started",
        lambda: all(AsyncResult(i, app=app).state == "STARTED" for i in long),
        30,
        0.2,
    )
    busy = set()
    for node, tasks in (app.control.inspect(timeout=2).active() or {}).items():
        if tasks:
            busy.add(node.removeprefix("celery@"))
    before = live_pods(cluster, ns, "stock")
    assert len(busy) == 2
    assert busy < before
    cluster.kubectl(
        "-n", ns, "patch", "cwp", "stock", "--type=merge",
        "-p", '{"spec":{"scaling":{"minReplicas":1}}}',
    )  # fmt: skip
    wait_for("scale-in to 2", lambda: replicas(cluster, ns, "stock") == 2, 60, 0.2)
    wait_for(
        "the idle pod gone",
        lambda: live_pods(cluster, ns, "stock") == busy,
        60,
        0.2,
        context=lambda: pool_state(cluster, ns, "stock") + pod_costs(cluster, ns, "stock"),
    )
    assert all(AsyncResult(i, app=app).state == "STARTED" for i in long), "a busy pod was removed"

    wait_for("both long tasks done", lambda: all_done(app, long), 60, 0.5)
    wait_for("scale-in to 1 once idle", lambda: replicas(cluster, ns, "stock") == 1, 60, 0.5)
    counts = runs(cluster, ns, "stock")
    expected = {f"b{i}" for i in range(BURST)} | {"long-1", "long-2"}
    assert set(counts) == expected
    assert set(counts.values()) == {1}, f"a task ran twice: {counts}"
    template = get(cluster, ns, "deployment", "stock")["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "registry.example/team/stock-worker:1"
    assert operator.alive(), operator.log_tail()


def test_recommend_mode_under_load_changes_no_replica_count_and_tracks_the_recommendation(
    crd_installed: ControlPlane,
    byo_ns: str,
    broker: RedisServer,
    operator: OperatorProcess,
    app_dir: Path,
) -> None:
    cluster, ns = crd_installed, byo_ns
    apply(cluster, ns, users_deployment("advised", "advisedq", app_dir))
    wait_for("the user's worker running", lambda: len(live_pods(cluster, ns, "advised")) == 1, 60)
    apply(cluster, ns, attached_pool("advised", "advised", "advisedq", mode="Recommend"))
    attached(cluster, ns, "advised")
    app = Celery("byo", broker=broker.url, backend=broker.url)
    generation = get(cluster, ns, "deployment", "advised")["metadata"]["generation"]

    ids = send(app, "advisedq", [f"r{i}" for i in range(BURST)], 0.5)

    def recommended() -> int | None:
        status = get(cluster, ns, "cwp", "advised").get("status", {})
        wanted = status.get("desiredReplicas")
        return wanted if wanted is not None and wanted > 1 and status.get("replicas") == 1 else None

    wanted = wait_for(
        "a recommendation above 1 replica",
        recommended,
        30,
        0.2,
        context=lambda: pool_state(cluster, ns, "advised"),
    )
    assert wanted <= 3
    until = time.monotonic() + 10
    while time.monotonic() < until:
        assert replicas(cluster, ns, "advised") == 1
        time.sleep(0.5)
    wait_for(f"all {BURST} tasks done on one pod", lambda: all_done(app, ids), 150, 0.5)
    wait_for(
        "the recommendation back at 1",
        lambda: get(cluster, ns, "cwp", "advised")["status"].get("desiredReplicas") == 1,
        60,
        0.5,
    )
    deployment = get(cluster, ns, "deployment", "advised")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["metadata"]["generation"] == generation
    managers = {e.get("manager") for e in deployment["metadata"].get("managedFields", [])}
    assert "celeriac" not in managers
    events = json.loads(
        cluster.kubectl(
            "-n",
            ns,
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=advised",
            "-o",
            "json",
        )
    )["items"]
    assert any(e["reason"] == "Recommended" for e in events)
    assert set(runs(cluster, ns, "advised").values()) == {1}


def create_as(cluster: ControlPlane, user: str, ns: str, manifest: dict[str, Any]) -> str:
    """`kubectl create` as another user: '' when admitted, else the apiserver's refusal."""
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "--as", user, "-n", ns, *CREATE],
        input=json.dumps(manifest),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return "" if result.returncode == 0 else result.stderr


def test_a_pool_attaches_only_to_a_workload_its_author_may_scale(
    crd_installed: ControlPlane, byo_ns: str, app_dir: Path
) -> None:
    cluster, ns = crd_installed, byo_ns
    policy = subprocess.run(
        [str(find_binaries() / "helm"), "template", f"adm-{ns}", str(CHART), *POLICY_ONLY],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    cluster.kubectl("apply", "-f", "-", input_text=policy)
    try:
        theirs = users_deployment("theirs", "theirq", app_dir)
        theirs["spec"]["replicas"] = 0  # only its existence matters here
        apply(cluster, ns, theirs)
        for args in (
            ["role", "pool-author", "--verb=create", "--resource=celeryworkerpools.celeriac.dev"],
            ["rolebinding", "alice-authors", "--role=pool-author", "--user=alice"],
        ):
            cluster.kubectl("-n", ns, "create", *args)
        pool = attached_pool("mine", "theirs", "theirq")

        refusal = wait_for(
            "the policy refusing a pool on a workload alice may not scale",
            lambda: (
                (out := create_as(cluster, "alice", ns, pool)) and "may not scale" in out and out
            ),
            30,
            0.5,
        )
        assert "spec.scaleTargetRef: you may not scale Deployment theirs" in refusal
        # A rendered pool (no scaleTargetRef) is not the policy's business.
        rendered = attached_pool("rendered", "theirs", "theirq")
        del rendered["spec"]["scaleTargetRef"]
        rendered["spec"]["template"] = {"image": "w:1", "app": "proj"}
        assert create_as(cluster, "alice", ns, rendered) == ""

        cluster.kubectl(
            "-n", ns, "create", "role", "scaler", "--verb=patch",
            "--resource=deployments.apps/scale",
        )  # fmt: skip
        cluster.kubectl("-n", ns, "create", "rolebinding", "alice-scales", "--role=scaler")
        cluster.kubectl("-n", ns, "patch", "rolebinding", "alice-scales", "--type=merge", "-p",
            json.dumps({"subjects": [{"kind": "User", "name": "alice",
                                      "apiGroup": "rbac.authorization.k8s.io"}]}))  # fmt: skip
        wait_for(
            "alice's pool admitted once she may scale the Deployment",
            lambda: create_as(cluster, "alice", ns, pool) == "",
            30,
            0.5,
        )
    finally:
        cluster.kubectl("delete", "-f", "-", "--wait=false", input_text=policy, check=False)
