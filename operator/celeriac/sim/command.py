"""`celeriac simulate`: run policies over a task trace and report queue waits and cost."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from celeriac.sim.engine import SimConfig, simulate
from celeriac.sim.policies import POLICY_NAMES, make_policy
from celeriac.sim.trace import TraceError, load_trace

COLUMNS = (
    "policy",
    "slo_attainment",
    "wait_p50_s",
    "wait_p95_s",
    "wait_p99_s",
    "pod_seconds",
    "scaling_actions",
    "max_replicas",
)


def _run(args: argparse.Namespace) -> int:
    try:
        tasks = load_trace(args.trace)
    except TraceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = SimConfig(
        concurrency=args.concurrency,
        prefetch_multiplier=args.prefetch,
        pod_startup_s=args.pod_startup,
        slo_wait_s=args.slo_wait,
    )
    names = POLICY_NAMES if args.compare else (args.policy,)
    rows = []
    for name in names:
        policy = make_policy(name, tasks, args.concurrency, args.slo_wait, args.pod_startup)
        rows.append(simulate(tasks, policy, config).summary())
    if args.json:
        print(json.dumps(rows if args.compare else rows[0]))
        return 0
    print(" | ".join(COLUMNS))
    for row in rows:
        print(" | ".join(str(row[c]) for c in COLUMNS))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a policy over a task trace",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Trace: CSV with header enqueue_s,service_s[,queue,priority], sorted by enqueue_s.",
    )
    parser.add_argument("--trace", type=Path, required=True, help="CSV trace file")
    parser.add_argument("--policy", choices=POLICY_NAMES, default="celeriac")
    parser.add_argument("--compare", action="store_true", help="run every policy and print a table")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--slo-wait", type=float, default=10.0, help="queue-wait SLO in seconds")
    parser.add_argument(
        "--pod-startup", type=float, default=20.0, help="seconds from pod request to ready"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="worker processes per pod")
    parser.add_argument("--prefetch", type=int, default=1, help="worker_prefetch_multiplier")
    parser.set_defaults(func=_run)
