"""Starts and stops a local control plane as plain processes.

Start order: etcd, kube-apiserver (TLS, client-cert admin), controller-manager,
scheduler, kwok; then one fake node. Each process runs in its own session so
teardown can signal the whole group, and its pid is recorded in the state
directory so `celeriac-dev cluster down` can stop a cluster another process started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from celeriac_dev.certs import PKI, create_pki
from celeriac_dev.kubelet import ProcessKubelet

FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
FAKE_NODE_NAME = "kwok-node-0"


class ControlPlaneError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("CELERIAC_CACHE", Path.home() / ".cache" / "celeriac"))


def find_binaries() -> Path:
    """The newest complete build from hack/build-control-plane.sh, or $CELERIAC_K8S_BIN."""
    explicit = os.environ.get("CELERIAC_K8S_BIN")
    if explicit:
        path = Path(explicit)
        if not (path / "kube-apiserver").exists():
            raise ControlPlaneError(f"CELERIAC_K8S_BIN={path} has no kube-apiserver")
        return path
    build = newest_build("k8s-*")
    if build is None:
        raise ControlPlaneError(
            f"no control-plane build under {cache_dir() / 'bin'}: run `make setup` "
            "(hack/build-control-plane.sh builds it from Go modules, about 15 min the first time)"
        )
    return build


def newest_build(pattern: str) -> Path | None:
    """The newest build directory under the cache's bin/ matching `pattern` whose build
    finished (the build scripts write `.complete` last)."""
    builds = sorted(
        (stamp.parent for stamp in (cache_dir() / "bin").glob(f"{pattern}/.complete")),
        key=lambda p: p.stat().st_mtime,
    )
    return builds[-1] if builds else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class ControlPlane:
    """A running control plane rooted at `state_dir` (certs, logs, kubeconfig, pids)."""

    state_dir: Path
    bin_dir: Path = field(default_factory=find_binaries)
    processes: list[Process] = field(default_factory=list)
    apiserver_port: int = 0
    etcd_port: int = 0
    kubelets: list[ProcessKubelet] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Every process runs with its working directory inside state_dir: a relative path
        # handed to it would point nowhere (`--out-dir .demo` did, issue #12).
        self.state_dir = self.state_dir.resolve()
        self.bin_dir = self.bin_dir.resolve()

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def pki(self) -> PKI:
        return PKI(self.state_dir / "pki")

    def _spawn(self, name: str, argv: list[str]) -> Process:
        log = self.state_dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.state_dir,
            )
        proc = Process(name, popen, log)
        self.processes.append(proc)
        self._write_pids()
        return proc

    def _write_pids(self) -> None:
        pids = {p.name: p.popen.pid for p in self.processes}
        (self.state_dir / "pids.json").write_text(json.dumps(pids))

    def _check_alive(self) -> None:
        for p in self.processes:
            code = p.popen.poll()
            if code is not None:
                tail = p.log.read_text(errors="replace")[-3000:]
                raise ControlPlaneError(f"{p.name} exited with {code}; end of {p.log}:\n{tail}")

    def _wait(self, what: str, ready: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            if ready():
                return
            time.sleep(0.2)
        raise ControlPlaneError(
            f"{what} not ready within {timeout_s:.0f} s (logs in {self.state_dir / 'logs'})"
        )

    def _get(self, path: str) -> tuple[int, bytes]:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        try:
            with urllib.request.urlopen(f"{self.server}{path}", context=ctx, timeout=5) as resp:  # noqa: S310
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())
        except (urllib.error.URLError, OSError):
            return 0, b""

    def kubectl(self, *args: str, check: bool = True, input_text: str | None = None) -> str:
        result = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            input=input_text,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    # --- start ---------------------------------------------------------------

    def start(self, timeout_s: float = 120.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        create_pki(self.state_dir / "pki")
        self.etcd_port = free_port()
        self.apiserver_port = free_port()
        self._write_kubeconfig()
        try:
            self._start_etcd(timeout_s)
            self._start_apiserver(timeout_s)
            self._start_controllers()
            self._start_kwok()
            self._create_fake_node()
            self._wait("default service account", self._default_sa_exists, timeout_s)
        except BaseException:
            self.stop()
            raise

    def _start_etcd(self, timeout_s: float) -> None:
        etcd = shutil.which("etcd")
        if etcd is None:
            raise ControlPlaneError(
                "etcd is not installed: `apt-get install etcd-server` (or `make setup`)"
            )
        # tmpfs keeps etcd's fsyncs from dominating start-up and test time.
        shm = Path("/dev/shm")  # noqa: S108 - a private subdirectory, removed on stop
        data = (
            Path(os.environ.get("CELERIAC_ETCD_DIR", shm if shm.is_dir() else self.state_dir))
            / f"celeriac-etcd-{os.getpid()}-{self.etcd_port}"
        )
        (self.state_dir / "etcd-data").write_text(str(data))
        peer = free_port()
        self._spawn(
            "etcd",
            [
                etcd,
                "--name=celeriac",
                f"--data-dir={data}",
                f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=celeriac=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.etcd_port}/health", timeout=2
                ) as r:
                    return b"true" in r.read()
            except (urllib.error.URLError, OSError):
                return False

        self._wait("etcd", healthy, timeout_s)

    def _start_apiserver(self, timeout_s: float) -> None:
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                # Without a default route the apiserver cannot pick an address by itself.
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                "--enable-priority-and-fairness=false",
                # Debian's etcd 3.4 cannot answer progress requests, so the watch cache never
                # learns it is current and answers watches at newer versions with 504
                # "Too large resource version". Watches served by etcd itself have no such lag.
                "--watch-cache=false",
                f"--cert-dir={self.state_dir / 'pki'}",
                "--v=1",
            ],
        )
        self._wait("kube-apiserver /readyz", lambda: self._get("/readyz")[0] == 200, timeout_s)

    def _start_controllers(self) -> None:
        pki = self.pki
        kubeconfig = str(self.kubeconfig)
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                "--use-service-account-credentials=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
                "--concurrent-deployment-syncs=10",
                # The client's default 20 requests/s let Deployment status lag the pods by
                # 10+ minutes at 500 pools (bench_scale.py): readyReplicas stayed 0.
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                # A loaded 2-core machine delays kwok's heartbeats; past the grace period the
                # node goes NotReady and its pods are marked not Ready for good.
                "--node-monitor-grace-period=120s",
                "--concurrent-replicaset-syncs=10",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--v=1",
            ],
        )

    def _start_kwok(self) -> None:
        self._spawn(
            "kwok",
            [
                str(self.bin_dir / "kwok"),
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                "--node-ip=127.0.0.1",
                "--cidr=10.244.0.0/16",
                f"--server-address=127.0.0.1:{free_port()}",
                # Without a lease kwok heartbeats through node status about once a minute,
                # past the controller-manager's 50 s grace: fake nodes flapped NotReady on
                # runs of a few minutes. A lease is renewed every quarter of its duration.
                "--node-lease-duration-seconds=40",
            ],
        )

    def _create_fake_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": FAKE_NODE_NAME,
                "annotations": {FAKE_NODE_ANNOTATION: "fake"},
                "labels": {
                    "kubernetes.io/hostname": FAKE_NODE_NAME,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "status": {
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"},
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "500"},
            },
        }
        self.kubectl("apply", "-f", "-", input_text=json.dumps(node))

    def _default_sa_exists(self) -> bool:
        status, _ = self._get("/api/v1/namespaces/default/serviceaccounts/default")
        return status == 200

    def _write_kubeconfig(self) -> None:
        pki = self.pki
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "celeriac-local",
                    "cluster": {"server": self.server, "certificate-authority": str(pki.ca_cert)},
                }
            ],
            "users": [
                {
                    "name": "celeriac-admin",
                    "user": {
                        "client-certificate": str(pki.admin_cert),
                        "client-key": str(pki.admin_key),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "celeriac-local",
                    "context": {"cluster": "celeriac-local", "user": "celeriac-admin"},
                }
            ],
            "current-context": "celeriac-local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))

    def api_client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def start_process_kubelet(self) -> ProcessKubelet:
        """A node whose pods run as local processes (see kubelet.py); stopped with the plane."""
        kubelet = ProcessKubelet(
            self.api_client(), self.state_dir / "pods", self.server, self.pki.ca_cert
        )
        kubelet.start()
        self.kubelets.append(kubelet)
        return kubelet

    # --- stop ----------------------------------------------------------------

    def stop(self, grace_s: float = 10.0) -> None:
        for kubelet in self.kubelets:
            kubelet.stop()
        self.kubelets.clear()
        for p in reversed(self.processes):
            _terminate_group(p.popen.pid, p.popen, grace_s)
        self.processes.clear()
        _remove_etcd_data(self.state_dir)
        pids = self.state_dir / "pids.json"
        if pids.exists():
            pids.unlink()


def _terminate_group(pid: int, popen: subprocess.Popen[bytes] | None, grace_s: float) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if popen is not None:
            if popen.poll() is not None:
                break
        else:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if popen is not None:
        popen.wait(timeout=5)


def _remove_etcd_data(state_dir: Path) -> None:
    marker = state_dir / "etcd-data"
    if marker.exists():
        shutil.rmtree(marker.read_text().strip(), ignore_errors=True)
        marker.unlink()


def stop_recorded(state_dir: Path) -> int:
    """Stop a control plane started by another process from its pids file."""
    pids_file = state_dir / "pids.json"
    if not pids_file.exists():
        return 0
    pids: dict[str, int] = json.loads(pids_file.read_text())
    for pid in reversed(list(pids.values())):
        _terminate_group(pid, None, 10.0)
    pids_file.unlink()
    _remove_etcd_data(state_dir)
    return len(pids)
