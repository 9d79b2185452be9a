"""The real node's network and the rule that no packet of the local cluster leaves the machine.

Pods get addresses on a host bridge (CNI bridge + host-local, no masquerade); the host keeps
the bridge's gateway address, so host services (Redis, the registry, metrics-server) listen
there and pods reach them without leaving the machine. Everything else is dropped:

- blackhole routes for the whole pod range and kwok's fake pod range: a pod address no bridge
  holds goes nowhere instead of to the default gateway;
- the Service range routes onto the node bridge, which holds only pods: a ClusterIP kube-proxy
  did not translate stays on the machine. Not a blackhole: for packets the host itself sends
  (the apiserver proxying to metrics-server's ClusterIP) the route is looked up before
  kube-proxy's OUTPUT DNAT, and a blackhole fails connect() with EINVAL right there;
- one iptables chain in FORWARD that drops any packet from a pod not addressed to another pod
  (pod -> host traffic is INPUT, not FORWARD, and stays allowed);
- pod DNS has no upstream resolver: the kubelet's resolv.conf names no nameserver.

The plan (`NodeNetwork`, its CNI config, routes and rules) is pure data; `apply` and
`teardown` run `ip` and `iptables` with it.
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from typing import Any

EGRESS_CHAIN = "CELERIAC-POD-EGRESS"


class NodeNetworkError(RuntimeError):
    pass


@dataclass(frozen=True)
class NodeNetwork:
    bridge: str = "celeriac0"
    # The real node's pods; inside pod_range, so the range's blackhole is the fallback.
    pod_subnet: str = "10.85.0.0/24"
    pod_range: str = "10.85.0.0/16"
    # The apiserver's --service-cluster-ip-range and kwok's fake pod range (controlplane.py).
    service_range: str = "10.96.0.0/16"
    fake_pod_range: str = "10.244.0.0/16"

    @property
    def gateway(self) -> str:
        """The host's address on the bridge: the node IP and where host services listen."""
        return str(next(ipaddress.ip_network(self.pod_subnet).hosts()))

    def blackholed(self) -> list[str]:
        return [self.pod_range, self.fake_pod_range]

    def cni_conflist(self, ipam_dir: str) -> dict[str, Any]:
        subnet = {"subnet": self.pod_subnet, "gateway": self.gateway}
        return {
            "cniVersion": "0.4.0",
            "name": "celeriac",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": True,
                    # No masquerade: a pod's packet keeps its source, so nothing outside could
                    # answer it even if the egress rule were missing.
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[subnet]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": ipam_dir,
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }

    def egress_rules(self) -> list[list[str]]:
        """iptables arguments of the egress chain, in order."""
        return [
            ["-s", self.pod_subnet, "-d", self.pod_subnet, "-j", "RETURN"],
            ["-s", self.pod_subnet, "-j", "DROP"],
        ]


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise NodeNetworkError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result


def apply(net: NodeNetwork) -> None:
    """Bridge with the gateway address (so host services can bind before the first pod),
    blackhole routes, the egress chain. Safe to repeat after a crashed run."""
    teardown(net)
    _run("ip", "link", "add", net.bridge, "type", "bridge")
    prefix = ipaddress.ip_network(net.pod_subnet).prefixlen
    _run("ip", "addr", "add", f"{net.gateway}/{prefix}", "dev", net.bridge)
    _run("ip", "link", "set", net.bridge, "up")
    for cidr in net.blackholed():
        _run("ip", "route", "add", "blackhole", cidr)
    _run("ip", "route", "add", net.service_range, "dev", net.bridge)
    _run("iptables", "-w", "-N", EGRESS_CHAIN)
    for rule in net.egress_rules():
        _run("iptables", "-w", "-A", EGRESS_CHAIN, *rule)
    _run("iptables", "-w", "-I", "FORWARD", "1", "-j", EGRESS_CHAIN)


def teardown(net: NodeNetwork) -> None:
    """Removes what `apply` added and whatever kube-proxy left behind; missing pieces are fine."""
    while _run("iptables", "-w", "-D", "FORWARD", "-j", EGRESS_CHAIN, check=False).returncode == 0:
        pass
    _run("iptables", "-w", "-F", EGRESS_CHAIN, check=False)
    _run("iptables", "-w", "-X", EGRESS_CHAIN, check=False)
    for cidr in net.blackholed():
        _run("ip", "route", "del", "blackhole", cidr, check=False)
    _run("ip", "route", "del", net.service_range, "dev", net.bridge, check=False)
    _run("ip", "link", "del", net.bridge, check=False)
