"""What the README promises, each in a form that fails when the behaviour is removed:

- the policy's memory survives an operator restart (a wiped memory visibly does not);
- a pool wakes on new work long before its polling interval (only the keyspace wake-up
  can explain the reaction), and a stream of pushes reconciles it no more often than the cap.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from celeriac_dev.controlplane import ControlPlane
from tests.cluster.test_operator_core import (
    apply,
    deployment_replicas,
    get,
    pool_manifest,
    pool_ns,  # noqa: F401 - fixture
    wait_for,
)
from tests.support import waiting
from tests.support.operator_process import OperatorProcess
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="module")
def operator(
    crd_installed: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(
        kubeconfig=crd_installed.kubeconfig,
        log_path=tmp_path_factory.mktemp("operator-claims") / "operator.log",
    )
    proc.start()
    yield proc
    proc.stop()


def push(broker: RedisServer, queue: str, tasks: int) -> None:
    app = Celery("producer", broker=broker.url)
    with app.connection_for_write() as conn:
        for i in range(tasks):
            app.send_task("proj.work", args=[i], queue=queue, connection=conn)


def held_pool(name: str) -> dict[str, Any]:
    """Quick to scale down once its memory is gone, slow (120 s window) while it has it."""
    return pool_manifest(
        name,
        queues=(name,),
        targetQueueWaitSeconds=5,
        behavior={
            "scaleDown": {
                "stabilizationWindowSeconds": 120,
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
            }
        },
    )


def test_the_stabilization_window_survives_a_restart_and_a_wiped_memory_does_not(
    crd_installed: ControlPlane,
    pool_ns: str,  # noqa: F811 - fixture
    broker: RedisServer,
    operator: OperatorProcess,
) -> None:
    for name in ("keeps", "wiped"):
        apply(crd_installed, pool_ns, held_pool(name))
    for name in ("keeps", "wiped"):
        # New work after the first tick: the policy sees it arrive.
        wait_for(
            f"{name}'s Deployment",
            lambda n=name: deployment_replicas(crd_installed, pool_ns, n) == 1,  # type: ignore[misc]
            operator,
        )
        push(broker, name, 60)

    def peaks() -> tuple[int, int] | None:
        got = [deployment_replicas(crd_installed, pool_ns, n) or 0 for n in ("keeps", "wiped")]
        return (got[0], got[1]) if min(got) > 1 else None

    def statuses() -> str:
        pools = [
            (get(crd_installed, pool_ns, "cwp", n) or {}).get("status") for n in ("keeps", "wiped")
        ]
        return f"{json.dumps(pools)}\n--- operator log ---\n{operator.log_tail()}"

    waiting.wait_for("both pools scaled up", peaks, 60, 0.25, statuses)
    broker.client().delete("keeps", "wiped")  # the load is gone
    time.sleep(3)  # a scale-up already under way lands
    peak_keeps, peak_wiped = peaks() or (0, 0)
    time.sleep(3)
    assert deployment_replicas(crd_installed, pool_ns, "keeps") == peak_keeps
    assert deployment_replicas(crd_installed, pool_ns, "wiped") == peak_wiped

    operator.stop()
    memory = (get(crd_installed, pool_ns, "cwp", "keeps") or {})["status"]["policyMemory"]
    assert memory["recommendations"], "the scale-up was written with its history"
    crd_installed.kubectl(
        "-n",
        pool_ns,
        "patch",
        "cwp",
        "wiped",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"policyMemory": None}}),
    )
    operator.start()

    wait_for(
        "the pool without memory to scale down",
        lambda: (deployment_replicas(crd_installed, pool_ns, "wiped") or 0) < peak_wiped,
        operator,
        60,
    )
    # Same spec, same load, same restart: only the remembered window holds this one.
    assert deployment_replicas(crd_installed, pool_ns, "keeps") == peak_keeps
    status = (get(crd_installed, pool_ns, "cwp", "keeps") or {})["status"]
    assert status["desiredReplicas"] == peak_keeps


def decisions(operator: OperatorProcess, namespace: str, pool: str) -> float:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5
    ) as response:
        body = response.read().decode()
    total = 0.0
    for line in body.splitlines():
        if (
            line.startswith("celeriac_decisions_total{")
            and f'pool="{pool}"' in line
            and (f'namespace="{namespace}"' in line)
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_new_work_wakes_a_pool_long_before_its_interval_and_no_faster_than_the_cap(
    crd_installed: ControlPlane,
    pool_ns: str,  # noqa: F811 - fixture
    broker: RedisServer,
    operator: OperatorProcess,
) -> None:
    # A 60 s interval: a reaction within 20 s can only come from the wake-up.
    apply(
        crd_installed,
        pool_ns,
        pool_manifest("sleepy", queues=("sleepy",), pollingIntervalSeconds=60),
    )
    wait_for(
        "the Deployment",
        lambda: deployment_replicas(crd_installed, pool_ns, "sleepy") == 1,
        operator,
    )
    wait_for("the first decision", lambda: decisions(operator, pool_ns, "sleepy") >= 1, operator)
    time.sleep(2)  # past the first tick's wake-up floor

    before = decisions(operator, pool_ns, "sleepy")
    started = time.monotonic()
    pushed = 0
    app = Celery("producer", broker=broker.url)
    with app.connection_for_write() as conn:
        while time.monotonic() - started < 6.0:
            app.send_task("proj.work", args=[pushed], queue="sleepy", connection=conn)
            pushed += 1
            time.sleep(0.1)
    wait_for(
        "scale-up from the wake-up",
        lambda: (deployment_replicas(crd_installed, pool_ns, "sleepy") or 0) > 1,
        operator,
        20,
    )
    elapsed = time.monotonic() - started
    woken = decisions(operator, pool_ns, "sleepy") - before
    assert pushed >= 30
    # At least a few wake-ups (polling alone would give none in 60 s) ...
    assert woken >= 3, f"{woken} reconciles in {elapsed:.1f} s"
    # ... and never more than one per min_reconcile_interval (1 s), plus the one in flight.
    assert woken <= elapsed / 1.0 + 2, f"{woken} reconciles in {elapsed:.1f} s"
