"""Workload shapes for the policy benchmark: each returns a sorted task trace for a seed."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from celeriac.api.pool import ScheduleWindow
from celeriac.sim.trace import Task

MEAN_SERVICE_S = 2.0


def _poisson(
    rng: random.Random,
    rate_at: Callable[[float], float],
    duration_s: float,
    service: Callable[[], float],
) -> list[Task]:
    """Non-homogeneous Poisson arrivals by thinning against the peak rate."""
    peak = max(rate_at(t) for t in range(int(duration_s) + 1))
    tasks, t = [], 0.0
    while True:
        t += rng.expovariate(peak)
        if t >= duration_s:
            return tasks
        if rng.random() <= rate_at(t) / peak:
            tasks.append(Task(t, service()))


def steady(seed: int) -> list[Task]:
    rng = random.Random(seed)
    return _poisson(rng, lambda t: 3.0, 1800, lambda: rng.expovariate(1 / MEAN_SERVICE_S))


def step(seed: int) -> list[Task]:
    rng = random.Random(seed)
    return _poisson(
        rng,
        lambda t: 5.0 if 600 <= t < 1200 else 0.5,
        1800,
        lambda: rng.expovariate(1 / MEAN_SERVICE_S),
    )


def diurnal(seed: int) -> list[Task]:
    rng = random.Random(seed)
    day = 3600.0  # one compressed "day"
    return _poisson(
        rng,
        lambda t: 0.3 + 4.7 * (1 - math.cos(2 * math.pi * t / day)) / 2,
        day,
        lambda: rng.expovariate(1 / MEAN_SERVICE_S),
    )


def on_off(seed: int) -> list[Task]:
    rng = random.Random(seed)
    return _poisson(
        rng,
        lambda t: 8.0 if (t % 300) < 60 else 0.2,
        1800,
        lambda: rng.expovariate(1 / MEAN_SERVICE_S),
    )


def heavy_tail(seed: int) -> list[Task]:
    rng = random.Random(seed)
    # Pareto service times (alpha 1.5, mean 2 s): most tasks short, a few very long.
    alpha, scale = 1.5, MEAN_SERVICE_S * (1.5 - 1) / 1.5
    return _poisson(rng, lambda t: 2.0, 1800, lambda: min(600.0, scale * rng.paretovariate(alpha)))


def idle_then_dump(seed: int) -> list[Task]:
    rng = random.Random(seed)
    quiet = _poisson(rng, lambda t: 0.05, 900, lambda: rng.expovariate(1 / MEAN_SERVICE_S))
    dump = [Task(900.0 + i * 0.001, rng.expovariate(1 / 0.5)) for i in range(10_000)]
    return quiet + dump


DAY_S = 86_400.0


def long_task_mix(seed: int) -> list[Task]:
    """Short tasks at high priority with 5 % of 1-10 minute reports at low priority (Redis
    priority 0 is served first): the long ones hold processes while short ones keep coming."""
    rng = random.Random(seed)

    def service() -> float:
        return rng.uniform(60.0, 600.0) if rng.random() < 0.05 else rng.expovariate(1.0)

    tasks = _poisson(rng, lambda t: 4.0, 1800, service)
    return [Task(t.enqueue_s, t.service_s, priority=9 if t.service_s >= 60 else 0) for t in tasks]


def _daily(days: int, at_s: float, burst: Callable[[float], list[Task]]) -> list[Task]:
    """An idle queue, and the same burst at the same time every day."""
    tasks = [task for day in range(days) for task in burst(day * DAY_S + at_s)]
    return sorted(tasks, key=lambda t: t.enqueue_s)


def recurring_daily_burst(seed: int) -> list[Task]:
    """3 days: at 09:00 every day 4000 tasks of ~1 s arrive within a minute."""
    rng = random.Random(seed)

    def burst(start: float) -> list[Task]:
        return [Task(start + rng.uniform(0, 60), rng.expovariate(1.0)) for _ in range(4000)]

    return _daily(3, 9 * 3600.0, burst)


def recurring_batch_dump(seed: int) -> list[Task]:
    """3 days: at 02:00 every day a batch job enqueues 5000 tasks of ~0.5 s at once."""
    rng = random.Random(seed)

    def dump(start: float) -> list[Task]:
        return [Task(start + i * 0.001, rng.expovariate(2.0)) for i in range(5000)]

    return _daily(3, 2 * 3600.0, dump)


SHAPES: dict[str, Callable[[int], list[Task]]] = {
    "steady": steady,
    "step-10x": step,
    "diurnal": diurnal,
    "on-off": on_off,
    "heavy-tail": heavy_tail,
    "idle-then-10k": idle_then_dump,
    "long-task-mix": long_task_mix,
    "daily-burst": recurring_daily_burst,
    "daily-batch-dump": recurring_batch_dump,
}

# What an owner who knows the recurring load declares (spec.scaling.schedules), for the
# `celeriac-scheduled` runs: floors sized from the burst (4000 x 1 s within a minute: ~67 busy
# slots / 0.85 = 20 pods; 5000 x 0.5 s started within 10 s: 250 slots = 63 pods).
SCHEDULES: dict[str, list[ScheduleWindow]] = {
    "daily-burst": [
        ScheduleWindow(name="morning", start="0 9 * * *", end="2 9 * * *", min_replicas=20)
    ],
    "daily-batch-dump": [
        ScheduleWindow(name="nightly", start="0 2 * * *", end="1 2 * * *", min_replicas=64)
    ],
}
