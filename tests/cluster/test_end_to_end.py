"""The closed loop: real apiserver, real operator, real Celery workers run by the process kubelet.

Each test counts what it submitted against what completed.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.result import AsyncResult

from celeriac_dev.controlplane import ControlPlane
from celeriac_dev.kubelet import ProcessKubelet, placement
from tests.support.operator_process import OperatorProcess
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

LONG_JOB = "celeriac_worker.tasks.long_job"


@pytest.fixture(scope="module")
def operator(
    crd_installed: ControlPlane,
    process_kubelet: ProcessKubelet,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(
        kubeconfig=crd_installed.kubeconfig,
        log_path=tmp_path_factory.mktemp("e2e") / "operator.log",
    )
    proc.start()
    yield proc
    proc.stop()


def pool(name: str, **scaling: Any) -> dict[str, Any]:
    where = placement()
    return {
        "apiVersion": "celeriac.dev/v1alpha1",
        "kind": "CeleryWorkerPool",
        "metadata": {"name": name},
        "spec": {
            # A queue of its own: pools of earlier tests may still be draining on this broker.
            "queues": [name],
            "template": {
                "image": "ghcr.io/celeriac/worker:0.1.0",
                "app": "celeriac_worker.celery_app",
                "nodeSelector": where["nodeSelector"],
                "tolerations": where["tolerations"],
                "env": [
                    # What the image's Dockerfile sets: prefork children exit without flushing.
                    {"name": "PYTHONUNBUFFERED", "value": "1"},
                    {"name": "AUTOSCALE_KEEPALIVE", "value": "2"},
                    {"name": "REMAP_SIGTERM", "value": "SIGQUIT"},
                    {"name": "CELERIAC_LONGEST_TASK_SECONDS", "value": "30"},
                    {"name": "CELERIAC_REPORT_INTERVAL", "value": "1"},
                ],
            },
            "worker": {"concurrency": {"min": 1, "max": 2}, "logLevel": "INFO"},
            "broker": {"urlSecretRef": {"name": "broker", "key": "url"}},
            "scaling": {
                "minReplicas": 1,
                "maxReplicas": 4,
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
            "terminationGracePeriodSeconds": 30,
        },
    }


def get(cluster: ControlPlane, ns: str, kind: str, name: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl("-n", ns, "get", kind, name, "-o", "json"))


def replicas(cluster: ControlPlane, ns: str, name: str) -> int:
    """The worker Deployment's replicas; -1 before the operator created it."""
    out = cluster.kubectl(
        "-n", ns, "get", "deployment", f"{name}-workers", "-o", "json", "--ignore-not-found"
    )
    return int(json.loads(out)["spec"]["replicas"]) if out.strip() else -1


def live_pods(cluster: ControlPlane, ns: str, name: str) -> list[dict[str, Any]]:
    items = json.loads(
        cluster.kubectl("-n", ns, "get", "pods", "-l", f"celeriac.dev/pool={name}", "-o", "json")
    )["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def condition(cluster: ControlPlane, ns: str, name: str, type_: str) -> dict[str, Any] | None:
    status = get(cluster, ns, "cwp", name).get("status", {})
    return next((c for c in status.get("conditions", []) if c["type"] == type_), None)


@pytest.fixture
def loop_ns(crd_installed: ControlPlane, namespace: str, broker: RedisServer) -> str:
    crd_installed.kubectl(
        "-n", namespace, "create", "secret", "generic", "broker", f"--from-literal=url={broker.url}"
    )
    return namespace


def start_pool(
    cluster: ControlPlane, ns: str, name: str, op: OperatorProcess, **scaling: Any
) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "-", input_text=json.dumps(pool(name, **scaling)))
    expected = scaling.get("minReplicas", 1)
    wait_for(
        f"{expected} workers reporting their load",
        lambda: get(cluster, ns, "cwp", name).get("status", {}).get("rangesReporting") == expected,
        timeout_s=60,
    )
    assert op.alive(), op.log_tail()


def all_done(app: Celery, ids: list[str]) -> bool:
    return all(AsyncResult(i, app=app).state == "SUCCESS" for i in ids)


