"""A kubelet for one node that runs each pod's container as a local process.

The local control plane has no container runtime. For the pods bound to this node,
the image is ignored and the container's command runs on the host (PATH includes the
venv, so `celery ...` and `celeriac run` resolve) with the pod's env and args. Like a
kubelet it reports Running/Ready, restarts exited containers, and on deletion sends
SIGTERM, waits up to the grace period, sends SIGKILL, then removes the pod.

Volumes are per-pod directories: downward-API files are written there and env values
that start with a mount path are rewritten to point into them. A service-account pod
gets a kubeconfig with a token from the TokenRequest API (KUBECONFIG), because the
in-cluster paths under /var/run/secrets cannot be private per process.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

NODE_NAME = "celeriac-local"
NODE_LABEL = "celeriac.dev/process-node"


def placement() -> dict[str, object]:
    """The pod spec fields that put a pod on the process node."""
    return {
        "nodeSelector": {NODE_LABEL: "true"},
        "tolerations": [
            {"key": NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
        ],
    }


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values."""
    return _VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), value)


@dataclass
class RunningPod:
    uid: str
    namespace: str
    name: str
    dir: Path
    argv: list[str]
    env: dict[str, str]
    grace_s: int
    container_name: str = "main"
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    terminating: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class ProcessKubelet:
    def __init__(
        self,
        api_client: client.ApiClient,
        work_dir: Path,
        server: str,
        ca_file: Path,
        node_name: str = NODE_NAME,
    ) -> None:
        self.core = client.CoreV1Api(api_client)
        self.coord = client.CoordinationV1Api(api_client)
        self.node_name = node_name
        self.work_dir = work_dir
        self.server = server
        self.ca_file = ca_file
        self.pods: dict[str, RunningPod] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._register_node()
        for target in (self._heartbeat_loop, self._watch_loop, self._supervise_loop):
            thread = threading.Thread(target=target, name=f"kubelet-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for pod in list(self.pods.values()):
            self._kill(pod, grace_s=5)
        for thread in self._threads:
            thread.join(timeout=5)

    # --- node --------------------------------------------------------------------

    def _register_node(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    NODE_LABEL: "true",
                    "kubernetes.io/hostname": self.node_name,
                    "kubernetes.io/os": "linux",
                },
            },
            # Only pods meant to run as host processes land here (they tolerate this taint).
            "spec": {"taints": [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}]},
        }
        with contextlib.suppress(ApiException):
            self.core.create_node(body)
        self._node_status()

    def _node_status(self) -> None:
        now = _now()
        conditions = [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "celeriac process kubelet",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        ]
        capacity = {"cpu": str(os.cpu_count() or 2), "memory": "16Gi", "pods": "200"}
        self.core.patch_node_status(
            self.node_name,
            {
                "status": {
                    "conditions": conditions,
                    "capacity": capacity,
                    "allocatable": capacity,
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "nodeInfo": {"kubeletVersion": "celeriac-process-kubelet"},
                }
            },
        )

    def _heartbeat_loop(self) -> None:
        # The node lifecycle controller taints and evicts a node whose lease is 40 s stale.
        while not self._stop.wait(5):
            try:
                self._renew_lease()
                self._node_status()
            except Exception as exc:  # noqa: BLE001 - the apiserver may be restarting; next beat retries
                log.warning("node heartbeat failed: %s", exc)

    def _renew_lease(self) -> None:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
            "spec": {
                "holderIdentity": self.node_name,
                "leaseDurationSeconds": 40,
                "renewTime": now,
            },
        }
        try:
            self.coord.patch_namespaced_lease(self.node_name, "kube-node-lease", body)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.coord.create_namespaced_lease("kube-node-lease", body)

    # --- pods --------------------------------------------------------------------

    def _watch_loop(self) -> None:
        selector = f"spec.nodeName={self.node_name}"
        while not self._stop.is_set():
            try:
                stream = watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces,
                    field_selector=selector,
                    timeout_seconds=30,
                )
                for event in stream:
                    if self._stop.is_set():
                        return
                    self._on_pod(event["type"], event["object"])
            except Exception as exc:  # noqa: BLE001 - a kubelet outlives apiserver hiccups
                log.warning("pod watch failed, retrying: %s", exc)
                self._stop.wait(1)

    def _on_pod(self, kind: str, pod: Any) -> None:
        uid = pod.metadata.uid
        known = self.pods.get(uid)
        if kind == "DELETED":
            if known is not None:
                self._kill(known, grace_s=0)
                self.pods.pop(uid, None)
            return
        if pod.metadata.deletion_timestamp is not None:
            if known is not None and not known.terminating:
                known.terminating = True
                grace = pod.metadata.deletion_grace_period_seconds
                threading.Thread(
                    target=self._terminate,
                    args=(known, grace if grace is not None else known.grace_s),
                    daemon=True,
                ).start()
            elif known is None:
                self._finalize(pod.metadata.namespace, pod.metadata.name)
            return
        if known is None:
            try:
                self._start_pod(pod)
            except Exception as exc:  # noqa: BLE001 - reported on the pod, like ErrImagePull
                log.warning(
                    "pod %s/%s failed to start: %s", pod.metadata.namespace, pod.metadata.name, exc
                )
                self._report_failed(pod, str(exc))

    def _start_pod(self, pod: Any) -> None:
        meta, spec = pod.metadata, pod.spec
        container = spec.containers[0]
        pod_dir = self.work_dir / f"{meta.namespace}_{meta.name}_{meta.uid[:8]}"
        pod_dir.mkdir(parents=True, exist_ok=True)
        mounts = self._prepare_volumes(pod, pod_dir)
        env = self._container_env(pod, container, pod_dir, mounts)
        argv = [expand(part, env) for part in (container.command or []) + (container.args or [])]
        if not argv:
            raise RuntimeError(
                "container has no command: the process kubelet cannot run an image entrypoint"
            )
        binary = shutil.which(argv[0], path=env.get("PATH"))
        if binary is None:
            raise RuntimeError(f"command {argv[0]!r} not found on PATH")
        argv[0] = binary
        running = RunningPod(
            uid=meta.uid,
            namespace=meta.namespace,
            name=meta.name,
            dir=pod_dir,
            argv=argv,
            env=env,
            grace_s=spec.termination_grace_period_seconds or 30,
            container_name=container.name,
        )
        self.pods[meta.uid] = running
        self._spawn(running)
        self._report_running(running)

    def _prepare_volumes(self, pod: Any, pod_dir: Path) -> dict[str, Path]:
        """mountPath -> local directory, for the volumes this kubelet understands."""
        local: dict[str, Path] = {}
        volumes = {v.name: v for v in (pod.spec.volumes or [])}
        for mount in pod.spec.containers[0].volume_mounts or []:
            target = pod_dir / "volumes" / mount.name
            target.mkdir(parents=True, exist_ok=True)
            volume = volumes.get(mount.name)
            if volume is not None and volume.downward_api is not None:
                self._write_downward(pod, volume.downward_api, target)
            local[mount.mount_path] = target
        return local

    def _write_downward(self, pod: Any, source: Any, target: Path) -> None:
        annotations = pod.metadata.annotations or {}
        labels = pod.metadata.labels or {}
        for item in source.items or []:
            path = item.field_ref.field_path if item.field_ref else ""
            m = re.fullmatch(r"metadata\.(annotations|labels)\['(.+)'\]", path)
            value = ""
            if m:
                value = (annotations if m.group(1) == "annotations" else labels).get(m.group(2), "")
            elif path == "metadata.name":
                value = pod.metadata.name
            elif path == "metadata.namespace":
                value = pod.metadata.namespace
            (target / item.path).write_text(value)

    def refresh_downward(self, namespace: str, name: str) -> None:
        """Re-project downward-API files, as a kubelet does after an annotation change."""
        pod = self.core.read_namespaced_pod(name, namespace)
        running = self.pods.get(pod.metadata.uid)
        if running is not None:
            self._prepare_volumes(pod, running.dir)

    def _container_env(
        self, pod: Any, container: Any, pod_dir: Path, mounts: dict[str, Path]
    ) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k in ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "TMPDIR")
        }
        # The venv running this kubelet provides the containers' commands (celery, celeriac).
        env["PATH"] = os.pathsep.join(
            [os.path.dirname(sys.executable), env.get("PATH", os.defpath)]
        )
        env["HOSTNAME"] = pod.metadata.name
        env["POD_DIR"] = str(pod_dir)
        declared: set[str] = set()
        for var in container.env or []:
            declared.add(var.name)
            if var.value is not None:
                env[var.name] = expand(var.value, env)
            elif var.value_from is not None:
                env[var.name] = self._env_from(pod, var.value_from)
            else:
                env[var.name] = ""  # `value: ""` arrives as no value at all
        # Only the container's own variables name paths inside its mounts. Inherited ones
        # (PATH) are host paths: a clone under /tmp beside an emptyDir at /tmp once sent
        # PATH into the pod directory and no command was found.
        for mount_path, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
            for key in declared:
                value = env[key]
                if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                    env[key] = str(local) + value[len(mount_path) :]
        if pod.spec.service_account_name and pod.spec.automount_service_account_token is not False:
            env["KUBECONFIG"] = str(self._service_account_kubeconfig(pod, pod_dir))
            env["CELERIAC_KUBECONFIG"] = env["KUBECONFIG"]
        return env

    def _env_from(self, pod: Any, source: Any) -> str:
        if source.field_ref is not None:
            path = source.field_ref.field_path
            fields: dict[str, str] = {
                "metadata.name": pod.metadata.name,
                "metadata.namespace": pod.metadata.namespace,
                "status.podIP": "127.0.0.1",
                "spec.nodeName": self.node_name,
                "spec.serviceAccountName": pod.spec.service_account_name or "default",
            }
            return fields.get(path, "")
        if source.secret_key_ref is not None:
            ref = source.secret_key_ref
            secret = self.core.read_namespaced_secret(ref.name, pod.metadata.namespace)
            return base64.b64decode((secret.data or {})[ref.key]).decode()
        if source.config_map_key_ref is not None:
            ref = source.config_map_key_ref
            cm = self.core.read_namespaced_config_map(ref.name, pod.metadata.namespace)
            return str((cm.data or {})[ref.key])
        return ""

    def _service_account_kubeconfig(self, pod: Any, pod_dir: Path) -> Path:
        token = self.core.create_namespaced_service_account_token(
            pod.spec.service_account_name,
            pod.metadata.namespace,
            {"spec": {"expirationSeconds": 86400, "audiences": []}},
        ).status.token
        path = pod_dir / "kubeconfig"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "c",
                            "cluster": {
                                "server": self.server,
                                "certificate-authority": str(self.ca_file),
                            },
                        }
                    ],
                    "users": [{"name": "sa", "user": {"token": token}}],
                    "contexts": [
                        {
                            "name": "c",
                            "context": {
                                "cluster": "c",
                                "user": "sa",
                                "namespace": pod.metadata.namespace,
                            },
                        }
                    ],
                    "current-context": "c",
                }
            )
        )
        return path

    def _spawn(self, pod: RunningPod) -> None:
        log_file = pod.dir / f"container-{pod.restarts}.log"
        with log_file.open("ab") as out:
            pod.popen = subprocess.Popen(
                pod.argv,
                env=pod.env,
                cwd=pod.dir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _supervise_loop(self) -> None:
        # restartPolicy Always, with the kubelet's back-off kept short for tests.
        while not self._stop.wait(1):
            for pod in list(self.pods.values()):
                with pod.lock:
                    if pod.terminating or pod.popen is None or pod.popen.poll() is None:
                        continue
                    pod.restarts += 1
                    log.info(
                        "restarting %s/%s (exit %s)", pod.namespace, pod.name, pod.popen.returncode
                    )
                    self._spawn(pod)
                with contextlib.suppress(ApiException):
                    self._report_running(pod)

    def _terminate(self, pod: RunningPod, grace_s: int) -> None:
        self._kill(pod, grace_s)
        self._finalize(pod.namespace, pod.name)
        self.pods.pop(pod.uid, None)

    def _kill(self, pod: RunningPod, grace_s: int) -> None:
        with pod.lock:
            pod.terminating = True
            popen = pod.popen
        if popen is None or popen.poll() is not None:
            return
        # PID 1 of the container gets SIGTERM; the process group is the container.
        with contextlib.suppress(ProcessLookupError):
            os.kill(popen.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=max(grace_s, 0))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=5)

    def _finalize(self, namespace: str, name: str) -> None:
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)

    def _report_running(self, pod: RunningPod) -> None:
        now = _now()
        alive = pod.popen is not None and pod.popen.poll() is None
        ready = "True" if alive else "False"
        status = {
            "status": {
                "phase": "Running",
                "hostIP": "127.0.0.1",
                "podIP": "127.0.0.1",
                "podIPs": [{"ip": "127.0.0.1"}],
                "startTime": now,
                "conditions": [
                    {
                        "type": t,
                        "status": ready if t in ("Ready", "ContainersReady") else "True",
                        "lastTransitionTime": now,
                    }
                    for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
                ],
                "containerStatuses": [
                    {
                        "name": pod.container_name,
                        "ready": alive,
                        "started": alive,
                        "restartCount": pod.restarts,
                        "image": "local-process",
                        "imageID": "",
                        "state": {"running": {"startedAt": now}},
                    }
                ],
            }
        }
        self.core.patch_namespaced_pod_status(pod.name, pod.namespace, status)

    def _report_failed(self, pod: Any, message: str) -> None:
        with contextlib.suppress(ApiException):
            self.core.patch_namespaced_pod_status(
                pod.metadata.name,
                pod.metadata.namespace,
                {
                    "status": {
                        "phase": "Pending",
                        "message": message[:1000],
                        "reason": "ProcessStartFailed",
                    }
                },
            )

    def pid_of(self, namespace: str, name: str) -> int | None:
        for pod in self.pods.values():
            if pod.namespace == namespace and pod.name == name and pod.popen is not None:
                return pod.popen.pid
        return None
