"""`celeriac-dev demo`: the whole loop on a local control plane, shown live.

Brings up the local control plane with a process node (pods run as host processes),
a redis-server as the broker, installs the Helm chart (the operator runs as a pod, with
the chart's ServiceAccount), runs the reference worker API as a pod, applies a sample
pool, sends a burst of tasks through the API and prints backlog, replicas and per-pod
ranges every second. Ends with a summary and a PNG plot of backlog and replicas.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from celeriac.actuators.render import deployment_name
from celeriac.policy.model import PolicyMemory
from celeriac_dev.controlplane import ControlPlane, ControlPlaneError, find_binaries, free_port
from celeriac_dev.demo_report import (
    Recording,
    ReplicaChange,
    Sample,
    keda_outcome,
    measured_outcome,
    plot,
    summary_lines,
)
from celeriac_dev.kubelet import placement

NAMESPACE = "celeriac-demo"
POOL = "demo"


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ControlPlaneError("redis-server is not installed: `make setup` installs it")
    proc = subprocess.Popen(
        # Keyspace events on, as a broker owner would set them: the operator does not by default.
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(workdir),
            "--notify-keyspace-events",
            "Kl",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise ControlPlaneError(f"redis-server did not listen on {port}")


def helm(cluster: ControlPlane, *args: str) -> str:
    result = subprocess.run(
        [str(find_binaries() / "helm"), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if result.returncode != 0:
        raise ControlPlaneError(f"helm {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def install_operator(cluster: ControlPlane, chart: Path) -> None:
    where = placement()
    values = {
        "watchNamespaces": [NAMESPACE],
        "nodeSelector": where["nodeSelector"],
        "tolerations": where["tolerations"],
        # Every pod on the process node shares the host's ports.
        "ports": {"metrics": free_port(), "health": free_port()},
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(values, f)
    helm(
        cluster,
        "install",
        "celeriac",
        str(chart),
        "-n",
        "celeriac-system",
        "--create-namespace",
        "-f",
        f.name,
        "--wait=false",
    )


def apply(cluster: ControlPlane, doc: dict[str, Any]) -> None:
    cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-", input_text=json.dumps(doc))


def deploy_api(cluster: ControlPlane, port: int) -> None:
    where = placement()
    apply(
        cluster,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "task-api"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "task-api"}},
                "template": {
                    "metadata": {"labels": {"app": "task-api"}},
                    "spec": {
                        **where,
                        "containers": [
                            {
                                "name": "api",
                                "image": "ghcr.io/celeriac/worker:0.1.0",
                                "command": [
                                    "uvicorn",
                                    "celeriac_worker.api:app",
                                    "--host",
                                    "127.0.0.1",
                                    "--port",
                                    str(port),
                                ],
                                "env": [
                                    {
                                        "name": "CELERY_BROKER_URL",
                                        "valueFrom": {
                                            "secretKeyRef": {"name": "demo-broker", "key": "url"}
                                        },
                                    },
                                ],
                            }
                        ],
                    },
                },
            },
        },
    )


def pool_manifest(worker_metrics: bool = False) -> dict[str, Any]:
    where = placement()
    return {
        "apiVersion": "celeriac.dev/v1alpha1",
        "kind": "CeleryWorkerPool",
        "metadata": {"name": POOL},
        "spec": {
            "queues": ["celery", "emails", "reports"],
            "template": {
                "image": "ghcr.io/celeriac/worker:0.1.0",
                "app": "celeriac_worker.celery_app",
                "nodeSelector": where["nodeSelector"],
                "tolerations": where["tolerations"],
            },
            "worker": {"concurrency": {"min": 1, "max": 3}, "prefetchMultiplier": 1},
            "broker": {"urlSecretRef": {"name": "demo-broker", "key": "url"}},
            "scaling": {
                "minReplicas": 1,
                "maxReplicas": 6,
                "targetQueueWaitSeconds": 5,
                "pollingIntervalSeconds": 1,
                "behavior": {
                    "scaleDown": {
                        "stabilizationWindowSeconds": 15,
                        "policies": [{"type": "Percent", "value": 50, "periodSeconds": 10}],
                    }
                },
            },
            "terminationGracePeriodSeconds": 30,
        },
    }


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 - loopback only
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        result: dict[str, Any] = json.loads(response.read())
        return result


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback only
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise ControlPlaneError(f"{url} did not answer within {timeout_s:.0f} s")


def sample(cluster: ControlPlane, t: float) -> Sample:
    pool = json.loads(cluster.kubectl("-n", NAMESPACE, "get", "cwp", POOL, "-o", "json"))
    status = pool.get("status", {})
    pods = json.loads(
        cluster.kubectl(
            "-n", NAMESPACE, "get", "pods", "-l", f"celeriac.dev/pool={POOL}", "-o", "json"
        )
    )["items"]
    return Sample(
        t=t,
        backlog=status.get("backlog"),
        desired=status.get("desiredReplicas"),
        ready=status.get("readyReplicas"),
        pods=sum(1 for p in pods if not p["metadata"].get("deletionTimestamp")),
        pod_range=status.get("podRange"),
        reason=status.get("reason"),
    )


def wait_pool_ready(cluster: ControlPlane, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        s = sample(cluster, 0.0)
        if s.ready and s.ready >= 1 and s.backlog is not None:
            return
        time.sleep(1)
    raise ControlPlaneError(f"the pool had no ready worker within {timeout_s:.0f} s")


def show(s: Sample) -> None:
    def num(value: int | None, width: int) -> str:
        return ("?" if value is None else str(value)).rjust(width)

    print(
        f"t={s.t:6.1f}s  backlog={num(s.backlog, 5)}  desired={num(s.desired, 2)}  "
        f"ready={num(s.ready, 2)}  pods={s.pods:>2}  range={s.pod_range or '?':>5}  "
        f"{s.reason or ''}",
        flush=True,
    )


class DeploymentWatch(threading.Thread):
    """Records every change of the worker Deployment's spec and ready replicas, with the
    monotonic time it arrived: the summary's reaction times come from here, not from the
    once-a-second table."""

    def __init__(self, cluster: ControlPlane) -> None:
        super().__init__(daemon=True)
        self.api = cluster.api_client()
        self.seen: list[tuple[float, int, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        from kubernetes import client, watch

        apps = client.AppsV1Api(self.api)
        while not self.stopping.is_set():
            try:
                for event in watch.Watch().stream(
                    apps.list_namespaced_deployment,
                    NAMESPACE,
                    field_selector=f"metadata.name={deployment_name(POOL)}",
                    timeout_seconds=5,
                ):
                    deployment = event["object"]
                    spec = deployment.spec.replicas or 0
                    ready = deployment.status.ready_replicas or 0
                    if not self.seen or self.seen[-1][1:] != (spec, ready):
                        self.seen.append((time.monotonic(), spec, ready))
                    if self.stopping.is_set():
                        return
            except Exception as exc:  # noqa: BLE001 - a dropped watch is retried; the demo goes on
                print(f"   (deployment watch: {exc!r}; retrying)", file=sys.stderr)
                time.sleep(0.5)

    def changes(self, t0: float) -> list[ReplicaChange]:
        return [ReplicaChange(t - t0, spec, ready) for t, spec, ready in self.seen]


def learned_by_operator(cluster: ControlPlane, recording: Recording) -> None:
    """The service time and pod start-up the operator measured, from the pool's status."""
    pool = json.loads(cluster.kubectl("-n", NAMESPACE, "get", "cwp", POOL, "-o", "json"))
    memory = PolicyMemory.model_validate(pool.get("status", {}).get("policyMemory") or {})
    recording.service_s = memory.service_s
    recording.startup_s = memory.startup_s