def test_burst_scales_up_fast_drains_and_scales_back_down(
    crd_installed: ControlPlane, loop_ns: str, broker: RedisServer, operator: OperatorProcess
) -> None:
    cluster, ns = crd_installed, loop_ns
    start_pool(cluster, ns, "burst", operator)
    app = Celery("e2e", broker=broker.url, backend=broker.url)

    pushed = time.monotonic()
    ids = [
        app.send_task(LONG_JOB, kwargs={"steps": 1, "step_seconds": 1.0}, queue="burst").id
        for _ in range(40)
    ]
    peak = wait_for(
        "the Deployment scaled up",
        lambda: (n := replicas(cluster, ns, "burst")) > 1 and n,
        timeout_s=15,
        every_s=0.05,
    )
    reaction_s = time.monotonic() - pushed
    print(f"\nreaction time burst -> Deployment patched: {reaction_s:.2f} s")
    # Well inside KEDA's 15 s HPA sync; the number itself is bench/bench_reaction.py's.
    assert reaction_s < 10.0

    wait_for("all 40 tasks done", lambda: all_done(app, ids), timeout_s=120, every_s=0.5)
    wait_for(
        "scale back to minReplicas",
        lambda: replicas(cluster, ns, "burst") == 1,
        timeout_s=90,
        every_s=0.5,
    )
    wait_for(
        "one pod left", lambda: len(live_pods(cluster, ns, "burst")) == 1, timeout_s=60, every_s=0.5
    )
    assert sum(AsyncResult(i, app=app).state == "SUCCESS" for i in ids) == 40
    assert peak >= 2


def test_deleting_a_busy_worker_pod_loses_no_task(
    crd_installed: ControlPlane, loop_ns: str, broker: RedisServer, operator: OperatorProcess
) -> None:
    cluster, ns = crd_installed, loop_ns
    start_pool(cluster, ns, "victim", operator, maxReplicas=1)
    app = Celery("e2e", broker=broker.url, backend=broker.url)
    ids = [
        app.send_task(LONG_JOB, kwargs={"steps": 3, "step_seconds": 1.0}, queue="victim").id
        for _ in range(4)
    ]
    wait_for(
        "a task running",
        lambda: any(AsyncResult(i, app=app).state in ("STARTED", "PROGRESS") for i in ids),
        20,
    )
    victim = live_pods(cluster, ns, "victim")[0]["metadata"]["name"]
    cluster.kubectl("-n", ns, "delete", "pod", victim, "--wait=false")
    wait_for(
        "a replacement pod",
        lambda: any(p["metadata"]["name"] != victim for p in live_pods(cluster, ns, "victim")),
        30,
    )
    wait_for("all 4 tasks done", lambda: all_done(app, ids), timeout_s=120, every_s=0.5)
    assert sum(AsyncResult(i, app=app).state == "SUCCESS" for i in ids) == 4


def test_a_broker_outage_holds_replicas_reports_degraded_and_recovers(
    crd_installed: ControlPlane, loop_ns: str, broker: RedisServer, operator: OperatorProcess
) -> None:
    cluster, ns = crd_installed, loop_ns
    start_pool(cluster, ns, "outage", operator, minReplicas=2)
    wait_for("2 replicas", lambda: replicas(cluster, ns, "outage") == 2, 30)
    broker.stop()
    try:
        degraded = wait_for(
            "Degraded=True",
            lambda: (
                (c := condition(cluster, ns, "outage", "Degraded")) and c["status"] == "True" and c
            ),
            timeout_s=30,
            every_s=0.5,
        )
        assert degraded["reason"] in ("BrokerUnavailable", "SignalsStale")
        # Thirty seconds without a broker: the pool holds its size the whole time.
        held_until = time.monotonic() + 30
        while time.monotonic() < held_until:
            assert replicas(cluster, ns, "outage") == 2
            time.sleep(2)
    finally:
        broker.start()
    wait_for(
        "Degraded=False after the broker is back",
        lambda: (c := condition(cluster, ns, "outage", "Degraded")) and c["status"] == "False",
        timeout_s=60,
        every_s=0.5,
    )
    assert replicas(cluster, ns, "outage") == 2


