"""The real node's configuration files, as pure functions of paths, ports and the network plan:
containerd's config (CRI, runc with cgroupfs, CNI, the local registry over plain HTTP), the
kubelet's KubeletConfiguration and kube-proxy's KubeProxyConfiguration.

Every path lives under the node's state directory, so a teardown that removes that
directory (after unmounting what is mounted inside it) leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celeriac_dev.nodecerts import NodeCerts
from celeriac_dev.nodenet import NodeNetwork

NODE_LABEL = "celeriac.dev/real-node"
# Kubelet's pods go under this cgroup in every v1 hierarchy, apart from anything else here.
CGROUP_ROOT = "celeriac"


def placement() -> dict[str, object]:
    """The pod spec fields that put a pod on the real node (tainted, so nothing else lands there)."""
    return {
        "nodeSelector": {NODE_LABEL: "true"},
        "tolerations": [
            {"key": NODE_LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
        ],
    }


@dataclass(frozen=True)
class NodePaths:
    root: Path

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "run" / "containerd.sock"

    @property
    def registry_hosts(self) -> Path:
        return self.root / "containerd" / "certs.d"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_dir(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet-config.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.root / "kubelet.kubeconfig"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy-config.yaml"

    @property
    def resolv_conf(self) -> Path:
        return self.root / "resolv.conf"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"


def containerd_toml(paths: NodePaths, pause_image: str, cni_bin_dir: str) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    runc = f"{cri}.containerd.runtimes.runc"
    return f"""version = 2
root = "{paths.root / "containerd" / "root"}"
state = "{paths.root / "containerd" / "state"}"

[grpc]
  address = "{paths.containerd_socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{paths.root / "containerd" / "opt"}"

[{cri}]
  sandbox_image = "{pause_image}"
  # Network namespaces under the state directory, so teardown finds every one.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # This machine kind withholds CAP_SYS_RESOURCE even from root, so no process may lower
  # its oom_score_adj: the sandbox's -998 and a Guaranteed pod's -997 made runc's init fail
  # ("can't get final child's PID from pipe: EOF"). Clamp to containerd's own score instead.
  restrict_oom_score_adj = true

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{runc}]
  runtime_type = "io.containerd.runc.v2"

[{runc}.options]
  # No systemd here (cgroup v1, cgroupfs driver, like the kubelet).
  SystemdCgroup = false

[{cri}.cni]
  bin_dir = "{cni_bin_dir}"
  conf_dir = "{paths.cni_conf_dir}"

[{cri}.registry]
  config_path = "{paths.registry_hosts}"
"""


def registry_hosts_toml(registry_host: str) -> str:
    """containerd's hosts.toml for the local registry: plain HTTP on loopback."""
    return f"""server = "http://{registry_host}"

[host."http://{registry_host}"]
  capabilities = ["pull", "resolve"]
"""


@dataclass(frozen=True)
class KubeletPorts:
    port: int
    healthz: int


def kubelet_config(
    paths: NodePaths, net: NodeNetwork, ports: KubeletPorts, ca_cert: Path, certs: NodeCerts
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": net.gateway,
        "port": ports.port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports.healthz,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(certs.serving_cert),
        "tlsPrivateKeyFile": str(certs.serving_key),
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "failSwapOn": False,
        # No upstream resolver for pods (the network rule): this file names no nameserver.
        "resolvConf": str(paths.resolv_conf),
        "clusterDomain": "cluster.local",
        "podLogsDir": str(paths.pod_logs),
        "registerWithTaints": [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}],
        "serializeImagePulls": False,
        # A shared development machine: evict only when truly out of room.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "nodeStatusReportFrequency": "10s",
    }


def kube_proxy_config(
    paths: NodePaths,
    net: NodeNetwork,
    kubeconfig: Path,
    node_name: str,
    metrics_port: int,
    healthz_port: int,
) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node_name,
        "clusterCIDR": net.pod_range,
        "bindAddress": net.gateway,
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        # Leave the machine's sysctls alone: no conntrack resizing, no route_localnet.
        "conntrack": {"maxPerCore": 0},
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False},
    }
