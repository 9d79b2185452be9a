"""A certified lower bound on the pod-seconds of any schedule that starts every task within
the SLO, given every arrival and service time in advance.

Any such schedule starts task i at some s_i in [e_i, e_i + SLO] and runs it for S_i on one
process; a pod runs at most `concurrency` processes and is billed whenever it exists, so at
every instant billed pods n(t) >= running(t) / concurrency. Over any block of time B,
three quantities are therefore at most the pod-seconds spent in B, whatever the s_i:

- energy: each task's least overlap with B over its allowed starts (the overlap of [s, s+S]
  with B is unimodal in s, so the least is at s = e or s = e + SLO), summed, / concurrency;
- compulsory part: a task longer than the SLO runs through [e + SLO, e + S] whatever its
  start, so n(t) >= ceil(tasks in their compulsory part at t / concurrency) pointwise;
- presence: the pod that runs a task was asked for a start-up D before it started (or was
  there from time 0), so some pod exists through [max(0, s - D), s + S], inside the task's
  window [max(0, e - D), e + SLO + S]; for tasks whose windows lie in B and do not overlap
  one another, those stretches are disjoint, so their lengths (at least min(D, e) + S) add up.

The bound is the largest of the three per block, summed over disjoint blocks, and the best of
a few block lengths (each partition gives a valid bound). Start-up time and integrality of
pods across blocks are relaxed, which is what keeps the bound below the best schedule.
"""

from __future__ import annotations

import math
from collections import defaultdict

from celeriac.sim.trace import Task

BLOCK_LENGTHS_S = (10.0, 30.0, 60.0, 300.0, 3600.0)


def _overlap(start: float, length: float, lo: float, hi: float) -> float:
    return max(0.0, min(start + length, hi) - max(start, lo))


def least_overlap(task: Task, slo_s: float, lo: float, hi: float) -> float:
    """The least time task spends running inside [lo, hi) over its allowed starts."""
    early = _overlap(task.enqueue_s, task.service_s, lo, hi)
    late = _overlap(task.enqueue_s + slo_s, task.service_s, lo, hi)
    return min(early, late)


def _block_energy(tasks: list[Task], slo_s: float, block_s: float) -> dict[int, list[float]]:
    """Per block: [summed least overlap, largest single least overlap]."""
    blocks: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for task in tasks:
        first = int(task.enqueue_s // block_s)
        last = int((task.enqueue_s + slo_s + task.service_s) // block_s)
        for k in range(first, last + 1):
            need = least_overlap(task, slo_s, k * block_s, (k + 1) * block_s)
            if need > 0:
                acc = blocks[k]
                acc[0] += need
                acc[1] = max(acc[1], need)
    return blocks


def _block_presence(
    tasks: list[Task], slo_s: float, startup_s: float, block_s: float
) -> dict[int, float]:
    """Per block: summed presence of tasks with disjoint windows inside it (earliest window
    end first: any disjoint choice is a valid bound, this one is quick)."""
    windows: dict[int, list[tuple[float, float, float]]] = defaultdict(list)
    for t in tasks:
        start, end = max(0.0, t.enqueue_s - startup_s), t.enqueue_s + slo_s + t.service_s
        k = int(start // block_s)
        if end <= (k + 1) * block_s:
            windows[k].append((end, start, min(startup_s, t.enqueue_s) + t.service_s))
    presence: dict[int, float] = {}
    for k, found in windows.items():
        total, free_from = 0.0, float("-inf")
        for end, start, length in sorted(found):
            if start >= free_from:
                total, free_from = total + length, end
        presence[k] = total
    return presence


def _compulsory_pods(
    tasks: list[Task], slo_s: float, concurrency: int, block_s: float
) -> dict[int, float]:
    """Per block: the integral of ceil(tasks in their compulsory part / concurrency)."""
    edges: list[tuple[float, int]] = []
    for t in tasks:
        if t.service_s > slo_s:
            edges += [(t.enqueue_s + slo_s, 1), (t.enqueue_s + t.service_s, -1)]
    edges.sort()
    per_block: dict[int, float] = defaultdict(float)
    count, since = 0, 0.0
    for at, step in edges:
        pods = math.ceil(count / concurrency)
        while pods and since < at:
            k = int(since // block_s)
            until = min(at, (k + 1) * block_s)
            per_block[k] += pods * (until - since)
            since = until
        count, since = count + step, at
    return per_block


def bound_for_blocks(
    tasks: list[Task], concurrency: int, slo_s: float, startup_s: float, block_s: float
) -> float:
    energy = _block_energy(tasks, slo_s, block_s)
    compulsory = _compulsory_pods(tasks, slo_s, concurrency, block_s)
    presence = _block_presence(tasks, slo_s, startup_s, block_s)
    total = 0.0
    for k in set(energy) | set(compulsory) | set(presence):
        work, single = energy.get(k, [0.0, 0.0])
        total += max(work / concurrency, single, compulsory.get(k, 0.0), presence.get(k, 0.0))
    return total


def lower_bound_pod_seconds(
    tasks: list[Task], concurrency: int, slo_s: float, startup_s: float = 0.0
) -> float:
    """No schedule that starts every task within `slo_s`, on pods that take `startup_s` from
    request to ready, bills fewer pod-seconds."""
    if not tasks:
        return 0.0
    return max(bound_for_blocks(tasks, concurrency, slo_s, startup_s, b) for b in BLOCK_LENGTHS_S)