def test_killing_the_operator_mid_scale_loses_nothing(
    crd_installed: ControlPlane, loop_ns: str, broker: RedisServer, operator: OperatorProcess
) -> None:
    cluster, ns = crd_installed, loop_ns
    start_pool(cluster, ns, "phoenix", operator)
    app = Celery("e2e", broker=broker.url, backend=broker.url)
    ids = [
        app.send_task(LONG_JOB, kwargs={"steps": 1, "step_seconds": 1.0}, queue="phoenix").id
        for _ in range(30)
    ]
    wait_for("scale-up begins", lambda: replicas(cluster, ns, "phoenix") > 1, 20, 0.1)
    operator.stop(signal.SIGKILL)
    operator.start()
    wait_for("all 30 tasks done", lambda: all_done(app, ids), timeout_s=120, every_s=0.5)
    wait_for(
        "back to minReplicas",
        lambda: replicas(cluster, ns, "phoenix") == 1,
        timeout_s=90,
        every_s=0.5,
    )
    assert sum(AsyncResult(i, app=app).state == "SUCCESS" for i in ids) == 30
    assert operator.alive(), operator.log_tail()


def pod_running_tasks(cluster: ControlPlane, ns: str, name: str) -> dict[str, int]:
    status = get(cluster, ns, "cwp", name).get("status", {})
    return {q["name"]: q.get("reserved", 0) for q in status.get("queues", [])}


def test_scale_in_removes_idle_pods_and_keeps_the_busy_ones(
    crd_installed: ControlPlane, loop_ns: str, broker: RedisServer, operator: OperatorProcess
) -> None:
    cluster, ns = crd_installed, loop_ns
    manifest = pool("drain", minReplicas=3, maxReplicas=3)
    manifest["spec"]["worker"]["concurrency"] = {"min": 1, "max": 1}
    cluster.kubectl("-n", ns, "apply", "-f", "-", input_text=json.dumps(manifest))
    wait_for(
        "3 workers reporting",
        lambda: get(cluster, ns, "cwp", "drain").get("status", {}).get("rangesReporting") == 3,
        timeout_s=90,
    )
    app = Celery("e2e", broker=broker.url, backend=broker.url)
    ids = [
        app.send_task(LONG_JOB, kwargs={"steps": 15, "step_seconds": 1.0}, queue="drain").id
        for _ in range(2)
    ]
    wait_for(
        "2 tasks running",
        lambda: all(AsyncResult(i, app=app).state == "PROGRESS" for i in ids),
        30,
        0.2,
    )
    before = {p["metadata"]["name"] for p in live_pods(cluster, ns, "drain")}
    assert len(before) == 3

    cluster.kubectl(
        "-n",
        ns,
        "patch",
        "cwp",
        "drain",
        "--type=merge",
        "-p",
        '{"spec":{"scaling":{"minReplicas":1}}}',
    )
    # Two pods are busy, so scale-in stops at 2 (the policy sizes for the reserved tasks, the
    # drain floor would hold it there too) and the deletion costs make the idle pod go.
    wait_for("scale-in to 2", lambda: replicas(cluster, ns, "drain") == 2, 30, 0.2)
    wait_for("the idle pod gone", lambda: len(live_pods(cluster, ns, "drain")) == 2, 30, 0.2)
    after_first = {p["metadata"]["name"] for p in live_pods(cluster, ns, "drain")}
    assert all(AsyncResult(i, app=app).state == "PROGRESS" for i in ids), "a busy pod was removed"
    assert after_first < before

    wait_for("both tasks done", lambda: all_done(app, ids), timeout_s=60, every_s=0.5)
    wait_for("scale-in to 1 once idle", lambda: replicas(cluster, ns, "drain") == 1, 60, 0.5)
    assert sum(AsyncResult(i, app=app).state == "SUCCESS" for i in ids) == 2
    runs = 0
    for pod_dir in (cluster.state_dir / "pods").glob(f"{ns}_drain-workers-*"):
        for log in pod_dir.glob("container-*.log"):
            runs += log.read_text(errors="replace").count("long job finished 15 steps")
    assert runs == 2, "a task ran twice (or was lost)"


