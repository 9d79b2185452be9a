"""The operator against a real apiserver: it owns Deployments, reports status, obeys the user."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from celery import Celery

from celeriac_dev.controlplane import ControlPlane
from tests.support import waiting
from tests.support.operator_process import OperatorProcess
from tests.support.redis_server import RedisServer

T = TypeVar("T")


@pytest.fixture(scope="module")
def operator(
    crd_installed: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(
        kubeconfig=crd_installed.kubeconfig,
        log_path=tmp_path_factory.mktemp("operator") / "operator.log",
    )
    proc.start()
    yield proc
    proc.stop()


def wait_for(what: str, fn: Callable[[], T], op: OperatorProcess, timeout_s: float = 30.0) -> T:
    return waiting.wait_for(
        what, fn, timeout_s, 0.25, lambda: f"--- operator log ---\n{op.log_tail()}"
    )


def pool_manifest(
    name: str, queues: tuple[str, ...] = ("celery",), **scaling: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "celeriac.dev/v1alpha1",
        "kind": "CeleryWorkerPool",
        "metadata": {"name": name},
        "spec": {
            "queues": list(queues),
            "template": {"image": "example/worker:1", "app": "proj.celery_app"},
            "broker": {"urlSecretRef": {"name": "broker", "key": "url"}},
            "scaling": {"minReplicas": 1, "maxReplicas": 6, "pollingIntervalSeconds": 1, **scaling},
        },
    }


def get(cluster: ControlPlane, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    out = cluster.kubectl("-n", ns, "get", kind, name, "-o", "json", "--ignore-not-found")
    return json.loads(out) if out.strip() else None


def deployment_replicas(cluster: ControlPlane, ns: str, pool: str) -> int | None:
    d = get(cluster, ns, "deployment", f"{pool}-workers")
    return None if d is None else int(d["spec"]["replicas"])


@pytest.fixture
def pool_ns(crd_installed: ControlPlane, namespace: str, broker: RedisServer) -> str:
    crd_installed.kubectl(
        "-n", namespace, "create", "secret", "generic", "broker", f"--from-literal=url={broker.url}"
    )
    return namespace


def degraded(cluster: ControlPlane, ns: str, name: str) -> dict[str, Any] | None:
    """The pool's Degraded condition when it is True."""
    status = (get(cluster, ns, "cwp", name) or {}).get("status", {})
    cond = next((c for c in status.get("conditions", []) if c["type"] == "Degraded"), None)
    return cond if cond and cond["status"] == "True" else None


def apply(cluster: ControlPlane, ns: str, doc: dict[str, Any]) -> None:
    cluster.kubectl("-n", ns, "apply", "-f", "-", input_text=json.dumps(doc))


def test_a_pool_gets_an_owned_deployment_and_printer_columns(
    crd_installed: ControlPlane, pool_ns: str, operator: OperatorProcess
) -> None:
    apply(crd_installed, pool_ns, pool_manifest("alpha"))
    d = wait_for(
        "the Deployment",
        lambda: get(crd_installed, pool_ns, "deployment", "alpha-workers"),
        operator,
    )
    owner = d["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == (
        "CeleryWorkerPool",
        "alpha",
        True,
    )

    def columns() -> list[str] | None:
        lines = crd_installed.kubectl("-n", pool_ns, "get", "cwp", "alpha").splitlines()
        cells = lines[1].split()
        return cells if cells[1:4] == ["1", "1", "0"] else None

    cells = wait_for("kubectl get cwp columns filled", columns, operator)
    header = crd_installed.kubectl("-n", pool_ns, "get", "cwp").splitlines()[0].split()
    assert header == ["NAME", "DESIRED", "READY", "BACKLOG", "CPU%", "RANGE", "REASON", "AGE"]
    assert cells[0] == "alpha"
    assert "1-4" in cells


