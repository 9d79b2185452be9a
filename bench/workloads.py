"""Workload shapes for the policy benchmark: each returns a sorted task trace for a seed."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

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


SHAPES: dict[str, Callable[[int], list[Task]]] = {
    "steady": steady,
    "step-10x": step,
    "diurnal": diurnal,
    "on-off": on_off,
    "heavy-tail": heavy_tail,
    "idle-then-10k": idle_then_dump,
}
