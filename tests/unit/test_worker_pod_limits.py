"""The pod's CPU and memory limits read from cgroup v1 and v2 trees laid out on disk."""

from pathlib import Path

import pytest

from celeriac_worker.pod_limits import (
    parse_cfs_quota,
    parse_cpu_max,
    parse_memory_limit,
    parse_own_cgroups,
    read_pod_limits,
)

MiB = 1 << 20


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("text", "cores"), [("max 100000", None), ("150000 100000", 1.5), ("50000 100000\n", 0.5)]
)
def test_parse_cpu_max(text: str, cores: float | None) -> None:
    assert parse_cpu_max(text) == cores


def test_parse_cfs_quota_minus_one_is_unlimited() -> None:
    assert parse_cfs_quota("-1\n", "100000\n") is None
    assert parse_cfs_quota("200000\n", "100000\n") == 2.0


@pytest.mark.parametrize(
    ("text", "limit"),
    [("max\n", None), ("536870912\n", 512 * MiB), ("9223372036854771712\n", None), ("x", None)],
)
def test_parse_memory_limit(text: str, limit: int | None) -> None:
    assert parse_memory_limit(text) == limit


def test_parse_own_cgroups_splits_joined_controllers() -> None:
    own = parse_own_cgroups("4:memory:/pod/c1\n2:cpu,cpuacct:/pod/c1\n0::/pod/c1\n")
    assert own == {"memory": "/pod/c1", "cpu": "/pod/c1", "cpuacct": "/pod/c1", "": "/pod/c1"}


def test_v2_limits_take_the_tightest_ancestor(tmp_path: Path) -> None:
    write(tmp_path / "cgroup.controllers", "cpu memory")
    write(tmp_path / "kubepods/pod1/cpu.max", "100000 100000")  # pod: 1 core
    write(tmp_path / "kubepods/pod1/memory.max", "max")
    write(tmp_path / "kubepods/pod1/c1/cpu.max", "max 100000")
    write(tmp_path / "kubepods/pod1/c1/memory.max", str(512 * MiB))
    limits = read_pod_limits(tmp_path, "0::/kubepods/pod1/c1\n", cores_available=16)
    assert (limits.cpu_cores, limits.memory_bytes) == (1.0, 512 * MiB)
    assert limits.cpu_source.endswith("pod1/cpu.max")


def test_v1_limits_from_the_cpu_and_memory_hierarchies(tmp_path: Path) -> None:
    write(tmp_path / "cpu,cpuacct/pod1/c1/cpu.cfs_quota_us", "250000")
    write(tmp_path / "cpu,cpuacct/pod1/c1/cpu.cfs_period_us", "100000")
    write(tmp_path / "memory/pod1/memory.limit_in_bytes", str(1024 * MiB))
    write(tmp_path / "memory/pod1/c1/memory.limit_in_bytes", "9223372036854771712")
    own = "3:cpu,cpuacct:/pod1/c1\n4:memory:/pod1/c1\n"
    limits = read_pod_limits(tmp_path, own, cores_available=16)
    assert (limits.cpu_cores, limits.memory_bytes) == (2.5, 1024 * MiB)


def test_a_container_namespace_reads_the_mount_itself(tmp_path: Path) -> None:
    # Inside a cgroup namespace /proc/self/cgroup says "/" and the mount is the container's cgroup.
    write(tmp_path / "cgroup.controllers", "cpu memory")
    write(tmp_path / "cpu.max", "200000 100000")
    write(tmp_path / "memory.max", str(256 * MiB))
    limits = read_pod_limits(tmp_path, "0::/\n", cores_available=8)
    assert (limits.cpu_cores, limits.memory_bytes) == (2.0, 256 * MiB)


def test_no_limits_means_the_cores_we_may_run_on(tmp_path: Path) -> None:
    limits = read_pod_limits(tmp_path, "0::/\n", cores_available=3)
    assert (limits.cpu_cores, limits.memory_bytes) == (3.0, None)
    assert limits.cpu_source == "cpu affinity"


def test_a_quota_above_the_cores_available_is_capped_by_them(tmp_path: Path) -> None:
    write(tmp_path / "cgroup.controllers", "cpu")
    write(tmp_path / "cpu.max", "800000 100000")
    assert read_pod_limits(tmp_path, "0::/\n", cores_available=2).cpu_cores == 2.0