def send_burst(api: str, tasks: int, recording: Recording, t0: float) -> None:
    for _ in range(tasks):
        # 2 s of waiting on I/O each: one pod of 3 processes would need over 2 minutes for
        # the burst, and the 2-core machine is not the limit (a CPU-bound burst would be).
        post_json(f"{api}/tasks/long", {"steps": 2, "step_seconds": 1.0})
        recording.arrivals_s.append(time.monotonic() - t0)


def watch_pool(cluster: ControlPlane, args: argparse.Namespace, recording: Recording) -> float:
    """Samples the pool once a second from `baseline` seconds before the burst until it is
    back at one pod with nothing waiting, or the run's time is up. Returns the burst's
    start on the monotonic clock."""
    api = args.api
    t0 = time.monotonic() + float(args.baseline)
    while time.monotonic() < t0:
        s = sample(cluster, time.monotonic() - t0)
        recording.samples.append(s)
        show(s)
        time.sleep(1)
    print(f"== sending a burst of {args.tasks} tasks (2 s of I/O each) through {api}", flush=True)
    sender = threading.Thread(target=send_burst, args=(api, args.tasks, recording, t0), daemon=True)
    sender.start()
    while time.monotonic() - t0 < args.duration:
        s = sample(cluster, time.monotonic() - t0)
        recording.samples.append(s)
        show(s)
        settled = s.backlog == 0 and s.desired == 1 and s.pods == 1 and s.t > 20
        if settled and not sender.is_alive():
            break
        time.sleep(1)
    sender.join(timeout=30)
    return t0