def test_backlog_scales_the_deployment_up_with_an_event(
    crd_installed: ControlPlane, pool_ns: str, broker: RedisServer, operator: OperatorProcess
) -> None:
    apply(crd_installed, pool_ns, pool_manifest("burst", targetQueueWaitSeconds=5))
    wait_for(
        "the Deployment",
        lambda: deployment_replicas(crd_installed, pool_ns, "burst") == 1,
        operator,
    )
    app = Celery("producer", broker=broker.url)
    with app.connection_for_write() as conn:
        for i in range(60):
            app.send_task("proj.work", args=[i], queue="celery", connection=conn)
    replicas = wait_for(
        "scale-up above 1",
        lambda: (
            (deployment_replicas(crd_installed, pool_ns, "burst") or 0) > 1
            and deployment_replicas(crd_installed, pool_ns, "burst")
        ),
        operator,
    )
    assert replicas is not None
    assert 1 < replicas <= 6
    events = crd_installed.kubectl(
        "-n",
        pool_ns,
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=burst",
        "-o",
        "json",
    )
    reasons = [e["reason"] for e in json.loads(events)["items"]]
    assert "Scaled" in reasons
    status = get(crd_installed, pool_ns, "cwp", "burst")
    assert status is not None
    assert status["status"]["backlog"] == 60


def test_kubectl_scale_goes_through_the_scale_subresource(
    crd_installed: ControlPlane, pool_ns: str, operator: OperatorProcess
) -> None:
    apply(crd_installed, pool_ns, pool_manifest("manual", paused=True))
    wait_for(
        "the Deployment",
        lambda: deployment_replicas(crd_installed, pool_ns, "manual") == 1,
        operator,
    )
    crd_installed.kubectl("-n", pool_ns, "scale", "cwp/manual", "--replicas=3")
    wait_for(
        "3 replicas", lambda: deployment_replicas(crd_installed, pool_ns, "manual") == 3, operator
    )
    status = wait_for(
        "status.replicas 3",
        lambda: (
            (s := get(crd_installed, pool_ns, "cwp", "manual"))
            and s["status"].get("replicas") == 3
            and s
        ),
        operator,
    )
    assert status["status"]["selector"] == "celeriac.dev/pool=manual"


def test_spec_change_rolls_and_delete_removes_the_deployment(
    crd_installed: ControlPlane, pool_ns: str, operator: OperatorProcess
) -> None:
    apply(crd_installed, pool_ns, pool_manifest("roll"))
    wait_for(
        "the Deployment",
        lambda: get(crd_installed, pool_ns, "deployment", "roll-workers"),
        operator,
    )
    crd_installed.kubectl(
        "-n",
        pool_ns,
        "patch",
        "cwp",
        "roll",
        "--type=merge",
        "-p",
        '{"spec":{"template":{"image":"example/worker:2"}}}',
    )

    def image() -> str | None:
        d = get(crd_installed, pool_ns, "deployment", "roll-workers")
        return d["spec"]["template"]["spec"]["containers"][0]["image"] if d else None

    wait_for("the new image in the pod template", lambda: image() == "example/worker:2", operator)
    crd_installed.kubectl("-n", pool_ns, "delete", "cwp", "roll", "--wait=true", "--timeout=30s")
    wait_for(
        "garbage collection of the Deployment",
        lambda: get(crd_installed, pool_ns, "deployment", "roll-workers") is None,
        operator,
        # The garbage collector picks up a new CRD's kind on its 30 s discovery resync.
        timeout_s=75,
    )


def test_a_hand_edited_deployment_is_restored(
    crd_installed: ControlPlane, pool_ns: str, operator: OperatorProcess
) -> None:
    apply(crd_installed, pool_ns, pool_manifest("edited", minReplicas=2))
    wait_for(
        "2 replicas", lambda: deployment_replicas(crd_installed, pool_ns, "edited") == 2, operator
    )
    crd_installed.kubectl("-n", pool_ns, "scale", "deployment/edited-workers", "--replicas=5")
    crd_installed.kubectl(
        "-n", pool_ns, "set", "image", "deployment/edited-workers", "worker=evil/image:1"
    )

    def restored() -> bool:
        d = get(crd_installed, pool_ns, "deployment", "edited-workers")
        return bool(
            d
            and d["spec"]["replicas"] == 2
            and d["spec"]["template"]["spec"]["containers"][0]["image"] == "example/worker:1"
        )

    wait_for("the operator to restore replicas and image", restored, operator)


