"""Each pod's in-process `--autoscale` range from the CPU its workers report."""

from __future__ import annotations

import math

from celeriac.policy.model import PolicyInput

# Below this share of the CPU target a pod gets its whole range back.
RELEASE_SHARE = 0.6


def pod_range(inp: PolicyInput, previous_max: int | None) -> tuple[int, int, str | None]:
    """Per-pod (min, max) processes, and a note when CPU held the maximum down.

    A CPU-bound pod gets fewer processes, so the pool gets more pods instead.
    """
    bounds = inp.concurrency
    top = bounds.max
    floor = max(bounds.min, 1)
    workers = [w for w in (inp.signals.workers or []) if w.cpu_percent is not None and w.pool_size]
    if not workers:
        return bounds.min, previous_max or top, None
    target = inp.scaling.target_cpu_utilization_percent / 100.0
    utils = [(w.cpu_percent or 0.0) / (100.0 * (w.cpu_limit_cores or 1.0)) for w in workers]
    util = sum(utils) / len(utils)
    processes = sum(w.pool_size for w in workers) / len(workers)
    current = previous_max or top
    if util > target:
        # Each process already burns CPU the pod does not have: fewer per pod, more pods.
        shrunk = max(floor, min(top, math.floor(processes * target / util)))
        return bounds.min, min(current, shrunk), f"CPU {util:.0%} > {target:.0%}"
    if util < target * RELEASE_SHARE:
        return bounds.min, top, None
    return bounds.min, min(max(current, floor), top), None
