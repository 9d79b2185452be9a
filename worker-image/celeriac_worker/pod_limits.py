"""The pod's CPU and memory limits as the kernel enforces them: cgroup v2 or v1, and CPU affinity.

`os.cpu_count()` is the node's core count, not the pod's: a pod limited to 1 CPU on a
16-core node would grow 16 processes. The limit that matters is the CFS quota
(v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`) and the memory limit
(v2 `memory.max`, v1 `memory.limit_in_bytes`), the smallest on the path from this
process's cgroup up to the root (a pod-level cgroup can limit its containers).
Parsers are pure; `read_pod_limits` is the only function that touches files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# cgroup v1 writes "no limit" as a page-rounded LONG_MAX; anything this large is unlimited.
UNLIMITED_BYTES = 1 << 60


@dataclass(frozen=True)
class PodLimits:
    cpu_cores: float
    memory_bytes: int | None
    cpu_source: str
    memory_source: str


def parse_cpu_max(text: str) -> float | None:
    """v2 `cpu.max` ("max 100000" or "150000 100000") -> cores, None when unlimited."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    return _ratio(parts[0], parts[1])


def parse_cfs_quota(quota_text: str, period_text: str) -> float | None:
    """v1 quota and period in µs -> cores; a quota of -1 means unlimited."""
    return _ratio(quota_text.strip(), period_text.strip())


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def parse_memory_limit(text: str) -> int | None:
    """v2 `memory.max` or v1 `memory.limit_in_bytes` -> bytes, None when unlimited."""
    raw = text.strip()
    if raw == "max":
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 0 < value < UNLIMITED_BYTES else None


def parse_own_cgroups(text: str) -> dict[str, str]:
    """/proc/self/cgroup -> {controller: path}; the v2 unified entry is keyed ''."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(","):
            out[controller] = parts[2]
    return out


def _ancestors(base: Path, path: str) -> list[Path]:
    """The cgroup directory and its parents up to the mount, deepest first.

    In a container's cgroup namespace the path reads "/" and the mount is the container's
    own cgroup; a path that does not exist under the mount falls back to the mount.
    """
    out = []
    here = base / path.strip("/")
    while True:
        if here.is_dir():
            out.append(here)
        if here == base or base not in here.parents:
            break
        here = here.parent
    return out or [base]


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _smallest(values: list[tuple[float, str]]) -> tuple[float, str] | None:
    return min(values) if values else None


def _cpu_limits(root: Path, own: dict[str, str]) -> list[tuple[float, str]]:
    found: list[tuple[float, str]] = []
    if "" in own and (root / "cgroup.controllers").exists():
        for d in _ancestors(root, own[""]):
            text = _read(d / "cpu.max")
            cores = parse_cpu_max(text) if text else None
            if cores is not None:
                found.append((cores, str(d / "cpu.max")))
    for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        base = root / name
        if "cpu" not in own or not base.is_dir():
            continue
        for d in _ancestors(base, own["cpu"]):
            quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
            cores = parse_cfs_quota(quota, period) if quota and period else None
            if cores is not None:
                found.append((cores, str(d / "cpu.cfs_quota_us")))
        break
    return found


def _memory_limits(root: Path, own: dict[str, str]) -> list[tuple[float, str]]:
    found: list[tuple[float, str]] = []
    if "" in own and (root / "cgroup.controllers").exists():
        for d in _ancestors(root, own[""]):
            text = _read(d / "memory.max")
            limit = parse_memory_limit(text) if text else None
            if limit is not None:
                found.append((limit, str(d / "memory.max")))
    base = root / "memory"
    if "memory" in own and base.is_dir():
        for d in _ancestors(base, own["memory"]):
            text = _read(d / "memory.limit_in_bytes")
            limit = parse_memory_limit(text) if text else None
            if limit is not None:
                found.append((limit, str(d / "memory.limit_in_bytes")))
    return found


def read_pod_limits(
    root: Path = Path("/sys/fs/cgroup"),
    own_cgroups: str | None = None,
    cores_available: int | None = None,
) -> PodLimits:
    """The tightest CPU and memory limits over cgroup v2 and v1, and the CPUs we may run on."""
    own = parse_own_cgroups(
        own_cgroups if own_cgroups is not None else _read(Path("/proc/self/cgroup")) or ""
    )
    cores = float(cores_available or len(os.sched_getaffinity(0)))
    cpu = _smallest(_cpu_limits(root, own))
    memory = _smallest(_memory_limits(root, own))
    if cpu is not None and cpu[0] < cores:
        cpu_cores, cpu_source = cpu[0], cpu[1]
    else:
        cpu_cores, cpu_source = cores, "cpu affinity"
    return PodLimits(
        cpu_cores=cpu_cores,
        memory_bytes=None if memory is None else int(memory[0]),
        cpu_source=cpu_source,
        memory_source="unlimited" if memory is None else memory[1],
    )
