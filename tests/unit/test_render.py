"""The worker Deployment a pool renders to."""

from __future__ import annotations

from typing import Any

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
