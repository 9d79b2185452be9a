"""The process kubelet: pods on its node run as local processes, like a kubelet would run them."""

from __future__ import annotations

import json
from pathlib import Path

from celeriac_dev.controlplane import ControlPlane
from celeriac_dev.kubelet import ProcessKubelet, placement
from tests.support.waiting import wait_for

SCRIPT = """
import os, signal, sys, time
out = os.environ["OUT"]
open(out, "w").write(os.environ["POD_NAME"] + " " + os.environ["SECRET_VALUE"] + " " + open(os.environ["RANGE_FILE"]).read())
def bye(*_):
    open(out + ".term", "w").write("SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
while True:
    time.sleep(0.1)
"""


def test_pods_on_the_process_node_run_with_env_secrets_and_downward_api(
    cluster: ControlPlane, namespace: str, tmp_path: Path, process_kubelet: ProcessKubelet
) -> None:
    out = tmp_path / "out.txt"
    cluster.kubectl("-n", namespace, "create", "secret", "generic", "s", "--from-literal=k=hunter2")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p1", "annotations": {"celeriac.dev/autoscale-range": "2-5"}},
        "spec": {
            **placement(),
            "terminationGracePeriodSeconds": 10,
            "containers": [
                {
                    "name": "main",
                    "image": "ignored",
                    "command": ["python3", "-c", SCRIPT],
                    "env": [
                        {"name": "OUT", "value": str(out)},
                        {
                            "name": "POD_NAME",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                        },
                        {
                            "name": "SECRET_VALUE",
                            "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                        },
                        {"name": "RANGE_FILE", "value": "/etc/podinfo/range"},
                    ],
                    "volumeMounts": [{"name": "podinfo", "mountPath": "/etc/podinfo"}],
                }
            ],
            "volumes": [
                {
                    "name": "podinfo",
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "range",
                                "fieldRef": {
                                    "fieldPath": "metadata.annotations['celeriac.dev/autoscale-range']"
                                },
                            }
                        ]
                    },
                }
            ],
        },
    }
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input_text=json.dumps(pod))
    wait_for("the process to write its file", lambda: out.exists() and out.read_text())
    assert out.read_text() == "p1 hunter2 2-5"

    def ready() -> bool:
        got = json.loads(cluster.kubectl("-n", namespace, "get", "pod", "p1", "-o", "json"))
        conds = {c["type"]: c["status"] for c in got["status"].get("conditions", [])}
        return got["status"].get("phase") == "Running" and conds.get("Ready") == "True"

    wait_for("pod Running and Ready", ready)

    cluster.kubectl("-n", namespace, "delete", "pod", "p1", "--wait=true", "--timeout=30s")
    assert (tmp_path / "out.txt.term").read_text() == "SIGTERM"
    assert process_kubelet.pid_of(namespace, "p1") is None
