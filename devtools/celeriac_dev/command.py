"""`celeriac-dev cluster up|down`: the local control plane from the command line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from celeriac_dev.controlplane import (
    ControlPlane,
    ControlPlaneError,
    cache_dir,
    stop_recorded,
)


def default_state_dir() -> Path:
    return cache_dir() / "clusters" / "local"


def _up(args: argparse.Namespace) -> int:
    state: Path = args.state_dir
    if (state / "pids.json").exists():
        stop_recorded(state)
    started = time.monotonic()
    try:
        cluster = ControlPlane(state_dir=state)
        cluster.start()
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"control plane up in {time.monotonic() - started:.1f} s at {cluster.server}")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = stop_recorded(args.state_dir)
    print(f"stopped {stopped} processes")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("cluster", help="start or stop the local control plane")
    sub = parser.add_subparsers(dest="action", required=True)
    for name, func, text in (
        ("up", _up, "start etcd, apiserver, controllers, scheduler and kwok in the background"),
        ("down", _down, "stop a control plane started by `cluster up`"),
    ):
        action = sub.add_parser(name, help=text)
        action.add_argument("--state-dir", type=Path, default=default_state_dir())
        action.set_defaults(func=func)