def report(cluster: ControlPlane, args: argparse.Namespace, recording: Recording) -> int:
    """Prints the summary and writes the plot; 1 if the loop did not close (no scale-up,
    or the backlog not drained), so CI fails on a demo that shows nothing."""
    learned_by_operator(cluster, recording)
    end = recording.samples[-1].t if recording.samples else 0.0
    keda = keda_outcome(recording, concurrency=3, max_replicas=6, end_s=end)
    measured = measured_outcome(recording, keda.horizon_s if keda else None)
    outcomes = [measured] + ([keda.outcome] if keda else [])
    png = args.out_dir / "demo.png"
    plot(recording, keda, png)
    print("== summary", flush=True)
    for line in summary_lines(recording, outcomes, args.tasks):
        print(f"   {line}", flush=True)
    print(f"   plot: {png}", flush=True)
    events = cluster.kubectl(
        "-n",
        NAMESPACE,
        "get",
        "events",
        "--field-selector",
        f"involvedObject.name={POOL}",
        "--sort-by=.lastTimestamp",
        check=False,
    )
    print(events, flush=True)
    if measured.peak_pods <= 1 or measured.drained_after_s is None:
        print(
            "error: the burst did not scale the pool up and drain within the run", file=sys.stderr
        )
        return 1
    return 0


def find_chart(given: Path | None) -> Path:
    chart = given or Path(os.environ.get("CELERIAC_CHART", "deploy/celeriac"))
    if not (chart / "Chart.yaml").is_file():
        raise ControlPlaneError(
            f"no Helm chart at {chart}: run from the repository root (`make demo`) "
            "or pass --chart PATH/TO/deploy/celeriac"
        )
    return chart.resolve()


def bring_up(
    cluster: ControlPlane, args: argparse.Namespace, workdir: Path
) -> subprocess.Popen[bytes]:
    """Control plane, process node, broker, operator, task API and the pool, in order."""
    started = time.monotonic()
    cluster.start()
    cluster.start_process_kubelet()
    redis_port, api_port = free_port(), free_port()
    redis_proc = start_redis(redis_port, workdir)
    broker_url = f"redis://127.0.0.1:{redis_port}/0"
    print(
        f"   up in {time.monotonic() - started:.1f} s; KUBECONFIG={cluster.kubeconfig}", flush=True
    )
    cluster.kubectl("create", "namespace", NAMESPACE)
    print(
        "== helm install celeriac (the operator runs as a pod with the chart's ServiceAccount)",
        flush=True,
    )
    install_operator(cluster, args.chart)
    cluster.kubectl(
        "-n",
        NAMESPACE,
        "create",
        "secret",
        "generic",
        "demo-broker",
        f"--from-literal=url={broker_url}",
    )
    print("== task API and a CeleryWorkerPool", flush=True)
    deploy_api(cluster, api_port)
    apply(cluster, pool_manifest())
    args.api = f"http://127.0.0.1:{api_port}"
    wait_http(f"{args.api}/healthz", 60)
    return redis_proc


def run(args: argparse.Namespace) -> int:
    args.out_dir = args.out_dir.resolve()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    print("== starting the local control plane with a process node", flush=True)
    redis_proc: subprocess.Popen[bytes] | None = None
    cluster: ControlPlane | None = None
    try:
        args.chart = find_chart(args.chart)
        cluster = ControlPlane(state_dir=args.out_dir / "cluster")
        redis_proc = bring_up(cluster, args, args.out_dir)
        print("== waiting for the operator to bring the pool up (first worker ready)", flush=True)
        wait_pool_ready(cluster, 180)
        recording = Recording()
        deployment = DeploymentWatch(cluster)
        deployment.start()
        t0 = watch_pool(cluster, args, recording)
        deployment.stopping.set()
        recording.changes = deployment.changes(t0)
        return report(cluster, args, recording)
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if cluster is not None and not args.keep:
            cluster.stop()
        if redis_proc is not None:
            redis_proc.terminate()


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run the end-to-end demo on a local control plane")
    parser.add_argument("--tasks", type=int, default=200, help="tasks in the burst (default 200)")
    parser.add_argument(
        "--duration", type=float, default=240, help="longest run in seconds (default 240)"
    )
    parser.add_argument(
        "--baseline", type=float, default=8, help="seconds shown before the burst (default 8)"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=Path(".demo"), help="logs, kubeconfig and the plot"
    )
    parser.add_argument(
        "--chart",
        type=Path,
        default=None,
        help="the Helm chart (default: $CELERIAC_CHART, else ./deploy/celeriac)",
    )
    parser.add_argument("--keep", action="store_true", help="leave the cluster running afterwards")
    parser.set_defaults(func=run)
