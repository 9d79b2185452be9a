"""Reaction time: from a burst of tasks landing in Redis to the worker Deployment patched.

Starts the local control plane, a redis-server and the operator (as its own process), then
for each of N fresh pools pushes a burst into the pool's queue and times until the
Deployment's replicas rise. Compare: KEDA reacts within its polling interval plus the HPA's
15 s sync (up to ~15 s from one replica, ~45 s from zero with defaults).
Results: bench/results/reaction.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from celery import Celery  # noqa: E402
from kubernetes import client, config  # noqa: E402
from tests.support.operator_process import OperatorProcess  # noqa: E402
from tests.support.redis_server import running_redis  # noqa: E402

from celeriac.api.crd import CRD_FILE  # noqa: E402
from celeriac_dev.controlplane import ControlPlane  # noqa: E402


def pool(name: str) -> dict[str, object]:
    return {
        "apiVersion": "celeriac.dev/v1alpha1",
        "kind": "CeleryWorkerPool",
        "metadata": {"name": name},
        "spec": {
            "queues": [name],
            "template": {"image": "example/worker:1", "app": "proj.celery_app"},
            "broker": {"urlSecretRef": {"name": "broker"}},
            # The default 5 s polling interval: the wake-up on new work is what is measured.
            "scaling": {"minReplicas": 1, "maxReplicas": 10, "targetQueueWaitSeconds": 10},
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bursts", type=int, default=60)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "reaction.md")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="celeriac-bench-") as tmp,
        running_redis(extra_args=["--notify-keyspace-events", "Kl"]) as redis,
    ):
        cluster = ControlPlane(state_dir=Path(tmp) / "cp")
        cluster.start()
        operator = OperatorProcess(
            kubeconfig=cluster.kubeconfig, log_path=Path(tmp) / "operator.log"
        )
        try:
            cluster.kubectl("apply", "--server-side", "-f", str(ROOT / CRD_FILE))
            cluster.kubectl(
                "wait", "--for=condition=Established", "crd/celeryworkerpools.celeriac.dev"
            )
            cluster.kubectl("create", "namespace", "bench")
            cluster.kubectl(
                "-n",
                "bench",
                "create",
                "secret",
                "generic",
                "broker",
                f"--from-literal=url={redis.url}",
            )
            operator.start()
            apps = client.AppsV1Api(
                config.new_client_from_config(config_file=str(cluster.kubeconfig))
            )
            producer = Celery("bench", broker=redis.url)
            reactions = []
            for i in range(args.bursts):
                name = f"burst-{i}"
                cluster.kubectl(
                    "-n", "bench", "apply", "-f", "-", input_text=json.dumps(pool(name))
                )
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    try:
                        if (
                            apps.read_namespaced_deployment(
                                f"{name}-workers", "bench"
                            ).spec.replicas
                            == 1
                        ):
                            break
                    except client.ApiException:
                        pass
                    time.sleep(0.1)
                time.sleep(1.5)  # the pool's daemon is idle, between ticks, as in production
                with producer.connection_for_write() as conn:
                    started = time.monotonic()
                    for t in range(args.tasks):
                        producer.send_task("proj.work", args=[t], queue=name, connection=conn)
                while (
                    apps.read_namespaced_deployment(f"{name}-workers", "bench").spec.replicas <= 1
                ):
                    if time.monotonic() - started > 60:
                        raise SystemExit(
                            f"no reaction within 60 s; operator log:\n{operator.log_tail()}"
                        )
                    time.sleep(0.02)
                reactions.append(time.monotonic() - started)
                print(f"burst {i + 1}: {reactions[-1]:.2f} s", flush=True)
                cluster.kubectl("-n", "bench", "delete", "cwp", name, "--wait=false")
        finally:
            operator.stop()
            cluster.stop()
    reactions.sort()
    # Nearest rank; with fewer than 20 samples the p95 would be the max, so it is not shown.
    p95 = reactions[math.ceil(0.95 * len(reactions)) - 1] if len(reactions) >= 20 else None
    load = os.getloadavg()[0]
    text = "\n".join(
        [
            "# Reaction time: burst in Redis -> worker Deployment patched",
            "",
            f"{args.bursts} bursts of {args.tasks} tasks, each into a fresh pool at 1 replica with the default",
            "5 s polling interval (so the keyspace-notification wake-up is what reacts); local control plane,",
            "operator as its own process, on the 2-core development machine (1-minute load average",
            f"{load:.1f} at the end: other work shared the cores); `python bench/bench_reaction.py`.",
            "",
            "| measure | seconds |",
            "| --- | --- |",
            f"| median | {statistics.median(reactions):.2f} |",
            f"| p95 | {p95:.2f} |" if p95 is not None else "| p95 | (fewer than 20 bursts) |",
            f"| max | {reactions[-1]:.2f} |",
            "",
            "KEDA with defaults: up to its 30 s polling interval from zero, and the HPA's 15 s sync from one",
            "replica on.",
            "",
        ]
    )
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
