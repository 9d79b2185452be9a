"""A real node for the local control plane: containerd + runc, a real kubelet of the control
plane's Kubernetes version, CNI bridge networking, kube-proxy, metrics-server and a local
OCI registry the node pulls the project's images from.

Start order: network (bridge, blackhole routes, egress rule), registry (pause image and the
project's images pushed), containerd, kubelet (node Ready), kube-proxy, metrics-server
(APIService v1beta1.metrics.k8s.io Available). `stop` undoes everything, including pod
processes, mounts, network namespaces, cgroups, iptables rules and routes.

One real node per machine: kube-proxy owns the machine's KUBE-* iptables chains.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml

from celeriac_dev import nodeconfig, nodenet, nodeteardown
from celeriac_dev.controlplane import (
    ControlPlane,
    Process,
    _terminate_group,
    cache_dir,
    free_port,
    newest_build,
)
from celeriac_dev.nodecerts import issue_node_certs
from celeriac_dev.registry import LocalRegistry

NODE_NAME = "celeriac-real-0"
CNI_BIN_DIR = "/usr/lib/cni"
LOCK_FILE = Path("/run/celeriac-realnode.lock")


class RealNodeError(RuntimeError):
    pass


def find_node_binaries() -> Path:
    """The newest complete build from hack/build-node.sh."""
    build = newest_build("node-k8s-*")
    if build is None:
        raise RealNodeError(
            f"no node build under {cache_dir() / 'bin'}: run `bash hack/build-node.sh` "
            "(kubelet, kube-proxy, metrics-server, crane from Go modules)"
        )
    return build


@dataclass(frozen=True)
class ImageToPush:
    local_name: str
    repository: str
    tag: str


@dataclass
class RealNode:
    plane: ControlPlane
    bin_dir: Path = field(default_factory=find_node_binaries)
    net: nodenet.NodeNetwork = field(default_factory=nodenet.NodeNetwork)
    processes: list[Process] = field(default_factory=list)
    registry: LocalRegistry | None = None
    _lock: IO[str] | None = None

    @property
    def paths(self) -> nodeconfig.NodePaths:
        return nodeconfig.NodePaths(self.plane.state_dir / "realnode")

    def _spawn(self, name: str, argv: list[str]) -> Process:
        # Beside the control plane's logs: they outlive the node's state directory.
        log = self.plane.state_dir / "logs" / f"node-{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.paths.root,
            )
        proc = Process(name, popen, log)
        self.processes.append(proc)
        (self.paths.root / "pids.json").write_text(
            json.dumps({p.name: p.popen.pid for p in self.processes})
        )
        return proc

    def _wait(self, what: str, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for p in self.processes:
                if p.popen.poll() is not None:
                    tail = p.log.read_text(errors="replace")[-3000:]
                    raise RealNodeError(f"{p.name} exited with {p.popen.returncode}:\n{tail}")
            if ready():
                return
            time.sleep(0.2)
        raise RealNodeError(
            f"{what} not ready within {timeout_s:.0f} s (logs: {self.plane.state_dir / 'logs'}/node-*)"
        )

    # --- start ---------------------------------------------------------------

    def start(self, images: Sequence[ImageToPush] = (), timeout_s: float = 120.0) -> None:
        self._take_lock()
        try:
            nodeteardown.clean(self.paths.root, self.net, self.bin_dir)
            self.paths.root.mkdir(parents=True, exist_ok=True)
            nodenet.apply(self.net)
            self._start_registry(images, timeout_s)
            self._start_containerd(timeout_s)
            self._start_kubelet(timeout_s)
            self._start_kube_proxy()
            self._start_metrics_server(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _take_lock(self) -> None:
        lock = LOCK_FILE.open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            lock.close()
            raise RealNodeError(
                f"another real node runs on this machine ({LOCK_FILE}): kube-proxy's iptables "
                "chains are machine-wide, so only one can"
            ) from exc
        self._lock = lock

    def _start_registry(self, images: Sequence[ImageToPush], timeout_s: float) -> None:
        registry = LocalRegistry(self.bin_dir / "crane", free_port())
        disk = cache_dir() / "registry"
        disk.mkdir(parents=True, exist_ok=True)
        self._spawn("registry", registry.serve_argv(disk))
        self._wait("registry", lambda: _answers(registry.host), timeout_s)
        registry.push_pause(self.bin_dir / "pause", self.paths.root)
        for image in images:
            registry.push_local(image.local_name, image.repository, image.tag)
        self.registry = registry

    def _start_containerd(self, timeout_s: float) -> None:
        containerd = shutil.which("containerd")
        if containerd is None or shutil.which("runc") is None:
            raise RealNodeError(
                "containerd and runc are not installed: apt-get install containerd runc"
            )
        assert self.registry is not None
        paths = self.paths
        paths.containerd_socket.parent.mkdir(parents=True, exist_ok=True)
        paths.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        (paths.cni_conf_dir / "10-celeriac.conflist").write_text(
            json.dumps(self.net.cni_conflist(str(paths.ipam_dir)), indent=2)
        )
        hosts = paths.registry_hosts / self.registry.host
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(nodeconfig.registry_hosts_toml(self.registry.host))
        paths.containerd_config.write_text(
            nodeconfig.containerd_toml(paths, self.registry.pause_image, CNI_BIN_DIR)
        )
        self._spawn("containerd", [containerd, "--config", str(paths.containerd_config)])
        self._wait("containerd socket", paths.containerd_socket.exists, timeout_s)

    def _start_kubelet(self, timeout_s: float) -> None:
        paths, plane = self.paths, self.plane
        certs = issue_node_certs(plane.pki, paths.root / "pki", NODE_NAME, self.net.gateway)
        nodeteardown.prepare_cgroups()
        paths.resolv_conf.write_text("# no upstream resolver: pods reach only this machine\n")
        ports = nodeconfig.KubeletPorts(port=free_port(), healthz=free_port())
        config = nodeconfig.kubelet_config(paths, self.net, ports, plane.pki.ca_cert, certs)
        paths.kubelet_config.write_text(yaml.safe_dump(config))
        _write_kubeconfig(paths.kubelet_kubeconfig, plane, certs.client_cert, certs.client_key)
        self._spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={paths.kubelet_config}",
                f"--kubeconfig={paths.kubelet_kubeconfig}",
                f"--root-dir={paths.kubelet_dir}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={self.net.gateway}",
                f"--node-labels={nodeconfig.NODE_LABEL}=true",
                "--v=1",
            ],
        )
        self._wait("node Ready", self._node_ready, timeout_s)

    def _node_ready(self) -> bool:
        out = self.plane.kubectl(
            "get",
            "node",
            NODE_NAME,
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
            check=False,
        )
        return out.strip() == "True"

    def _start_kube_proxy(self) -> None:
        paths = self.paths
        config = nodeconfig.kube_proxy_config(
            paths, self.net, self.plane.kubeconfig, NODE_NAME, free_port(), free_port()
        )
        paths.kube_proxy_config.write_text(yaml.safe_dump(config))
        self._spawn(
            "kube-proxy",
            [str(self.bin_dir / "kube-proxy"), f"--config={paths.kube_proxy_config}", "--v=1"],
        )

    def _start_metrics_server(self, timeout_s: float) -> None:
        port = free_port()
        kubeconfig = str(self.plane.kubeconfig)
        self._spawn(
            "metrics-server",
            [
                str(self.bin_dir / "metrics-server"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--bind-address={self.net.gateway}",
                f"--secure-port={port}",
                f"--cert-dir={self.paths.root / 'metrics-server'}",
                "--kubelet-insecure-tls",
                "--kubelet-use-node-status-port",
                # kwok's fake node has no kubelet to scrape.
                f"--node-selector={nodeconfig.NODE_LABEL}=true",
                "--kubelet-preferred-address-types=InternalIP",
                "--metric-resolution=15s",
                # Discovery (non-resource paths) of the group, for the same reason as the grant.
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/apis/metrics.k8s.io,/apis/metrics.k8s.io/v1beta1",
            ],
        )
        self.plane.kubectl(
            "apply", "-f", "-", input_text=_metrics_api_objects(self.net.gateway, port)
        )
        self._wait("metrics.k8s.io APIService", self._metrics_available, timeout_s)

    def _metrics_available(self) -> bool:
        out = self.plane.kubectl(
            "get",
            "apiservice",
            "v1beta1.metrics.k8s.io",
            "-o",
            'jsonpath={.status.conditions[?(@.type=="Available")].status}',
            check=False,
        )
        return out.strip() == "True"

    # --- stop ----------------------------------------------------------------

    def stop(self) -> None:
        self.plane.kubectl(
            "delete", "apiservice", "v1beta1.metrics.k8s.io", "--ignore-not-found", check=False
        )
        for kind in ("clusterrolebinding", "clusterrole"):
            self.plane.kubectl(
                "delete", kind, ANONYMOUS_METRICS_READER, "--ignore-not-found", check=False
            )
        for p in reversed(self.processes):
            if p.name != "containerd":
                _terminate_group(p.popen.pid, p.popen, 10.0)
        nodeteardown.stop_pods(self.paths.root)
        for p in self.processes:
            if p.name == "containerd":
                _terminate_group(p.popen.pid, p.popen, 10.0)
        self.processes.clear()
        nodeteardown.clean(self.paths.root, self.net, self.bin_dir)
        self.plane.kubectl("delete", "node", NODE_NAME, "--ignore-not-found", check=False)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _answers(host: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{host}/v2/", timeout=2) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _write_kubeconfig(path: Path, plane: ControlPlane, cert: Path, key: Path) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": plane.server,
                    "certificate-authority": str(plane.pki.ca_cert),
                },
            }
        ],
        "users": [
            {"name": "node", "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "node"}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))


# The local apiserver has no front-proxy client certificate (controlplane.py sets no
# --proxy-client-cert-file), so requests it proxies to metrics-server arrive anonymous, after
# the apiserver has authorized the real caller (e.g. the operator's RBAC on metrics.k8s.io).
# metrics-server then asks whether system:anonymous may read metrics: this grant says yes.
# Also lets any anonymous caller of the loopback apiserver read pod CPU; nothing else.
ANONYMOUS_METRICS_READER = "celeriac-dev:anonymous-metrics-reader"


def _metrics_api_objects(address: str, port: int) -> str:
    """A selector-less Service whose Endpoints point at metrics-server on the bridge address
    (Endpoints may not be loopback), the APIService the apiserver proxies through it, and the
    grant above."""
    rule = {
        "apiGroups": ["metrics.k8s.io"],
        "resources": ["pods", "nodes"],
        "verbs": ["get", "list"],
    }
    objects = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": ANONYMOUS_METRICS_READER},
            "rules": [rule],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": ANONYMOUS_METRICS_READER},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": ANONYMOUS_METRICS_READER,
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "User",
                    "name": "system:anonymous",
                }
            ],
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "metrics-server", "namespace": "kube-system"},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "metrics-server", "namespace": "kube-system"},
            "subsets": [
                {"addresses": [{"ip": address}], "ports": [{"name": "https", "port": port}]}
            ],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "insecureSkipTLSVerify": True,
                "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443},
            },
        },
    ]
    return yaml.safe_dump_all(objects)
