"""The operator at scale (issue #16): N pools on one replica, what it costs and how fast it reacts.

One local control plane (kwok fake nodes: pods are Running without processes), one
redis-server and the operator as its own process (`python -m celeriac run`), default 5 s
polling, 3 queues per pool. For each N (growing the same cluster: 100, then 500, ...):

1. create the pools up to N and wait until every pool's Deployment exists;
2. settle, then a steady window of idle pools: operator CPU and RSS and apiserver CPU from
   /proc; apiserver_request_total by verb before/after (`kubectl get --raw /metrics`),
   the operator's share split into reads and writes per pool per minute; reconcile p50/p95
   and tick lateness from the operator's histograms; ticks per pool per minute; Redis
   commands/s from INFO commandstats;
3. reaction: a burst into one pool (several times, one pool each), then into 50 pools at
   once, timed from the LPUSH to the Deployment's replicas rising (a Deployment watch).

At the end, SIGTERM to the operator with every pool present, timed to its exit.
Results: bench/results/scale.md (`python bench/bench_scale.py --pools 100 500 1000`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from bench import scale_probes as probes  # noqa: E402
from celery import Celery  # noqa: E402
from kubernetes import client, watch  # noqa: E402
from tests.support.operator_process import OperatorProcess  # noqa: E402
from tests.support.redis_server import RedisServer, running_redis  # noqa: E402

from celeriac.api.crd import CRD_FILE  # noqa: E402
from celeriac_dev.controlplane import FAKE_NODE_ANNOTATION, ControlPlane  # noqa: E402

NAMESPACE = "bench"
PODS_PER_NODE = 600


def pool(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "celeriac.dev/v1alpha1",
        "kind": "CeleryWorkerPool",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "queues": [f"{name}-a", f"{name}-b", f"{name}-c"],
            "template": {"image": "example/worker:1", "app": "proj.celery_app"},
            "broker": {"urlSecretRef": {"name": "broker"}},
            # Default polling (5 s); max 3 keeps the bursts' extra pods within the fake nodes.
            "scaling": {"minReplicas": 1, "maxReplicas": 3, "targetQueueWaitSeconds": 10},
        },
    }


def fake_node(name: str) -> dict[str, Any]:
    # Like ControlPlane's own fake node, with room for more pods (the scheduler counts them).
    room = {"cpu": "256", "memory": "1Ti", "pods": str(PODS_PER_NODE)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {FAKE_NODE_ANNOTATION: "fake"},
            "labels": {"kubernetes.io/hostname": name, "type": "kwok"},
        },
        "status": {"allocatable": room, "capacity": room},
    }


@dataclass
class Bench:
    cluster: ControlPlane
    redis_server: RedisServer
    operator: OperatorProcess
    apps: client.AppsV1Api
    custom: client.CustomObjectsApi
    producer: Celery
    pools: int = 0
    nodes: int = 1
    patched: dict[str, float] = field(default_factory=dict)  # deployment -> replicas rose at
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- set-up --------------------------------------------------------------

    def grow_to(self, n: int) -> float:
        started = time.monotonic()
        while self.nodes * PODS_PER_NODE < n + 200:
            node = json.dumps(fake_node(f"kwok-scale-{self.nodes}"))
            self.cluster.kubectl("apply", "-f", "-", input_text=node)
            self.nodes += 1

        def create(i: int) -> None:
            self.custom.create_namespaced_custom_object(
                "celeriac.dev", "v1alpha1", NAMESPACE, "celeryworkerpools", pool(f"p{i:04d}")
            )

        with ThreadPoolExecutor(4) as creators:
            list(creators.map(create, range(self.pools, n)))
        self.pools = n
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            have = self.deployments_at_one()
            if have >= n:
                return time.monotonic() - started
            print(f"  {have}/{n} Deployments", flush=True)
            time.sleep(5)
        raise SystemExit(f"only {self.deployments_at_one()}/{n} Deployments after 900 s")

    def wait_ready(self, timeout_s: float) -> float:
        """Until every Deployment reports its pods ready: the policy holds a pool whose pods
        are still starting, so a burst before that would time the controller-manager."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            raw = self.apps.list_namespaced_deployment(NAMESPACE, _preload_content=False)
            items = json.loads(raw.data)["items"]
            ready = sum(1 for d in items if (d.get("status") or {}).get("readyReplicas", 0) >= 1)
            if ready >= self.pools:
                break
            print(f"  {ready}/{self.pools} Deployments report a ready pod", flush=True)
            time.sleep(5)
        return time.monotonic() - started

    def deployments_at_one(self) -> int:
        raw = self.apps.list_namespaced_deployment(NAMESPACE, _preload_content=False)
        items = json.loads(raw.data)["items"]
        return sum(1 for d in items if d["spec"].get("replicas", 0) >= 1)

    def running_pods(self) -> int:
        out = self.cluster.kubectl(
            "-n", NAMESPACE, "get", "pods", "--field-selector=status.phase=Running", "-o", "name"
        )
        return len(out.split())

    # --- the steady window ---------------------------------------------------

    def steady_window(self, window_s: float) -> dict[str, Any]:
        op_pid = self.operator.proc.pid if self.operator.proc else 0
        api_pid = next(p.popen.pid for p in self.cluster.processes if p.name == "kube-apiserver")
        rc = self.redis_server.client()
        before = self.read(op_pid, api_pid, rc)
        time.sleep(window_s)
        after = self.read(op_pid, api_pid, rc)
        elapsed = after["t"] - before["t"]
        delta = after["requests"] - before["requests"]
        reads, writes = probes.split_reads_writes(delta)
        reconcile = after["hist"]["celeriac_reconcile_seconds"].minus(
            before["hist"]["celeriac_reconcile_seconds"]
        )
        late = after["hist"]["celeriac_tick_lateness_seconds"].minus(
            before["hist"]["celeriac_tick_lateness_seconds"]
        )
        per_pool_min = 60.0 / elapsed / self.pools
        redis_delta = after["redis"] - before["redis"]
        return {
            "pools": self.pools,
            "window_s": elapsed,
            "operator_cores": (after["op_cpu"] - before["op_cpu"]) / elapsed,
            "apiserver_cores": (after["api_cpu"] - before["api_cpu"]) / elapsed,
            "operator_rss_mb": after["op_rss"][0] / 2**20,
            "operator_peak_rss_mb": after["op_rss"][1] / 2**20,
            "api_requests_per_s": sum(delta.values()) / elapsed,
            "operator_reads_per_pool_min": reads * per_pool_min,
            "operator_writes_per_pool_min": writes * per_pool_min,
            "operator_requests_by_kind": {
                f"{k.verb} {k.resource}{'/' + k.subresource if k.subresource else ''}": n
                for k, n in delta.most_common()
                if n and probes.is_operators(k)
            },
            "reconcile_p50_s": reconcile.quantile(0.5),
            "reconcile_p95_s": reconcile.quantile(0.95),
            "ticks_per_pool_min": reconcile.count * per_pool_min,
            "lateness_p50_s": late.quantile(0.5),
            "lateness_p95_s": late.quantile(0.95),
            "lateness_max_bucket_s": _top_bucket(late),
            "redis_commands_per_s": sum(redis_delta.values()) / elapsed,
            "redis_top": dict(redis_delta.most_common(5)),
            "load_avg_1m": os.getloadavg()[0],
        }

    def read(self, op_pid: int, api_pid: int, rc: redis.Redis[bytes]) -> dict[str, Any]:
        return {
            "t": time.monotonic(),
            "op_cpu": probes.cpu_seconds(op_pid),
            "api_cpu": probes.cpu_seconds(api_pid),
            "op_rss": probes.rss_bytes(op_pid),
            "requests": probes.apiserver_requests(self.cluster.kubectl("get", "--raw", "/metrics")),
            "hist": probes.operator_histograms(self.operator.metrics_port),
            "redis": probes.redis_calls(rc),
        }

    # --- reaction ------------------------------------------------------------

    def watch_deployments(self, stop: threading.Event) -> None:
        """Records when each Deployment's replicas first rise above 1."""
        while not stop.is_set():
            listed = self.apps.list_namespaced_deployment(NAMESPACE, limit=1)
            w = watch.Watch()
            try:
                for event in w.stream(
                    self.apps.list_namespaced_deployment,
                    NAMESPACE,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=30,
                ):
                    obj = event["object"]
                    if (obj.spec.replicas or 0) > 1:
                        with self.lock:
                            self.patched.setdefault(obj.metadata.name, time.monotonic())
                    if stop.is_set():
                        break
            except client.ApiException:
                time.sleep(0.5)

    def burst(self, names: list[str], tasks: int) -> list[float]:
        """LPUSH `tasks` Celery messages into the first queue of each pool at once; the
        seconds until each pool's Deployment was patched above 1 replica."""
        rc = self.redis_server.client()
        scratch = "bench-template"
        self.producer.send_task("proj.work", args=[0], queue=scratch)
        message = rc.rpop(scratch)
        assert message is not None
        with self.lock:
            for name in names:
                self.patched.pop(f"{name}-workers", None)
        pipe = rc.pipeline(transaction=False)
        for name in names:
            pipe.lpush(f"{name}-a", *([message] * tasks))
        started = time.monotonic()
        pipe.execute()
        deadline = started + 90
        while time.monotonic() < deadline:
            with self.lock:
                done = [self.patched.get(f"{n}-workers") for n in names]
            if all(t is not None for t in done):
                break
            time.sleep(0.05)
        # Drained again, so the pools go back to idle for the next window.
        rc.delete(*(f"{name}-a" for name in names))
        return [t - started if t is not None else float("inf") for t in done]


