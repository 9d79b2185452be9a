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
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celeriac_dev.controlplane import ControlPlane, ControlPlaneError, find_binaries
from celeriac_dev.kubelet import placement

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "celeriac"
NAMESPACE = "celeriac-demo"
POOL = "demo"


@dataclass
class Sample:
    t: float
    backlog: int | None
    desired: int | None
    ready: int | None
    pods: int
    pod_range: str | None
    reason: str | None


@dataclass
class DemoRun:
    cluster: ControlPlane
    broker_url: str
    out_dir: Path
    samples: list[Sample] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise ControlPlaneError("redis-server is not installed: `make setup` installs it")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)],
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


def install_operator(cluster: ControlPlane) -> None:
    where = placement()
    values = {
        "watchNamespaces": [NAMESPACE],
        "nodeSelector": where["nodeSelector"],
        "tolerations": where["tolerations"],
        # Every pod on the process node shares the host's ports.
        "ports": {"metrics": _free_port(), "health": _free_port()},
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(values, f)
    helm(
        cluster,
        "install",
        "celeriac",
        str(CHART),
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


def wait_pool_ready(cluster: ControlPlane, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        s = sample(cluster, 0.0)
        if s.ready and s.ready >= 1 and s.backlog is not None:
            return
        time.sleep(1)
    raise ControlPlaneError(f"the pool had no ready worker within {timeout_s:.0f} s")


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


def show(s: Sample) -> None:
    print(
        f"t={s.t:6.1f}s  backlog={s.backlog if s.backlog is not None else '?':>5}  "
        f"desired={s.desired if s.desired is not None else '?':>2}  ready={s.ready if s.ready is not None else '?':>2}  "
        f"pods={s.pods:>2}  range={s.pod_range or '?':>5}  {s.reason or ''}",
        flush=True,
    )


def plot(samples: list[Sample], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in samples]
    fig, ax1 = plt.subplots(figsize=(9, 4.5))
    ax1.plot(t, [s.backlog or 0 for s in samples], color="tab:red", label="backlog (tasks)")
    ax1.set_xlabel("seconds since burst")
    ax1.set_ylabel("backlog (tasks)", color="tab:red")
    ax2 = ax1.twinx()
    ax2.step(
        t,
        [s.desired or 0 for s in samples],
        where="post",
        color="tab:blue",
        label="desired replicas",
    )
    ax2.step(
        t,
        [s.pods for s in samples],
        where="post",
        color="tab:green",
        linestyle="--",
        label="worker pods",
    )
    ax2.set_ylabel("replicas")
    fig.legend(loc="upper right")
    ax1.set_title("celeriac demo: a burst of tasks, backlog and worker pods")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(args: argparse.Namespace) -> int:
    out_dir: Path = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    state = out_dir / "cluster"
    redis_port, api_port = _free_port(), _free_port()
    started = time.monotonic()
    print("== starting the local control plane with a process node", flush=True)
    cluster = ControlPlane(state_dir=state)
    redis_proc: subprocess.Popen[bytes] | None = None
    try:
        cluster.start()
        cluster.start_process_kubelet()
        redis_proc = start_redis(redis_port, out_dir)
        broker_url = f"redis://127.0.0.1:{redis_port}/0"
        print(
            f"   up in {time.monotonic() - started:.1f} s; KUBECONFIG={cluster.kubeconfig}",
            flush=True,
        )
        cluster.kubectl("create", "namespace", NAMESPACE)
        print(
            "== helm install celeriac (operator runs as a pod with the chart's ServiceAccount)",
            flush=True,
        )
        install_operator(cluster)
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
        api = f"http://127.0.0.1:{api_port}"
        wait_http(f"{api}/healthz", 60)
        print("== waiting for the operator to bring the pool up (first worker ready)", flush=True)
        wait_pool_ready(cluster, 180)
        burst = args.tasks
        print(f"== sending a burst of {burst} tasks through {api}", flush=True)
        t0 = time.monotonic()
        for i in range(burst):
            post_json(f"{api}/tasks/report", {"pages": 1, "depth": 40, "seed": i})
        samples: list[Sample] = []
        while time.monotonic() - t0 < args.duration:
            s = sample(cluster, time.monotonic() - t0)
            samples.append(s)
            show(s)
            if s.backlog == 0 and s.desired == 1 and s.pods == 1 and s.t > 20:
                break
            time.sleep(1)
        png = out_dir / "demo.png"
        plot(samples, png)
        peak = max((s.desired or 0) for s in samples) if samples else 0
        drained = next((s.t for s in samples if s.backlog == 0 and s.t > 1), None)
        print("== summary", flush=True)
        print(
            f"   tasks sent: {burst}; peak desired replicas: {peak}; backlog drained after: "
            f"{f'{drained:.0f} s' if drained is not None else 'not within the run'}",
            flush=True,
        )
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
        return 0
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
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
        "--out-dir", type=Path, default=Path(".demo"), help="logs, kubeconfig and the plot"
    )
    parser.add_argument("--keep", action="store_true", help="leave the cluster running afterwards")
    parser.set_defaults(func=run)
