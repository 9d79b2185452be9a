"""The cluster tier: one real local control plane per test session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from celeriac.api.crd import CRD_FILE
from celeriac_dev.controlplane import ControlPlane
from celeriac_dev.kubelet import ProcessKubelet
from tests.support.redis_server import RedisServer, running_redis

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    # No skip when the binaries are missing: find_binaries() raises with the fix, so CI goes red.
    plane = ControlPlane(state_dir=tmp_path_factory.mktemp("controlplane"))
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def crd_installed(cluster: ControlPlane) -> ControlPlane:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / CRD_FILE))
    cluster.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/celeryworkerpools.celeriac.dev",
    )
    return cluster


@pytest.fixture
def namespace(cluster: ControlPlane) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def process_kubelet(cluster: ControlPlane) -> ProcessKubelet:
    return cluster.start_process_kubelet()


@pytest.fixture(scope="module")
def broker() -> Iterator[RedisServer]:
    """A real redis-server as the pools' broker, one per test module."""
    # Keyspace events set by the broker's owner, as the operator no longer sets them itself.
    with running_redis(extra_args=["--notify-keyspace-events", "Kl"]) as server:
        yield server
