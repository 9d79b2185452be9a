"""Leaves the machine as the real node found it: pod and shim processes, mounts (overlay
rootfs, tmpfs volumes, network namespaces), the pods' cgroups, kube-proxy's iptables chains,
the node's bridge, routes and egress rule, and the state directory.

Also runs before a start, so a run that crashed (or was SIGKILLed) is cleaned up by the next.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from celeriac_dev import nodenet
from celeriac_dev.nodeconfig import CGROUP_ROOT

CGROUP_MOUNT = Path("/sys/fs/cgroup")


def cgroup_v1_hierarchies() -> list[Path]:
    """Every cgroup v1 hierarchy mounted here (the machine kind runs cgroup v1)."""
    if not CGROUP_MOUNT.is_dir():
        return []
    return sorted(
        p
        for p in CGROUP_MOUNT.iterdir()
        if p.is_dir() and p.name != "unified" and (p / "cgroup.procs").exists()
    )


def prepare_cgroups() -> None:
    """The kubelet's cgroup root in every hierarchy; cpuset needs its CPUs and memory nodes
    copied from the parent before any task may join."""
    for hierarchy in cgroup_v1_hierarchies():
        ours = hierarchy / CGROUP_ROOT
        ours.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / knob).exists() and not (ours / knob).read_text().strip():
                (ours / knob).write_text((hierarchy / knob).read_text())


def _pod_pids() -> set[int]:
    pids: set[int] = set()
    for hierarchy in cgroup_v1_hierarchies():
        for procs in (hierarchy / CGROUP_ROOT).rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                pids.update(int(line) for line in procs.read_text().split())
    return pids


def _shim_pids(root: Path) -> set[int]:
    """containerd's runc shims outlive containerd by design; ours name our socket."""
    needle = str(root).encode()
    found: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes()
            if b"containerd-shim" in cmdline and needle in cmdline:
                found.add(int(proc.name))
    return found


def _kill(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def stop_pods(root: Path) -> None:
    """SIGKILL for every process left in the pods' cgroups and for our shims. The kubelet has
    already stopped: pod shutdown with grace periods is the kubelet's job while it runs."""
    for _ in range(50):
        pids = _pod_pids() | _shim_pids(root)
        if not pids:
            return
        _kill(pids)
        time.sleep(0.1)


def _recorded_processes(root: Path) -> None:
    pids_file = root / "pids.json"
    if not pids_file.exists():
        return
    with contextlib.suppress(ValueError, OSError):
        for pid in json.loads(pids_file.read_text()).values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid), signal.SIGKILL)


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    return points


def unmount_all(root: Path) -> None:
    """Deepest first, lazily if busy (a dying process may still hold one)."""
    for point in sorted(_mounts_under(root), key=len, reverse=True):
        if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _remove_cgroups() -> None:
    for hierarchy in cgroup_v1_hierarchies():
        ours = hierarchy / CGROUP_ROOT
        if not ours.is_dir():
            continue
        for directory in sorted(
            (p for p in ours.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            ours.rmdir()


def _remove_kube_chains() -> None:
    """The KUBE-* chains the kubelet (KUBE-FIREWALL, canaries) and kube-proxy add, in every
    table of both families: first the rules that jump to them, then the chains."""
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            listed = subprocess.run(
                [tool, "-w", "-t", table, "-S"], capture_output=True, text=True, check=False
            )
            chains = []
            for line in listed.stdout.splitlines():
                words = line.split()
                if words[:1] == ["-N"] and words[1].startswith("KUBE-"):
                    chains.append(words[1])
                elif words[:1] == ["-A"] and "-j" in words:
                    target = words[words.index("-j") + 1]
                    if target.startswith("KUBE-") and not words[1].startswith("KUBE-"):
                        _iptables(tool, table, ["-D", *words[1:]])
            for action in ("-F", "-X"):
                for chain in chains:
                    _iptables(tool, table, [action, chain])


def _iptables(tool: str, table: str, args: list[str]) -> None:
    subprocess.run([tool, "-w", "-t", table, *args], capture_output=True, check=False)


def clean(root: Path, net: nodenet.NodeNetwork, bin_dir: Path) -> None:
    _recorded_processes(root)
    stop_pods(root)
    if root.exists():
        unmount_all(root)
    _remove_cgroups()
    kube_proxy = bin_dir / "kube-proxy"
    if kube_proxy.exists():
        # Removes the KUBE-* chains and rules of every mode kube-proxy knows.
        subprocess.run([str(kube_proxy), "--cleanup"], capture_output=True, timeout=60, check=False)
    _remove_kube_chains()
    nodenet.teardown(net)
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
