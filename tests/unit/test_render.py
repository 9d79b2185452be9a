"""The worker Deployment a pool renders to."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from celeriac.actuators import render
from celeriac.api.pool import CeleryWorkerPoolSpec


def spec(**overrides: Any) -> CeleryWorkerPoolSpec:
    raw: dict[str, Any] = {
        "queues": ["celery", "emails"],
        "template": {"image": "example/worker:1", "app": "proj.celery_app"},
        "broker": {"urlSecretRef": {"name": "broker", "key": "url"}},
        "worker": {"concurrency": {"min": 2, "max": 6}, "maxTasksPerChild": 100},
    }
    raw.update(overrides)
    return CeleryWorkerPoolSpec.model_validate(raw)


def test_deployment_is_owned_by_the_pool_and_selects_its_pods() -> None:
    d = render.render_deployment("pool-a", "ns1", "uid-1", spec(), replicas=3)
    assert d["metadata"]["name"] == "pool-a-workers"
    owner = d["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "CeleryWorkerPool",
        "pool-a",
        "uid-1",
        True,
    )
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["selector"]["matchLabels"] == {"celeriac.dev/pool": "pool-a"}
    assert d["spec"]["template"]["metadata"]["labels"]["celeriac.dev/pool"] == "pool-a"


def test_celery_command_line_carries_the_worker_settings() -> None:
    container = render.render_deployment("p", "ns", "u", spec(), 1)["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["command"] == ["celery"]
    assert container["args"] == [
        "-A",
        "proj.celery_app",
        "worker",
        "--queues=celery,emails",
        "--pool=prefork",
        "--autoscale=6,2",
        "--prefetch-multiplier=1",
        "--loglevel=INFO",
        "--hostname=celery@$(POD_NAME)",
        "--max-tasks-per-child=100",
    ]


def test_broker_url_comes_from_the_secret_never_inline() -> None:
    env = render.render_deployment("p", "ns", "u", spec(), 1)["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    broker = next(e for e in env if e["name"] == "CELERY_BROKER_URL")
    assert broker == {
        "name": "CELERY_BROKER_URL",
        "valueFrom": {"secretKeyRef": {"name": "broker", "key": "url"}},
    }
    assert {"name": "CELERIAC_POOL", "value": "ns/p"} in env


def test_range_annotation_is_projected_into_the_pod_for_restarts() -> None:
    template = render.render_deployment("p", "ns", "u", spec(), 1)["spec"]["template"]
    assert template["metadata"]["annotations"][render.RANGE_ANNOTATION] == "2-6"
    volume = template["spec"]["volumes"][0]
    assert volume["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['celeriac.dev/autoscale-range']"
    )


def test_pod_template_override_merges_containers_by_name() -> None:
    override = {
        "spec": {
            "containers": [{"name": "worker", "resources": {"limits": {"cpu": "2"}}}],
            "priorityClassName": "batch",
        },
        "metadata": {"labels": {"team": "data"}},
    }
    s = spec(template={"image": "i", "app": "a", "podTemplate": override})
    tpl = render.render_deployment("p", "ns", "u", s, 1)["spec"]["template"]
    assert len(tpl["spec"]["containers"]) == 1
    container = tpl["spec"]["containers"][0]
    assert container["resources"] == {"limits": {"cpu": "2"}}
    assert container["image"] == "i"
    assert tpl["spec"]["priorityClassName"] == "batch"
    assert tpl["metadata"]["labels"]["team"] == "data"
    assert tpl["metadata"]["labels"]["celeriac.dev/pool"] == "p"


def test_soft_shutdown_fits_inside_the_grace_period() -> None:
    s = spec(terminationGracePeriodSeconds=600)
    pod = render.render_deployment("p", "ns", "u", s, 1)["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert pod["terminationGracePeriodSeconds"] == 600
    assert env["CELERIAC_SOFT_SHUTDOWN_TIMEOUT"] == "540"


def _pod(s: CeleryWorkerPoolSpec) -> dict[str, Any]:
    return render.render_deployment("p", "ns", "u", s, 1)["spec"]["template"]  # type: ignore[no-any-return]


def test_the_rendered_pod_meets_the_restricted_pod_security_profile() -> None:
    pod = _pod(spec())["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["containers"][0]["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    for forbidden in ("hostNetwork", "hostPID", "hostIPC", "nodeName"):
        assert forbidden not in pod


def test_a_pod_template_cannot_loosen_the_security_context_or_the_selector() -> None:
    override = {
        "metadata": {"labels": {"celeriac.dev/pool": "someone-else"}},
        "spec": {
            "securityContext": {"runAsUser": 1000},
            "containers": [
                {"name": "worker", "securityContext": {"readOnlyRootFilesystem": True}},
                {"name": "sidecar", "image": "busybox"},
            ],
        },
    }
    pod = _pod(spec(template={"image": "i", "app": "a", "podTemplate": override}))
    assert pod["metadata"]["labels"]["celeriac.dev/pool"] == "p"
    assert pod["spec"]["securityContext"]["runAsUser"] == 1000
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    worker, sidecar = pod["spec"]["containers"]
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    for container in (worker, sidecar):
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize(
    "override",
    [
        {"spec": {"hostPID": True}},
        {"spec": {"hostNetwork": True}},
        {"spec": {"hostIPC": True}},
        {"spec": {"nodeName": "control-plane-1"}},
        {"spec": {"serviceAccountName": "cluster-admin-sa"}},
        {"spec": {"runtimeClassName": "unsandboxed"}},
        {"spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}},
        {"spec": {"containers": [{"name": "worker", "securityContext": {"privileged": True}}]}},
        {"spec": {"containers": [{"name": "w", "securityContext": {"runAsUser": 0}}]}},
        {
            "spec": {
                "containers": [
                    {"name": "worker", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}
                ]
            }
        },
        {
            "spec": {
                "containers": [{"name": "worker", "ports": [{"containerPort": 1, "hostPort": 80}]}]
            }
        },
        {
            "spec": {
                "containers": [
                    {
                        "name": "w",
                        "volumeMounts": [
                            {"name": "v", "mountPath": "/x", "mountPropagation": "Bidirectional"}
                        ],
                    }
                ]
            }
        },
        {"spec": {"securityContext": {"runAsUser": 0}}},
        {"spec": {"securityContext": {"sysctls": [{"name": "kernel.x", "value": "1"}]}}},
        {"unknownTopLevel": {}},
    ],
)
def test_a_pod_template_asking_for_host_access_is_refused(override: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        spec(template={"image": "i", "app": "a", "podTemplate": override})


def test_queues_times_priority_steps_are_bounded() -> None:
    with pytest.raises(ValidationError, match="256 Redis lists"):
        spec(
            queues=[f"q{i}" for i in range(32)],
            broker={
                "urlSecretRef": {"name": "b"},
                "transport": {"prioritySteps": list(range(9))},
            },
        )
    assert len(spec(queues=[f"q{i}" for i in range(32)]).queues) == 32


def test_transport_options_reach_the_workers() -> None:
    s = spec(
        broker={
            "urlSecretRef": {"name": "b"},
            "transport": {
                "masterName": "mymaster",
                "visibilityTimeoutSeconds": 7200,
                "prioritySteps": [0, 5],
                "sep": ":",
            },
        }
    )
    env = {e["name"]: e.get("value") for e in _pod(s)["spec"]["containers"][0]["env"]}
    assert env["CELERIAC_SENTINEL_MASTER"] == "mymaster"
    assert env["CELERIAC_VISIBILITY_TIMEOUT"] == "7200"
    assert env["CELERIAC_PRIORITY_STEPS"] == "0,5"
    assert env["CELERIAC_PRIORITY_SEP"] == ":"
