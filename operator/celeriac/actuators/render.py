"""Renders a pool's worker Deployment as a plain dict: no I/O, testable without a cluster."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from celeriac.api import pool as api
from celeriac.api.pool import CeleryWorkerPoolSpec

POOL_LABEL = "celeriac.dev/pool"
# The field manager of every write: who owns spec.replicas tells a hand edit from our own.
FIELD_MANAGER = "celeriac"
RANGE_ANNOTATION = "celeriac.dev/autoscale-range"
# On a pod whose worker was told to stop consuming because the pod is leaving.
DRAINING = "celeriac.dev/draining"
# On the Deployment: the hash of the body last applied, so an unchanged pool costs no write.
TEMPLATE_HASH = "celeriac.dev/applied-hash"
PODINFO_DIR = "/etc/celeriac/podinfo"
RANGE_FILE = f"{PODINFO_DIR}/autoscale-range"
CONTAINER_NAME = "worker"


def selector_labels(pool_name: str) -> dict[str, str]:
    return {POOL_LABEL: pool_name}


def selector_string(pool_name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(pool_name).items())


def deployment_name(pool_name: str) -> str:
    return f"{pool_name}-workers"


def celery_args(spec: CeleryWorkerPoolSpec) -> list[str]:
    worker = spec.worker
    args = [
        "-A",
        spec.require_template().app,
        "worker",
        f"--queues={','.join(spec.queues)}",
        f"--pool={worker.pool.value}",
        f"--autoscale={worker.concurrency.max},{worker.concurrency.min}",
        f"--prefetch-multiplier={worker.prefetch_multiplier}",
        f"--loglevel={worker.log_level.value}",
        # $(POD_NAME) is expanded by the kubelet; the operator addresses workers by this name.
        "--hostname=celery@$(POD_NAME)",
    ]
    if worker.max_tasks_per_child is not None:
        args.append(f"--max-tasks-per-child={worker.max_tasks_per_child}")
    if worker.max_memory_per_child_kib is not None:
        args.append(f"--max-memory-per-child={worker.max_memory_per_child_kib}")
    args.extend(worker.extra_args)
    return args


def _resources(spec: CeleryWorkerPoolSpec) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for kind in ("requests", "limits"):
        values = getattr(spec.require_template().resources, kind).model_dump(exclude_none=True)
        if values:
            out[kind] = values
    return out


def _env(pool_id: str, spec: CeleryWorkerPoolSpec, grace_s: int) -> list[dict[str, Any]]:
    ref = spec.broker.url_secret_ref
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": "CELERY_BROKER_URL",
            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
        },
        {"name": "CELERIAC_POOL", "value": pool_id},
        {"name": "CELERIAC_RANGE_FILE", "value": RANGE_FILE},
        {"name": "CELERIAC_GLOBAL_KEYPREFIX", "value": spec.broker.transport.global_keyprefix},
        {
            "name": "CELERIAC_TARGET_CPU_PERCENT",
            "value": str(spec.scaling.target_cpu_utilization_percent),
        },
        {
            # Warm shutdown must end before the kubelet's SIGKILL: leave 10 % for teardown.
            "name": "CELERIAC_SOFT_SHUTDOWN_TIMEOUT",
            "value": str(max(1, int(grace_s * 0.9))),
        },
    ]
    transport = spec.broker.transport
    # The worker's Celery app and load reporter need the same transport options the
    # operator reads with (issue #14, 8): without them a sentinel:// worker cannot start.
    env.extend(
        [
            {
                "name": "CELERIAC_VISIBILITY_TIMEOUT",
                "value": str(transport.visibility_timeout_seconds),
            },
            {
                "name": "CELERIAC_PRIORITY_STEPS",
                "value": ",".join(map(str, transport.priority_steps)),
            },
            {"name": "CELERIAC_PRIORITY_SEP", "value": transport.sep},
        ]
    )
    if transport.master_name:
        env.append({"name": "CELERIAC_SENTINEL_MASTER", "value": transport.master_name})
    for var in spec.require_template().env:
        env.append(var.model_dump(by_alias=True, exclude_none=True))
    return env


def merge_pod_template(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `override` into `base`; lists of named items (containers, volumes) merge by name."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        current = out.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            out[key] = merge_pod_template(current, value)
        elif (
            isinstance(current, list)
            and isinstance(value, list)
            and all(isinstance(i, dict) and "name" in i for i in current + value)
        ):
            by_name = {item["name"]: item for item in current}
            for item in value:
                by_name[item["name"]] = merge_pod_template(by_name.get(item["name"], {}), item)
            out[key] = list(by_name.values())
        else:
            out[key] = copy.deepcopy(value)
    return out


# The worker reads its last applied --autoscale range from here after a restart.
PODINFO_VOLUME: dict[str, Any] = {
    "name": "podinfo",
    "downwardAPI": {
        "items": [
            {
                "path": "autoscale-range",
                "fieldRef": {"fieldPath": f"metadata.annotations['{RANGE_ANNOTATION}']"},
            }
        ]
    },
}


def render_pod_template(
    pool_name: str, namespace: str, spec: CeleryWorkerPoolSpec
) -> dict[str, Any]:
    template = spec.require_template()
    grace = spec.termination_grace_period_seconds
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": template.image,
        "imagePullPolicy": template.image_pull_policy,
        "args": celery_args(spec),
        "env": _env(f"{namespace}/{pool_name}", spec, grace),
        "volumeMounts": [{"name": "podinfo", "mountPath": PODINFO_DIR, "readOnly": True}],
    }
    container["command"] = template.command if template.command is not None else ["celery"]
    resources = _resources(spec)
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": grace,
        "volumes": [copy.deepcopy(PODINFO_VOLUME)],
    }
    if template.node_selector:
        pod_spec["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        pod_spec["tolerations"] = copy.deepcopy(template.tolerations)
    if template.service_account_name:
        pod_spec["serviceAccountName"] = template.service_account_name
    rendered: dict[str, Any] = {
        "metadata": {
            "labels": {
                **selector_labels(pool_name),
                "app.kubernetes.io/name": "celery-worker",
                "app.kubernetes.io/instance": pool_name,
                "app.kubernetes.io/managed-by": "celeriac",
            },
            "annotations": {
                RANGE_ANNOTATION: f"{spec.worker.concurrency.min}-{spec.worker.concurrency.max}"
            },
        },
        "spec": pod_spec,
    }
    if template.pod_template:
        override = template.pod_template.model_dump(by_alias=True, exclude_none=True)
        rendered = merge_pod_template(rendered, override)
    # Last, whatever the template said: the selector must match, and the pod must meet the
    # restricted Pod Security profile (issue #14, 2).
    rendered["metadata"]["labels"].update(selector_labels(pool_name))
    return restricted(rendered)


# https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted
RESTRICTED_POD = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {
    **RESTRICTED_POD,
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
}


def restricted(pod_template: dict[str, Any]) -> dict[str, Any]:
    """`pod_template` with the restricted profile's security context on the pod and each container."""
    out = copy.deepcopy(pod_template)
    spec = out["spec"]
    spec["securityContext"] = {**spec.get("securityContext", {}), **RESTRICTED_POD}
    for kind in ("containers", "initContainers"):
        for container in spec.get(kind, []):
            context = {**container.get("securityContext", {}), **RESTRICTED_CONTAINER}
            container["securityContext"] = copy.deepcopy(context)
    return out


