"""How many pool processes the worker should run now: pure functions of what it observed.

Growth: as many processes as there are tasks (range max at most), while the tasks
admitted so far want less CPU than the pod's budget and the pod's memory fits one more
process at the peak a process has reached. Shrink: idle processes beyond the tasks at
hand go once the pool has had nothing to do for a hold time learned from task durations.
The autoscaler gathers the readings and acts; nothing here reads a clock or a file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

# A task never measured is assumed to want a whole core: on a cold start the pool grows to
# the cores at once and past them as soon as the first task shows it mostly waits.
UNKNOWN_TASK_CORES = 1.0
# Idle processes are kept for this many mean task durations: shorter lulls are gaps
# between messages of one stream, and re-forking costs more than holding.
HOLD_TASK_DURATIONS = 4.0
MIN_HOLD_S = 1.0
# When work has come back after idle gaps shorter than the keepalive, idle processes are
# kept this much longer than the gap seen (median of the recent ones): bursts that recur
# find their processes; a lull longer than the pattern still releases them.
GAP_MARGIN = 1.25

HELD_BY_CPU = "cpu"
HELD_BY_MEMORY = "memory"
HELD_BY_RANGE = "range"


@dataclass(frozen=True)
class PoolView:
    processes: int
    range_min: int
    range_max: int
    # Estimated cores of each task in the worker: running ones first, then waiting ones
    # in arrival order; None = never measured.
    task_cores: Sequence[float | None]
    cpu_budget_cores: float
    cpu_limit_cores: float
    # CPU the pool used over the last second (catches CFS throttling, which no task's
    # own run-queue wait shows).
    cpu_used_cores: float
    memory_budget_bytes: float | None = None
    process_peak_bytes: int | None = None
    # The same tasks' shares as release judges them (lower than growth's peaks: the two
    # differ by a margin that keeps a noisy reading from growing and releasing in turn).
    task_cores_low: Sequence[float | None] | None = None


@dataclass(frozen=True)
class Sizing:
    processes: int
    held_by: str | None  # what kept the pool below the tasks at hand, if anything


def cpu_slots(task_cores: Sequence[float | None], budget_cores: float, limit_cores: float) -> int:
    """How many of these tasks (in order) to run at once.

    The next task is admitted while those admitted want less than the budget and, with
    it, no more than the pod's cores: on 2 cores at an 80 % budget CPU-bound tasks get 2
    processes (1 core < 1.6, 2 cores fit), tasks measured at 0.75 of a core also 2 (a
    third would plan 2.25 cores), sleeping tasks all of them. At least one task runs.
    """
    wanted = 0.0
    admitted = 0
    for cores in task_cores:
        share = UNKNOWN_TASK_CORES if cores is None else max(0.0, cores)
        if admitted > 0 and (wanted >= budget_cores or wanted + share > limit_cores):
            break
        wanted += share
        admitted += 1
    return admitted


def memory_slots(budget_bytes: float | None, process_peak_bytes: int | None) -> int | None:
    """Processes that fit the memory budget at their observed peak; None when unlimited or unknown."""
    if budget_bytes is None or not process_peak_bytes or process_peak_bytes <= 0:
        return None
    return max(0, math.floor(budget_bytes / process_peak_bytes))


def size_for(view: PoolView) -> Sizing:
    """The processes the tasks at hand justify, and what held the pool below them."""
    tasks = len(view.task_cores)
    wanted = min(tasks, view.range_max)
    cpu_cap = cpu_slots(view.task_cores, view.cpu_budget_cores, view.cpu_limit_cores)
    if view.cpu_used_cores >= view.cpu_budget_cores:
        cpu_cap = min(cpu_cap, view.processes)
    mem_cap = memory_slots(view.memory_budget_bytes, view.process_peak_bytes)
    target = min(wanted, cpu_cap, wanted if mem_cap is None else mem_cap)
    held_by = None
    if target < wanted:
        held_by = HELD_BY_MEMORY if mem_cap is not None and mem_cap <= cpu_cap else HELD_BY_CPU
    elif tasks > view.range_max:
        held_by = HELD_BY_RANGE
    # The floor is the operator's promise of capacity; no budget goes below it.
    return Sizing(max(view.range_min, target), held_by)


def idle_hold_s(
    mean_task_s: float | None, recent_gaps_s: Sequence[float], max_hold_s: float
) -> float:
    """How long idle surplus processes are kept, within [1 s, max_hold_s].

    A few task durations (a lull shorter than that is jitter within one stream), or, when
    the recent idle gaps ended with new work within the keepalive, through such a gap.
    """
    hold = max_hold_s if mean_task_s is None else HOLD_TASK_DURATIONS * mean_task_s
    if recent_gaps_s:
        gap = sorted(recent_gaps_s)[len(recent_gaps_s) // 2]
        if gap <= max_hold_s:
            hold = max(hold, gap * GAP_MARGIN)
    return min(max_hold_s, max(MIN_HOLD_S, hold))


def processes_to_release(view: PoolView, idle_for_s: float, hold_s: float) -> int:
    """Idle processes to stop now; billiard's shrink only ever stops idle ones.

    Surplus over the tasks at hand waits for the hold; surplus over what CPU or memory
    allows (a burst of CPU-bound tasks after an I/O-bound one grew the pool) goes at
    once, judged on the tasks' shares rather than growth's peaks and only on measured
    tasks, so neither a noisy reading nor a new task name shrinks a pool it may need.
    """
    low = size_for(replace(view, task_cores=view.task_cores_low or view.task_cores))
    measured = None not in view.task_cores
    if low.held_by in (HELD_BY_CPU, HELD_BY_MEMORY) and measured:
        over_budget = view.processes - low.processes
        if over_budget > 0:
            return over_budget
    floor = max(view.range_min, min(len(view.task_cores), view.range_max))
    surplus = view.processes - floor
    return surplus if surplus > 0 and idle_for_s >= hold_s else 0
