"""The real node's network plan and configuration files, without starting anything."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from celeriac_dev import nodeconfig
from celeriac_dev.nodecerts import NodeCerts
from celeriac_dev.nodenet import NodeNetwork

NET = NodeNetwork()
PATHS = nodeconfig.NodePaths(Path("/state/realnode"))


def test_pod_ranges_are_blackholed_and_services_stay_on_the_bridge() -> None:
    holes = [ipaddress.ip_network(c) for c in NET.blackholed()]
    pods = ipaddress.ip_network(NET.pod_subnet)
    assert any(pods.subnet_of(h) for h in holes)
    # kwok's --cidr in controlplane.py: fake pod addresses nothing answers.
    assert ipaddress.ip_network("10.244.0.0/16") in holes
    # The apiserver's --service-cluster-ip-range: routed onto the pods-only bridge instead.
    assert NET.service_range == "10.96.0.0/16"
    assert ipaddress.ip_network(NET.service_range) not in holes


def test_pods_get_no_masquerade_and_only_pod_to_pod_forwarding() -> None:
    bridge = NET.cni_conflist("/ipam")["plugins"][0]
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.85.0.0/24", "gateway": "10.85.0.1"}]]
    assert NET.egress_rules() == [
        ["-s", "10.85.0.0/24", "-d", "10.85.0.0/24", "-j", "RETURN"],
        ["-s", "10.85.0.0/24", "-j", "DROP"],
    ]


def test_kubelet_serves_on_the_bridge_with_no_resolver_and_a_taint() -> None:
    certs = NodeCerts(Path("/state/realnode/pki"))
    config = nodeconfig.kubelet_config(
        PATHS, NET, nodeconfig.KubeletPorts(port=10250, healthz=10248), Path("/ca.crt"), certs
    )
    assert config["address"] == NET.gateway
    assert config["resolvConf"] == "/state/realnode/resolv.conf"
    assert config["authentication"]["anonymous"] == {"enabled": False}
    assert config["registerWithTaints"] == [
        {"key": nodeconfig.NODE_LABEL, "value": "true", "effect": "NoSchedule"}
    ]
    # Everything the node writes stays under its state directory.
    for key in ("containerRuntimeEndpoint", "podLogsDir", "tlsCertFile", "resolvConf"):
        assert "/state/realnode/" in config[key]


def test_containerd_pulls_the_local_registry_over_plain_http_only() -> None:
    hosts = nodeconfig.registry_hosts_toml("127.0.0.1:5000")
    assert hosts.splitlines()[0] == 'server = "http://127.0.0.1:5000"'
    toml = nodeconfig.containerd_toml(PATHS, "127.0.0.1:5000/celeriac/pause:3.10", "/usr/lib/cni")
    assert 'sandbox_image = "127.0.0.1:5000/celeriac/pause:3.10"' in toml
    assert "SystemdCgroup = false" in toml
    assert "netns_mounts_under_state_dir = true" in toml