def _top_bucket(h: probes.Histogram) -> float | None:
    """The upper bound of the highest non-empty bucket: what the slowest tick stayed under."""
    below = 0.0
    top = None
    for le, cumulative in h.buckets:
        if cumulative > below:
            top = le
        below = cumulative
    return top


def reactions(bench: Bench, first: int, singles: int, tasks: int) -> dict[str, Any]:
    one: list[float] = []
    for i in range(singles):
        one.extend(bench.burst([f"p{first + i:04d}"], tasks))
        time.sleep(1.0)
    many = bench.burst([f"p{first + singles + i:04d}" for i in range(50)], tasks)
    return {"single": one, "fifty": many}


def sigterm_exit(operator: OperatorProcess) -> tuple[float, int | None]:
    proc = operator.proc
    assert proc is not None
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code: int | None = proc.wait(timeout=60)
    except Exception:  # noqa: BLE001 - reported as "no exit", then killed
        code = None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    operator.proc = None
    return time.monotonic() - started, code


def not_ready_nodes(cluster: ControlPlane) -> int:
    out = cluster.kubectl("get", "nodes", "--no-headers")
    return sum(1 for line in out.splitlines() if " Ready " not in f" {line} ")


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def _dist(samples: list[float]) -> str:
    if not samples:
        return "n/a"
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (
        f"median {statistics.median(ordered):.2f} s, p95 {p95:.2f} s, max {ordered[-1]:.2f} s"
        f" (n={len(ordered)})"
    )