def test_a_cpu_bound_pool_gets_a_narrower_range_live_on_the_pod(
    crd_installed: ControlPlane, loop_ns: str, broker: RedisServer, operator: OperatorProcess
) -> None:
    cluster, ns = crd_installed, loop_ns
    manifest = pool("hot", minReplicas=1, maxReplicas=1, targetCpuUtilizationPercent=5)
    manifest["spec"]["queues"] = ["hot"]
    manifest["spec"]["worker"]["concurrency"] = {"min": 1, "max": 3}
    manifest["spec"]["template"]["env"].append({"name": "CELERIAC_CPU_LIMIT_CORES", "value": "1"})
    cluster.kubectl("-n", ns, "apply", "-f", "-", input_text=json.dumps(manifest))
    wait_for(
        "the worker reporting",
        lambda: get(cluster, ns, "cwp", "hot").get("status", {}).get("rangesReporting") == 1,
        timeout_s=60,
    )
    app = Celery("e2e", broker=broker.url, backend=broker.url)
    ids = [
        app.send_task(
            "celeriac_worker.tasks.render_report",
            kwargs={"title": "t", "pages": 6, "depth": 300},
            queue="hot",
        ).id
        for _ in range(3)
    ]

    def range_event() -> str | None:
        events = json.loads(
            cluster.kubectl(
                "-n",
                ns,
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=hot",
                "-o",
                "json",
            )
        )["items"]
        return next((e["message"] for e in events if e["reason"] == "RangeApplied"), None)

    message = wait_for("a live range change", range_event, timeout_s=60, every_s=0.5)
    # How fast it lands is a benchmark's business (bench/bench_reaction.py), not this test's.
    assert message.startswith("--autoscale 1-1 applied to 1 workers in ")
    pod = live_pods(cluster, ns, "hot")[0]
    annotations = get(cluster, ns, "pod", pod["metadata"]["name"])["metadata"]["annotations"]
    assert annotations["celeriac.dev/autoscale-range"] == "1-1"
    stats = (
        app.control.inspect(destination=[f"celery@{pod['metadata']['name']}"], timeout=2).stats()
        or {}
    )
    info = stats[f"celery@{pod['metadata']['name']}"]["autoscaler"]
    assert (info["min"], info["max"]) == (1, 1)
    wait_for("the reports done", lambda: all_done(app, ids), timeout_s=120, every_s=0.5)


def test_scale_to_zero_when_idle_and_back_on_new_work(
    crd_installed: ControlPlane, loop_ns: str, broker: RedisServer, operator: OperatorProcess
) -> None:
    cluster, ns = crd_installed, loop_ns
    manifest = pool("zero", minReplicas=0, idleSecondsBeforeZero=5)
    manifest["spec"]["queues"] = ["zeroq"]
    cluster.kubectl("-n", ns, "apply", "-f", "-", input_text=json.dumps(manifest))
    wait_for(
        "scale to zero when idle",
        lambda: replicas(cluster, ns, "zero") == 0,
        timeout_s=60,
        every_s=0.5,
    )
    wait_for("no pod left", lambda: not live_pods(cluster, ns, "zero"), timeout_s=60, every_s=0.5)

    app = Celery("e2e", broker=broker.url, backend=broker.url)
    pushed = time.monotonic()
    ids = [
        app.send_task(LONG_JOB, kwargs={"steps": 1, "step_seconds": 0.5}, queue="zeroq").id
        for _ in range(10)
    ]
    wait_for(
        "wake from zero", lambda: replicas(cluster, ns, "zero") >= 1, timeout_s=15, every_s=0.05
    )
    print(f"\nreaction from zero: {time.monotonic() - pushed:.2f} s")
    wait_for("all 10 tasks done", lambda: all_done(app, ids), timeout_s=90, every_s=0.5)
    assert sum(AsyncResult(i, app=app).state == "SUCCESS" for i in ids) == 10
    wait_for("back to zero", lambda: replicas(cluster, ns, "zero") == 0, timeout_s=90, every_s=0.5)
