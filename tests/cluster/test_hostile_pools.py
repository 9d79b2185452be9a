"""Hostile pools and hostile brokers against a real apiserver and the operator (issue #14).

The operator runs as the chart's ServiceAccount, with the chart's RBAC and admission
policies. Each case does one hostile thing and checks it is refused with its reason, or
that its effect is bounded, and then that the canary pool, on the same operator and
broker, still reads its backlog and applies its decision.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from celeriac_dev.controlplane import ControlPlane
from tests.cluster.hostile_setup import (
    RELEASE,
    Hostile,
    apply,
    attempt,
    get,
    new_namespace,
    pool,
    render_security,
    sa_kubeconfig,
    settle,
)
from tests.support.operator_process import OperatorProcess
from tests.support.redis_server import RedisServer, free_port, running_redis

TOKEN = "tok-S3cr3t-7a6b5c4d3e2f"
MB = 1024 * 1024


@pytest.fixture(scope="module")
def hostile(
    crd_installed: ControlPlane, broker: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hostile]:
    cluster = crd_installed
    release_ns, ns = new_namespace(cluster), new_namespace(cluster)
    docs = render_security(release_ns)
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}),
    )
    tmp = tmp_path_factory.mktemp("hostile")
    kubeconfig = sa_kubeconfig(
        cluster, release_ns, f"{RELEASE}-celeriac", tmp / "operator.kubeconfig"
    )
    operator = OperatorProcess(kubeconfig=kubeconfig, log_path=tmp / "operator.log")
    operator.start()
    cluster.kubectl(
        "-n", ns, "create", "secret", "generic", "broker", f"--from-literal=url={broker.url}"
    )
    ctx = Hostile(cluster, broker, operator, ns, release_ns)
    apply(
        cluster,
        ns,
        pool(
            "canary",
            queues=["canary-q"],
            scaling={
                "minReplicas": 1,
                "maxReplicas": 40,
                "pollingIntervalSeconds": 1,
                "targetQueueWaitSeconds": 5,
            },
        ),
    )
    ctx.wait(
        "the canary's Deployment", lambda: get(cluster, ns, "deployment", "canary-workers"), 60
    )
    try:
        yield ctx
    finally:
        operator.stop()
        cluster_scoped = [d for d in docs if "namespace" not in d["metadata"]]
        for d in cluster_scoped:
            cluster.kubectl(
                "delete", d["kind"], d["metadata"]["name"], "--ignore-not-found", check=False
            )
        for name in (ns, release_ns):
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


Case = Callable[[Hostile], None]
CASES: dict[str, Case] = {}


def case(name: str) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[name] = fn
        return fn

    return register


def no_token(text: str, secret: str = TOKEN) -> None:
    for i in range(len(secret) - 3):
        assert secret[i : i + 4] not in text, f"{secret[i : i + 4]!r} leaked"


# --- pod templates the apiserver refuses (schema generated from api.pod_template) --------

POD_TEMPLATES: dict[str, tuple[dict[str, Any], str]] = {
    "host-pid": (
        {"spec": {"hostPID": True}},
        'unknown field "spec.template.podTemplate.spec.hostPID"',
    ),
    "host-network": (
        {"spec": {"hostNetwork": True}},
        'unknown field "spec.template.podTemplate.spec.hostNetwork"',
    ),
    "host-ipc": (
        {"spec": {"hostIPC": True}},
        'unknown field "spec.template.podTemplate.spec.hostIPC"',
    ),
    "node-name": (
        {"spec": {"nodeName": "cp-1"}},
        'unknown field "spec.template.podTemplate.spec.nodeName"',
    ),
    "service-account": (
        {"spec": {"serviceAccountName": "admin"}},
        'unknown field "spec.template.podTemplate.spec.serviceAccountName"',
    ),
    "runtime-class": (
        {"spec": {"runtimeClassName": "runc-priv"}},
        'unknown field "spec.template.podTemplate.spec.runtimeClassName"',
    ),
    "host-path": (
        {"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}},
        'unknown field "spec.template.podTemplate.spec.volumes[0].hostPath"',
    ),
    "privileged": (
        {"spec": {"containers": [{"name": "worker", "securityContext": {"privileged": True}}]}},
        'unknown field "spec.template.podTemplate.spec.containers[0].securityContext.privileged"',
    ),
    "add-capabilities": (
        {
            "spec": {
                "containers": [
                    {"name": "worker", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}
                ]
            }
        },
        'unknown field "spec.template.podTemplate.spec.containers[0].securityContext.capabilities"',
    ),
    "host-port": (
        {
            "spec": {
                "containers": [{"name": "worker", "ports": [{"containerPort": 80, "hostPort": 80}]}]
            }
        },
        'unknown field "spec.template.podTemplate.spec.containers[0].ports[0].hostPort"',
    ),
    "run-as-root": (
        {"spec": {"securityContext": {"runAsUser": 0}}},
        "spec.template.podTemplate.spec.securityContext.runAsUser: Invalid value: 0",
    ),
    "bidirectional-mount": (
        {
            "spec": {
                "containers": [
                    {
                        "name": "worker",
                        "volumeMounts": [
                            {"name": "v", "mountPath": "/x", "mountPropagation": "Bidirectional"}
                        ],
                    }
                ]
            }
        },
        'Unsupported value: "Bidirectional"',
    ),
    "sysctls": (
        {
            "spec": {
                "securityContext": {"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "0"}]}
            }
        },
        'unknown field "spec.template.podTemplate.spec.securityContext.sysctls"',
    ),
}


def _refused_template(override: dict[str, Any], reason: str) -> Case:
    def run(h: Hostile) -> None:
        doc = pool("tpl")
        doc["spec"]["template"]["podTemplate"] = override
        ok, err = attempt(h.cluster, "-n", h.ns, "create", "-f", "-", doc=doc)
        assert not ok
        assert reason in err, err
        assert get(h.cluster, h.ns, "cwp", "tpl") is None

    return run


for _name, (_override, _reason) in POD_TEMPLATES.items():
    CASES[f"pod-template-{_name}"] = _refused_template(_override, _reason)


@case("queues-times-priority-steps")
def _(h: Hostile) -> None:
    doc = pool("wide", queues=[f"q{i}" for i in range(32)])
    doc["spec"]["broker"]["transport"] = {"prioritySteps": list(range(9))}
    ok, err = attempt(h.cluster, "-n", h.ns, "create", "-f", "-", doc=doc)
    assert not ok
    assert "queues x broker.transport.prioritySteps must be <= 256 Redis lists" in err


@case("queue-name-at-the-limit")
def _(h: Hostile) -> None:
    longest = "q" * 200
    apply(h.cluster, h.ns, pool("longq", queues=[longest]))
    dep = h.wait(
        "the Deployment of a pool with a 200-character queue",
        lambda: get(h.cluster, h.ns, "deployment", "longq-workers"),
    )
    assert f"--queues={longest}" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    ok, err = attempt(
        h.cluster, "-n", h.ns, "create", "-f", "-", doc=pool("longerq", queues=["q" * 201])
    )
    assert not ok
    assert "spec.queues[0]" in err


@case("secret-name-at-the-limit")
def _(h: Hostile) -> None:
    apply(h.cluster, h.ns, pool("longsecret", secret="s" * 253))
    message = h.wait("Degraded: the Secret is not found", lambda: h.degraded_message("longsecret"))
    assert "not found" in message


# --- pool authors the admission policy refuses -------------------------------------------


def _author(h: Hostile, user: str, rules: list[dict[str, Any]]) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": user},
        "rules": rules,
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": user},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    apply(h.cluster, h.ns, role)
    apply(h.cluster, h.ns, binding)


POOLS_RULE = {
    "apiGroups": ["celeriac.dev"],
    "resources": ["celeryworkerpools"],
    "verbs": ["create", "get", "update", "patch"],
}
DEPLOY_RULE = {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create"]}
SECRET_RULE = {
    "apiGroups": [""],
    "resources": ["secrets"],
    "resourceNames": ["broker"],
    "verbs": ["get"],
}


@case("author-may-not-create-deployments")
def _(h: Hostile) -> None:
    _author(h, "alice", [POOLS_RULE, SECRET_RULE])
    ok, err = attempt(
        h.cluster, "--as=alice", "-n", h.ns, "create", "-f", "-", doc=pool("by-alice")
    )
    assert not ok
    assert (
        f"creating a CeleryWorkerPool creates a Deployment: alice may not create Deployments in namespace {h.ns}"
        in err
    )


@case("author-may-not-get-the-secret")
def _(h: Hostile) -> None:
    _author(h, "bob", [POOLS_RULE, DEPLOY_RULE])
    ok, err = attempt(h.cluster, "--as=bob", "-n", h.ns, "create", "-f", "-", doc=pool("by-bob"))
    assert not ok
    assert f"bob may not get Secret {h.ns}/broker, so a pool may not hand it to the operator" in err


@case("author-names-another-secret")
def _(h: Hostile) -> None:
    _author(h, "carol", [POOLS_RULE, DEPLOY_RULE, SECRET_RULE])
    ok, err = attempt(
        h.cluster,
        "--as=carol",
        "-n",
        h.ns,
        "create",
        "-f",
        "-",
        doc=pool("by-carol", secret="db-password"),
    )
    assert not ok
    assert f"carol may not get Secret {h.ns}/db-password" in err


@case("author-with-both-rights-is-served")
def _(h: Hostile) -> None:
    _author(h, "dave", [POOLS_RULE, DEPLOY_RULE, SECRET_RULE])
    ok, err = attempt(h.cluster, "--as=dave", "-n", h.ns, "create", "-f", "-", doc=pool("by-dave"))
    assert ok, err
    h.wait(
        "dave's pool's Deployment", lambda: get(h.cluster, h.ns, "deployment", "by-dave-workers")
    )


@case("author-edits-the-secret-of-a-pool-later")
def _(h: Hostile) -> None:
    _author(h, "erin", [POOLS_RULE, DEPLOY_RULE, SECRET_RULE])
    ok, err = attempt(h.cluster, "--as=erin", "-n", h.ns, "create", "-f", "-", doc=pool("by-erin"))
    assert ok, err
    patch = json.dumps({"spec": {"broker": {"urlSecretRef": {"name": "db-password"}}}})
    ok, err = attempt(
        h.cluster, "--as=erin", "-n", h.ns, "patch", "cwp", "by-erin", "--type=merge", "-p", patch
    )
    assert not ok
    assert f"erin may not get Secret {h.ns}/db-password" in err


# --- what the operator's own ServiceAccount may do ------------------------------------------


def _as_operator(h: Hostile, *args: str, doc: dict[str, Any] | None = None) -> tuple[bool, str]:
    return attempt(h.cluster, f"--as={h.operator_user}", *args, doc=doc)


def _operator_patches_pod(h: Hostile, pod: str, body: dict[str, Any]) -> tuple[bool, str]:
    """A merge patch as the operator sends it: no GET first (it may not get pods)."""
    api = h.cluster.api_client()
    api.set_default_header("Impersonate-User", h.operator_user)
    try:
        client.CoreV1Api(api).patch_namespaced_pod(
            pod.removeprefix("pod/"), h.ns, body, _content_type="application/merge-patch+json"
        )
    except ApiException as exc:
        return False, str(exc.body)
    finally:
        api.close()
    return True, ""


def _canary_pod(h: Hostile) -> str:
    def first() -> str | None:
        out = h.cluster.kubectl(
            "-n", h.ns, "get", "pods", "-l", "celeriac.dev/pool=canary", "-o", "name"
        )
        return out.split()[0] if out.split() else None

    return str(h.wait("a canary pod", first))


def _plain_pod(h: Hostile, name: str) -> str:
    if get(h.cluster, h.ns, "pod", name) is None:
        doc = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "example/app:1"}]},
        }
        apply(h.cluster, h.ns, doc)
    return f"pod/{name}"


@case("operator-patches-a-pool-pods-labels")
def _(h: Hostile) -> None:
    ok, err = _operator_patches_pod(h, _canary_pod(h), {"metadata": {"labels": {"stolen": "yes"}}})
    assert not ok
    assert "the operator may only change a pod's annotations" in err


@case("operator-patches-a-pool-pods-spec")
def _(h: Hostile) -> None:
    ok, err = _operator_patches_pod(h, _canary_pod(h), {"spec": {"activeDeadlineSeconds": 1}})
    assert not ok
    assert "the operator may only change a pod's annotations" in err


@case("operator-annotates-a-pod-of-no-pool")
def _(h: Hostile) -> None:
    ok, err = _operator_patches_pod(
        h, _plain_pod(h, "bystander"), {"metadata": {"annotations": {"x": "y"}}}
    )
    assert not ok
    assert "the operator may only patch pods of a CeleryWorkerPool" in err


@case("operator-annotates-a-pool-pod")
def _(h: Hostile) -> None:
    cost = {"controller.kubernetes.io/pod-deletion-cost": "5"}
    ok, err = _operator_patches_pod(h, _canary_pod(h), {"metadata": {"annotations": cost}})
    assert ok, err


def _deployment(name: str, owner_uid: str | None, **pod_spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if owner_uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": "celeriac.dev/v1alpha1",
                "kind": "CeleryWorkerPool",
                "name": "canary",
                "uid": owner_uid,
                "controller": True,
            }
        ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "c", "image": "x", **pod_spec.pop("container", {})}],
                    **pod_spec,
                },
            },
        },
    }


def _canary_uid(h: Hostile) -> str:
    return str((get(h.cluster, h.ns, "cwp", "canary") or {})["metadata"]["uid"])


@case("operator-creates-an-unowned-deployment")
def _(h: Hostile) -> None:
    ok, err = _as_operator(h, "-n", h.ns, "create", "-f", "-", doc=_deployment("rogue", None))
    assert not ok
    assert "the operator may only write Deployments that a CeleryWorkerPool owns" in err


@case("operator-takes-over-someone-elses-deployment")
def _(h: Hostile) -> None:
    apply(h.cluster, h.ns, _deployment("theirs", None))
    doc = _deployment("theirs", _canary_uid(h))
    ok, err = _as_operator(
        h,
        "-n",
        h.ns,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=celeriac",
        "-f",
        "-",
        doc=doc,
    )
    assert not ok
    assert "the operator may only write Deployments that a CeleryWorkerPool owns" in err


OWNED_HOST_ACCESS: dict[str, tuple[dict[str, Any], str]] = {
    "host-network": ({"hostNetwork": True}, "may not use host namespaces"),
    "host-pid": ({"hostPID": True}, "may not use host namespaces"),
    "host-path": (
        {"volumes": [{"name": "r", "hostPath": {"path": "/"}}]},
        "may not mount hostPath volumes",
    ),
    "privileged": (
        {"container": {"securityContext": {"privileged": True}}},
        "may not be privileged or add capabilities",
    ),
    "capabilities": (
        {"container": {"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}},
        "may not be privileged or add capabilities",
    ),
}


def _owned_host_access(pod_spec: dict[str, Any], reason: str) -> Case:
    def run(h: Hostile) -> None:
        doc = _deployment(
            f"owned-{uuid_tail()}", _canary_uid(h), **json.loads(json.dumps(pod_spec))
        )
        ok, err = _as_operator(h, "-n", h.ns, "create", "-f", "-", doc=doc)
        assert not ok
        assert reason in err, err

    return run


def uuid_tail() -> str:
    import uuid

    return uuid.uuid4().hex[:6]


for _name, (_spec, _reason) in OWNED_HOST_ACCESS.items():
    CASES[f"operator-deployment-{_name}"] = _owned_host_access(_spec, _reason)


@case("operator-deletes-or-lists-secrets")
def _(h: Hostile) -> None:
    ok, err = _as_operator(h, "-n", h.ns, "get", "secrets")
    assert not ok
    assert 'cannot list resource "secrets"' in err
    ok, err = _as_operator(
        h, "-n", h.ns, "delete", "deployment", "canary-workers", "--dry-run=server"
    )
    assert not ok
    assert 'cannot delete resource "deployments"' in err


# --- Secrets and broker URLs: the reason is shown, never a byte of the value ---------------


def _secret(h: Hostile, name: str, data: dict[str, bytes], type_: str = "Opaque") -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": type_,
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }
    apply(h.cluster, h.ns, doc)


def _disclosure(
    name: str, data: dict[str, bytes] | None, shown: str, type_: str = "Opaque"
) -> Case:
    def run(h: Hostile) -> None:
        if data is not None:
            _secret(h, f"s-{name}", data, type_)
        apply(h.cluster, h.ns, pool(name, secret=f"s-{name}"))
        message = h.wait(f"{name}: Degraded with its reason", lambda: h.degraded_message(name))
        assert shown in message, message
        no_token(h.pool_text(name))
        no_token(h.operator.log_tail(2_000_000))

    return run


CLOSED = free_port()
SECRETS: dict[str, tuple[dict[str, bytes] | None, str, str]] = {
    "bare-token": ({"url": TOKEN.encode()}, "not a broker URL", "Opaque"),
    "token-as-port": (
        {"url": f"redis://127.0.0.1:{TOKEN}/0".encode()},
        "not a broker URL",
        "Opaque",
    ),
    "token-as-db": (
        {"url": f"redis://127.0.0.1:6379/{TOKEN}".encode()},
        "the database is not a number",
        "Opaque",
    ),
    "http-url": (
        {"url": f"http://user:{TOKEN}@example.com/".encode()},
        "not a broker URL",
        "Opaque",
    ),
    "refused-with-password": (
        {"url": f"redis://:{TOKEN}@127.0.0.1:{CLOSED}/0".encode()},
        f"redis://127.0.0.1:{CLOSED}",
        "Opaque",
    ),
    "missing-key-lists-no-keys": (
        {f"password-{TOKEN}": b"x", "token": TOKEN.encode()},
        "has no key 'url'",
        "Opaque",
    ),
    "not-utf8": ({"url": b"\xff\xfe" + TOKEN.encode()}, "is not UTF-8 text", "Opaque"),
    "tls-secret": (
        {"tls.crt": TOKEN.encode(), "tls.key": TOKEN.encode()},
        "has no key 'url'",
        "kubernetes.io/tls",
    ),
    "missing-secret": (None, "not found", "Opaque"),
}

for _name, (_data, _shown, _type) in SECRETS.items():
    CASES[f"secret-{_name}"] = _disclosure(f"sec-{_name}", _data, _shown, _type)


@case("secret-wrong-password")
def _(h: Hostile) -> None:
    with running_redis() as guarded:
        guarded.client().config_set("requirepass", "the-right-one")
        url = f"redis://:{TOKEN}@127.0.0.1:{guarded.port}/0"
        _secret(h, "s-wrongpw", {"url": url.encode()})
        apply(h.cluster, h.ns, pool("wrongpw", secret="s-wrongpw"))
        message = h.wait("wrongpw: Degraded", lambda: h.degraded_message("wrongpw"))
        assert f"redis://127.0.0.1:{guarded.port}" in message
        no_token(h.pool_text("wrongpw"))
        no_token(h.operator.log_tail(2_000_000))
        h.cluster.kubectl("-n", h.ns, "delete", "cwp", "wrongpw")


# --- forged reports and large payloads on the shared broker ----------------------------


def _forge(h: Hostile, pool_name: str, fields: dict[str, bytes]) -> None:
    redis.Redis(port=h.broker.port).hset(f"celeriac.workers.{h.ns}/{pool_name}", mapping=fields)


def _report(pod: str, **changes: Any) -> bytes:
    import time

    doc: dict[str, Any] = {
        "hostname": f"celery@{pod}",
        "pod": pod,
        "running": 1,
        "pool_size": 2,
        "range_min": 1,
        "range_max": 4,
        "ts": time.time(),
    }
    doc.update(changes)
    return json.dumps(doc).encode()


def _victim(h: Hostile, name: str) -> None:
    apply(h.cluster, h.ns, pool(name))
    h.wait(f"{name}'s Deployment", lambda: get(h.cluster, h.ns, "deployment", f"{name}-workers"))


def _backlog_tracked(h: Hostile, name: str, n: int) -> None:
    redis.Redis(port=h.broker.port).lpush(f"{name}-q", *[b"{}"] * n)
    h.wait(
        f"{name} reads backlog {n}",
        lambda: (get(h.cluster, h.ns, "cwp", name) or {}).get("status", {}).get("backlog") == n,
    )


@case("forged-report-running-1e9")
def _(h: Hostile) -> None:
    _victim(h, "v-running")
    _forge(
        h, "v-running", {"celery@x": _report("x", running=1e9, pool_size=10**9, range_max=10**9)}
    )
    settle(4)
    dep = get(h.cluster, h.ns, "deployment", "v-running-workers") or {}
    assert dep["spec"]["replicas"] == 1  # it jumped to maxReplicas before
    _backlog_tracked(h, "v-running", 1)


@case("forged-report-ts-1e18")
def _(h: Hostile) -> None:
    _victim(h, "v-ts")
    _forge(h, "v-ts", {"celery@x": _report("x", ts=1e18)})
    _backlog_tracked(h, "v-ts", 2)
    status = (get(h.cluster, h.ns, "cwp", "v-ts") or {}).get("status", {})
    assert not status.get("rangesReporting")


@case("forged-report-p99-infinity")
def _(h: Hostile) -> None:
    _victim(h, "v-inf")
    _forge(
        h,
        "v-inf",
        {
            "celery@x": b'{"hostname": "celery@x", "pod": "x", "running": 1, "pool_size": 2, "range_min": 1, "range_max": 4, "p99_task_seconds": Infinity, "ts": 1e9}'
        },
    )
    _backlog_tracked(h, "v-inf", 3)  # the pool keeps reconciling: no OverflowError freeze


@case("half-a-million-forged-reports")
def _(h: Hostile) -> None:
    _victim(h, "v-flood")
    client = redis.Redis(port=h.broker.port)
    forged = _report("forged")
    for start in range(0, 500_000, 50_000):
        pipe = client.pipeline(transaction=False)
        for i in range(start, start + 50_000):
            pipe.hset(f"celeriac.workers.{h.ns}/v-flood", f"celery@f-{i}", forged)
        pipe.execute()
    _backlog_tracked(h, "v-flood", 4)
    assert h.operator.alive()


@case("ten-mb-payloads")
def _(h: Hostile) -> None:
    _victim(h, "v-big")
    body = json.dumps(
        {"body": "A" * (10 * MB), "headers": {"celeriac_published_at": 1.0}, "properties": {}}
    ).encode()
    client = redis.Redis(port=h.broker.port)
    client.lpush("v-big-q", body, body, body)
    h.wait(
        "v-big reads backlog 3",
        lambda: (get(h.cluster, h.ns, "cwp", "v-big") or {}).get("status", {}).get("backlog") == 3,
    )
    assert h.operator.alive()


# --- the suite --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_is_refused_or_bounded_and_other_pools_keep_scaling(
    hostile: Hostile, name: str
) -> None:
    CASES[name](hostile)
    hostile.canary_keeps_scaling()


def test_the_suite_has_at_least_forty_cases() -> None:
    assert len(CASES) >= 40


def test_the_canary_scaled_up_through_the_suite(hostile: Hostile) -> None:
    hostile.canary_keeps_scaling()
    assert hostile.canary_replicas[-1] > 1, hostile.canary_replicas


def test_operator_service_account_can_i_list(hostile: Hostile, tmp_path: Path) -> None:
    """`kubectl auth can-i --list` for the operator: only the verbs its code uses."""
    out = hostile.cluster.kubectl(
        "auth", "can-i", "--list", f"--as={hostile.operator_user}", "-n", hostile.ns
    )
    (tmp_path / "can-i.txt").write_text(out)
    print(out)
    verbs = {
        line.split()[0]: set(line[line.rindex("[") + 1 : line.rindex("]")].split())
        for line in out.splitlines()[1:]
        if line.strip()
    }
    assert verbs["pods"] == {"list", "watch", "patch"}
    assert verbs["secrets"] == {"get"}
    assert verbs["deployments.apps"] == {"get", "list", "watch", "create", "patch"}
    assert verbs["celeryworkerpools.celeriac.dev"] == {"list", "watch", "patch"}
    assert verbs["celeryworkerpools.celeriac.dev/status"] == {"patch"}
    assert verbs["events"] == {"create"}