def report(runs: list[dict[str, Any]], shutdown: tuple[float, int | None], args: Any) -> str:
    rows = [
        "| pools | operator CPU | operator RSS (peak) | apiserver CPU | API req/s (all clients) "
        "| operator reads / writes per pool per min | reconcile p50 / p95 | ticks per pool per min "
        "(goal 12) | tick lateness p50 / p95 / worst bucket | Redis cmds/s | burst -> patched, 1 pool "
        "| 50 pools at once | load avg |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for r in runs:
        rows.append(
            f"| {r['pools']} | {r['operator_cores']:.2f} core | {r['operator_rss_mb']:.0f} MB "
            f"({r['operator_peak_rss_mb']:.0f}) | {r['apiserver_cores']:.2f} core "
            f"| {r['api_requests_per_s']:.0f} | {r['operator_reads_per_pool_min']:.2f} / "
            f"{r['operator_writes_per_pool_min']:.2f} | {_fmt(r['reconcile_p50_s'], ' s', 3)} / "
            f"{_fmt(r['reconcile_p95_s'], ' s', 3)} | {r['ticks_per_pool_min']:.1f} "
            f"| {_fmt(r['lateness_p50_s'], ' s')} / {_fmt(r['lateness_p95_s'], ' s')} / "
            f"{_fmt(r['lateness_max_bucket_s'], ' s')} | {r['redis_commands_per_s']:.0f} "
            f"| {_dist(r['reaction']['single'])} | {_dist(r['reaction']['fifty'])} "
            f"| {r['load_avg_1m']:.1f} |"
        )
    kinds = ["", "Operator requests in each window, by kind (count over the window):", ""]
    for r in runs:
        kinds.append(
            f"- {r['pools']} pools, {r['window_s']:.0f} s: {r['operator_requests_by_kind']}"
        )
    seconds, code = shutdown
    return "\n".join(
        [
            "# The operator at scale: N pools on one replica",
            "",
            f"`python bench/bench_scale.py --pools {' '.join(map(str, args.pools))} "
            f"--window {args.window:g}` on {platform.node()} ({os.cpu_count()} cores, shared with "
            "other work: see the load average column), local control plane with kwok fake nodes, "
            "one redis-server, the operator as its own process; 3 queues per pool, default 5 s "
            f"polling, pools idle in the steady window ({args.window:g} s after {args.settle:g} s "
            "settling). Bursts: "
            f"{args.tasks} tasks LPUSHed into one queue of a pool at 1 replica; reaction = until its "
            "Deployment's replicas rose (a watch).",
            "",
            *rows,
            *kinds,
            "",
            f"SIGTERM with {runs[-1]['pools'] if runs else 0} pools present: exited after "
            f"{seconds:.1f} s with code {code}.",
            "",
            "Operator reads/writes are the apiserver's own counters for what only the operator "
            "does (scale_probes.is_operators): PATCH of Deployments and pods without a "
            "subresource, anything on celeryworkerpools, Secrets and PodMetrics; kopf's watches "
            "are not counted (long-running). Events are left out (other clients post them too).",
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pools", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=30.0)
    parser.add_argument("--singles", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.md")
    parser.add_argument(
        "--log", type=Path, default=Path(tempfile.gettempdir()) / "bench-scale-operator.log"
    )
    args = parser.parse_args()
    # SIGTERM (a stopped run) unwinds like Ctrl-C, so the cluster and Redis are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="celeriac-scale-") as tmp, running_redis() as rs:
        cluster = ControlPlane(state_dir=Path(tmp) / "cp")
        cluster.start()
        operator = OperatorProcess(kubeconfig=cluster.kubeconfig, log_path=Path(tmp) / "op.log")
        stop = threading.Event()
        try:
            cluster.kubectl("apply", "--server-side", "-f", str(ROOT / CRD_FILE))
            cluster.kubectl(
                "wait", "--for=condition=Established", "crd/celeryworkerpools.celeriac.dev"
            )
            cluster.kubectl("create", "namespace", NAMESPACE)
            cluster.kubectl(
                "-n",
                NAMESPACE,
                "create",
                "secret",
                "generic",
                "broker",
                f"--from-literal=url={rs.url}",
            )
            api = cluster.api_client()
            api.configuration.connection_pool_maxsize = 4
            bench = Bench(
                cluster,
                rs,
                operator,
                client.AppsV1Api(api),
                client.CustomObjectsApi(api),
                Celery("bench", broker=rs.url),
            )
            operator.start()
            threading.Thread(target=bench.watch_deployments, args=(stop,), daemon=True).start()
            for n in args.pools:
                previous = bench.pools
                took = bench.grow_to(n)
                print(f"{n} pools: every Deployment at >= 1 replica after {took:.0f} s", flush=True)
                ready_s = bench.wait_ready(600)
                print(f"  ready after {ready_s:.0f} s more", flush=True)
                time.sleep(args.settle)
                run = bench.steady_window(args.window)
                print(json.dumps(run, indent=1, default=str), flush=True)
                run["reaction"] = reactions(bench, previous, args.singles, args.tasks)
                run["running_pods"] = bench.running_pods()
                run["not_ready_nodes"] = not_ready_nodes(cluster)
                print(json.dumps(run, indent=1, default=str), flush=True)
                runs.append(run)
            shutdown = sigterm_exit(operator)
            print(f"SIGTERM: exit after {shutdown[0]:.1f} s, code {shutdown[1]}", flush=True)
        finally:
            stop.set()
            operator.stop()
            cluster.stop()
            # Kept for a look after the run (the temporary directory goes).
            Path(args.log).write_bytes(operator.log_path.read_bytes())
    text = report(runs, shutdown, args)
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
