"""The apiserver refuses malformed pools with a message that names the field."""

from __future__ import annotations

import copy
import json
import subprocess
from typing import Any

import pytest

from celeriac_dev.controlplane import ControlPlane

VALID: dict[str, Any] = {
    "apiVersion": "celeriac.dev/v1alpha1",
    "kind": "CeleryWorkerPool",
    "metadata": {"name": "p"},
    "spec": {
        "queues": ["celery"],
        "template": {"image": "example/worker:1", "app": "proj.celery_app"},
        "broker": {"urlSecretRef": {"name": "broker"}},
    },
}


def with_spec(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    node = doc["spec"]
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is DELETE:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    return doc


DELETE = object()

CASES = [
    (
        "min-above-max",
        with_spec("scaling", {"minReplicas": 5, "maxReplicas": 2}),
        "scaling.minReplicas must be <= scaling.maxReplicas",
    ),
    (
        "negative-min",
        with_spec("scaling.minReplicas", -1),
        "spec.scaling.minReplicas: Invalid value: -1",
    ),
    ("negative-replicas", with_spec("replicas", -3), "spec.replicas: Invalid value: -3"),
    ("replicas-above-max", with_spec("replicas", 50), "replicas must be <= scaling.maxReplicas"),
    (
        "unknown-field",
        with_spec("scaling.maxReplica", 3),
        'unknown field "spec.scaling.maxReplica"',
    ),
    ("missing-queues", with_spec("queues", DELETE), "spec.queues: Required value"),
    ("empty-queues", with_spec("queues", []), "spec.queues: Invalid value: 0"),
    ("duplicate-queues", with_spec("queues", ["a", "a"]), 'spec.queues[1]: Duplicate value: "a"'),
    ("queue-with-separator", with_spec("queues", ["bad\u0006\u0016queue"]), "spec.queues[0]"),
    (
        "concurrency-min-above-max",
        with_spec("worker.concurrency", {"min": 8, "max": 2}),
        "worker.concurrency.min must be <= worker.concurrency.max",
    ),
    (
        "threads-pool",
        with_spec("worker.pool", "threads"),
        'spec.worker.pool: Unsupported value: "threads"',
    ),
    (
        "string-for-int",
        with_spec("scaling.maxReplicas", "ten"),
        'spec.scaling.maxReplicas: Invalid value: "string"',
    ),
    (
        "huge-max-replicas",
        with_spec("scaling.maxReplicas", 10**9),
        "spec.scaling.maxReplicas: Invalid value: 1000000000",
    ),
    (
        "zero-wait-target",
        with_spec("scaling.targetQueueWaitSeconds", 0),
        "spec.scaling.targetQueueWaitSeconds: Invalid value: 0",
    ),
    (
        "negative-window",
        with_spec("scaling.behavior", {"scaleDown": {"stabilizationWindowSeconds": -5}}),
        "stabilizationWindowSeconds: Invalid value: -5",
    ),
    ("missing-secret-ref", with_spec("broker", {}), "spec.broker.urlSecretRef: Required value"),
    (
        "inline-password-field",
        with_spec("broker.url", "redis://:pw@host"),
        'unknown field "spec.broker.url"',
    ),
    ("bad-app-name", with_spec("template.app", "proj; rm -rf /"), "spec.template.app"),
    (
        "bad-cpu-quantity",
        with_spec("template.resources", {"limits": {"cpu": "lots"}}),
        "spec.template.resources.limits.cpu",
    ),
    (
        "bad-log-level",
        with_spec("worker.logLevel", "LOUD"),
        'spec.worker.logLevel: Unsupported value: "LOUD"',
    ),
    (
        "name-too-long-for-its-labels",
        {**VALID, "metadata": {"name": "p" * 56}},
        "metadata.name must be at most 55 characters",
    ),
]


@pytest.mark.parametrize(("case", "manifest", "message"), CASES, ids=[c[0] for c in CASES])
def test_malformed_pool_is_rejected_with_a_readable_message(
    crd_installed: ControlPlane, namespace: str, case: str, manifest: dict[str, Any], message: str
) -> None:
    result = subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(crd_installed.kubeconfig),
            "-n",
            namespace,
            "apply",
            "-f",
            "-",
        ],
        input=json.dumps(manifest),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0, f"{case} was accepted"
    assert message in result.stderr, result.stderr


def test_the_valid_pool_is_accepted_and_defaulted(
    crd_installed: ControlPlane, namespace: str
) -> None:
    crd_installed.kubectl("-n", namespace, "apply", "-f", "-", input_text=json.dumps(VALID))
    got = json.loads(crd_installed.kubectl("-n", namespace, "get", "cwp", "p", "-o", "json"))
    spec = got["spec"]
    assert spec["scaling"]["minReplicas"] == 1
    assert spec["scaling"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 60
    assert spec["worker"]["concurrency"] == {"min": 1, "max": 4}
    assert spec["broker"]["urlSecretRef"]["key"] == "url"
    assert spec["broker"]["transport"]["prioritySteps"] == [0, 3, 6, 9]