def render_deployment(
    pool_name: str,
    namespace: str,
    owner_uid: str,
    spec: CeleryWorkerPoolSpec,
    replicas: int,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": deployment_name(pool_name),
            "namespace": namespace,
            "labels": {
                **selector_labels(pool_name),
                "app.kubernetes.io/managed-by": "celeriac",
            },
            "ownerReferences": [
                {
                    "apiVersion": f"{api.GROUP}/{api.VERSION}",
                    "kind": api.KIND,
                    "name": pool_name,
                    "uid": owner_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(pool_name)},
            # New pods first, then warm shutdown of old ones: a rollout never drops capacity.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": render_pod_template(pool_name, namespace, spec),
        },
    }


def body_hash(body: dict[str, Any]) -> str:
    """Hash of everything celeriac renders except the replica count, which moves alone."""
    unscaled = copy.deepcopy(body)
    unscaled["spec"].pop("replicas", None)
    annotations = unscaled["metadata"].pop("annotations", {})
    annotations.pop(TEMPLATE_HASH, None)
    if annotations:
        unscaled["metadata"]["annotations"] = annotations
    digest = hashlib.sha256(json.dumps(unscaled, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def stamped(body: dict[str, Any]) -> dict[str, Any]:
    """The body with its own hash in the TEMPLATE_HASH annotation."""
    out = copy.deepcopy(body)
    out["metadata"].setdefault("annotations", {})[TEMPLATE_HASH] = body_hash(body)
    return out
