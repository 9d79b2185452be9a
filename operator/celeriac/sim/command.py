"""`celeriac simulate`: run policies over a task trace and report queue waits and cost."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from celeriac.sim.bound import lower_bound_pod_seconds
from celeriac.sim.engine import SimConfig, simulate
from celeriac.sim.metrics import HEADLINE
from celeriac.sim.policies import POLICY_NAMES, make_policy
from celeriac.sim.trace import TraceError, load_trace

COLUMNS = ("policy", "tasks", *HEADLINE)


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
        max_replicas=args.max_replicas,
    )
    names = POLICY_NAMES if args.compare else (args.policy,)
    bound = lower_bound_pod_seconds(tasks, args.concurrency, args.slo_wait, args.pod_startup)
    bound = round(bound, 1)
    rows = []
    for name in names:
        policy = make_policy(name, tasks, args.concurrency, args.slo_wait, args.pod_startup, config)
        row = simulate(tasks, policy, config).summary()
        # What no policy that meets the SLO on every task can undercut (sim.bound).
        row["pod_seconds_lower_bound"] = bound
        rows.append(row)
    if args.json:
        print(json.dumps(rows if args.compare else rows[0]))
        return 0
    cells = [[_cell(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(c), *(len(line[k]) for line in cells)) for k, c in enumerate(COLUMNS)]
    print("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    for line in cells:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)))
    print(f"lower bound for any policy meeting the SLO on every task: {bound} pod-seconds")
    return 0


def _cell(value: float | int | str | None) -> str:
    return "-" if value is None else str(value)


def _positive(kind: type[int] | type[float], allow_zero: bool = False) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise argparse.ArgumentTypeError(f"{text} must be {bound}")
        return value

    return parse


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
    parser.add_argument(
        "--slo-wait", type=_positive(float), default=10.0, help="queue-wait SLO in seconds"
    )
    parser.add_argument(
        "--pod-startup",
        type=_positive(float, allow_zero=True),
        default=20.0,
        help="seconds from pod request to ready",
    )
    parser.add_argument(
        "--concurrency", type=_positive(int), default=4, help="worker processes per pod"
    )
    parser.add_argument(
        "--prefetch", type=_positive(int), default=1, help="worker_prefetch_multiplier"
    )
    parser.add_argument(
        "--max-replicas", type=_positive(int), default=100, help="most pods any policy may have"
    )
    parser.set_defaults(func=_run)