def test_missing_secret_is_reported_and_other_pools_keep_working(
    crd_installed: ControlPlane, pool_ns: str, operator: OperatorProcess
) -> None:
    bad = pool_manifest("nosecret")
    bad["spec"]["broker"]["urlSecretRef"]["name"] = "does-not-exist"
    apply(crd_installed, pool_ns, bad)
    apply(crd_installed, pool_ns, pool_manifest("healthy"))

    cond = wait_for(
        "Degraded on the pool without a Secret",
        lambda: degraded(crd_installed, pool_ns, "nosecret"),
        operator,
    )
    assert cond["reason"] == "BrokerUnavailable"
    assert f"Secret {pool_ns}/does-not-exist not found" in cond["message"]
    # Held at minReplicas, never scaled to zero on a missing signal.
    assert deployment_replicas(crd_installed, pool_ns, "nosecret") == 1
    wait_for(
        "the healthy pool's Deployment",
        lambda: deployment_replicas(crd_installed, pool_ns, "healthy") == 1,
        operator,
    )
    assert operator.alive()


def test_operator_restart_loses_nothing(
    crd_installed: ControlPlane, pool_ns: str, operator: OperatorProcess
) -> None:
    apply(crd_installed, pool_ns, pool_manifest("sticky", paused=True))
    wait_for(
        "the Deployment",
        lambda: deployment_replicas(crd_installed, pool_ns, "sticky") == 1,
        operator,
    )
    crd_installed.kubectl("-n", pool_ns, "scale", "cwp/sticky", "--replicas=4")
    wait_for(
        "4 replicas", lambda: deployment_replicas(crd_installed, pool_ns, "sticky") == 4, operator
    )
    before = get(crd_installed, pool_ns, "cwp", "sticky")
    assert before is not None
    operator.stop()
    operator.start()
    time.sleep(4)
    after = get(crd_installed, pool_ns, "cwp", "sticky")
    assert after is not None
    assert deployment_replicas(crd_installed, pool_ns, "sticky") == 4
    assert after["status"]["appliedSpecReplicas"] == 4
    assert after["status"]["desiredReplicas"] == 4
    assert operator.alive(), operator.log_tail()


def test_metrics_endpoint_reports_decisions(
    operator: OperatorProcess, pool_ns: str, crd_installed: ControlPlane
) -> None:
    import urllib.request

    apply(crd_installed, pool_ns, pool_manifest("metered", queues=("metered",)))
    wait_for(
        "the Deployment",
        lambda: deployment_replicas(crd_installed, pool_ns, "metered") == 1,
        operator,
    )

    def scraped() -> str | None:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5
        ) as r:
            body = r.read().decode()
        return (
            body
            if f'celeriac_desired_replicas{{namespace="{pool_ns}",pool="metered"}} 1.0' in body
            else None
        )

    body = wait_for("metrics for the pool", scraped, operator)
    assert "celeriac_reconcile_seconds_bucket" in body
    assert (
        f'celeriac_queue_backlog{{namespace="{pool_ns}",pool="metered",queue="metered",state="waiting"}} 0.0'
        in body
    )


@pytest.mark.parametrize(
    ("case", "secret", "message"),
    [
        ("missing-key", {"other": "redis://127.0.0.1:6379/0"}, "has no key 'url'"),
        ("unreachable-broker", {"url": "redis://127.0.0.1:1/0"}, "ConnectionError"),
        (
            "garbage-url",
            {"url": "not a url"},
            "not a broker URL (expected redis://, rediss:// or sentinel://host:port)",
        ),
        ("sentinel-without-master", {"url": "sentinel://127.0.0.1:26379"}, "masterName"),
        (
            "unresolvable-host",
            {"url": "redis://no-such-host.invalid:6379/0"},
            "no-such-host.invalid:6379",
        ),
    ],
)
def test_a_broken_broker_is_reported_in_status_not_crashed_on(
    crd_installed: ControlPlane,
    pool_ns: str,
    operator: OperatorProcess,
    case: str,
    secret: dict[str, str],
    message: str,
) -> None:
    literals = [f"--from-literal={k}={v}" for k, v in secret.items()]
    crd_installed.kubectl("-n", pool_ns, "create", "secret", "generic", f"b-{case}", *literals)
    doc = pool_manifest(f"bad-{case}")
    doc["spec"]["broker"]["urlSecretRef"]["name"] = f"b-{case}"
    apply(crd_installed, pool_ns, doc)

    cond = wait_for(
        f"Degraded on {case}", lambda: degraded(crd_installed, pool_ns, f"bad-{case}"), operator
    )
    assert message in cond["message"]
    assert deployment_replicas(crd_installed, pool_ns, f"bad-{case}") == 1
    assert operator.alive(), operator.log_tail()
