"""The oracle: a certified lower bound no schedule that meets the SLO undercuts, and a
clairvoyant plan that meets it; and the batch metrics (bursts, drain time, cost per task)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from celeriac.sim.bound import least_overlap, lower_bound_pod_seconds
from celeriac.sim.engine import SimConfig, Target, View, simulate
from celeriac.sim.metrics import drain_times
from celeriac.sim.oracle import OraclePolicy
from celeriac.sim.policies import POLICY_NAMES, make_policy
from celeriac.sim.trace import Task, bursts, write_trace

SLO_S = 10.0


@dataclass
class Schedule:
    """A fleet size per segment of time: any schedule a policy could produce."""

    sizes: list[int]
    segment_s: float
    name: str = "schedule"
    interval_s: float = 1.0
    idle_first: bool = True
    wake_interval_s: float | None = None
    seen: list[float] = field(default_factory=list)

    @property
    def initial_replicas(self) -> int:
        return self.sizes[0]

    def decide(self, view: View) -> Target:
        k = min(len(self.sizes) - 1, int(view.now // self.segment_s))
        return Target(self.sizes[k], 4, 4)


def mix(seed: int, n: int, long_share: float) -> list[Task]:
    rng = random.Random(seed)
    t, tasks = 0.0, []
    for _ in range(n):
        t += rng.expovariate(2.0)
        long = rng.random() < long_share
        tasks.append(Task(t, rng.uniform(60, 300) if long else rng.expovariate(1.0)))
    return tasks


def meets_slo_everywhere(waits: list[float]) -> bool:
    return all(w <= SLO_S for w in waits)


def test_one_long_task_costs_at_least_its_run() -> None:
    # It runs 100 s on one pod whatever its start: the bound is exactly that.
    assert lower_bound_pod_seconds([Task(0.0, 100.0)], 4, SLO_S) == 100.0


def test_isolated_tasks_each_pay_a_start_up() -> None:
    # Two 1 s tasks an hour apart: whatever serves each was asked for 20 s before it started.
    tasks = [Task(100.0, 1.0), Task(3700.0, 1.0)]
    assert lower_bound_pod_seconds(tasks, 4, SLO_S, startup_s=20.0) == 2 * 21.0


def test_least_overlap_is_the_smaller_of_starting_first_and_last() -> None:
    task = Task(5.0, 20.0)  # may start in [5, 15]
    assert least_overlap(task, SLO_S, 0.0, 10.0) == 0.0  # started at 15, it misses the block
    assert least_overlap(task, SLO_S, 15.0, 25.0) == 10.0  # either way it runs through it
    assert least_overlap(task, SLO_S, 25.0, 40.0) == 0.0  # started at 5, it ends at 25


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 300), st.floats(0.05, 120)), min_size=1, max_size=40),
    st.lists(st.integers(0, 6), min_size=1, max_size=12),
    st.sampled_from([5.0, 20.0, 60.0]),
    st.floats(0, 20),
)
def test_no_schedule_that_meets_the_slo_everywhere_is_cheaper_than_the_bound(
    rows: list[tuple[float, float]], sizes: list[int], segment_s: float, startup_s: float
) -> None:
    tasks = [Task(e, s) for e, s in sorted(rows)]
    config = SimConfig(concurrency=4, pod_startup_s=startup_s, slo_wait_s=SLO_S, drain_tail_s=0)
    result = simulate(tasks, Schedule(sizes, segment_s, interval_s=segment_s), config)
    if meets_slo_everywhere(result.waits):
        bound = lower_bound_pod_seconds(tasks, 4, SLO_S, startup_s)
        assert result.pod_seconds >= bound - 1e-6


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_policy_that_meets_the_slo_everywhere_beats_the_bound(seed: int) -> None:
    tasks = mix(seed, 1200, long_share=0.04)
    config = SimConfig(pod_startup_s=20.0, slo_wait_s=SLO_S)
    bound = lower_bound_pod_seconds(tasks, 4, SLO_S, 20.0)
    met = []
    for name in POLICY_NAMES:
        result = simulate(tasks, make_policy(name, tasks, 4, SLO_S, 20.0, config), config)
        if meets_slo_everywhere(result.waits):
            met.append(name)
            assert result.pod_seconds >= bound, name
    assert "oracle" in met


def test_the_oracle_meets_the_slo_on_every_task_with_long_tasks_and_a_dump() -> None:
    tasks = mix(7, 1500, long_share=0.05)
    tasks += [Task(tasks[-1].enqueue_s + 60 + i * 0.01, 0.5) for i in range(800)]
    config = SimConfig(pod_startup_s=20.0, slo_wait_s=SLO_S)
    oracle = OraclePolicy(tasks, 4, 20.0, SLO_S, config=config)
    result = simulate(tasks, oracle, config)
    assert meets_slo_everywhere(result.waits)
    assert result.pod_seconds >= lower_bound_pod_seconds(tasks, 4, SLO_S, 20.0)


def test_bursts_are_runs_of_buckets_far_above_the_mean() -> None:
    quiet = [Task(float(t), 1.0) for t in range(0, 600, 5)]  # 0.2/s
    dump = [Task(300.0 + i * 0.01, 1.0) for i in range(200)]  # 200 in 2 s
    tasks = sorted(quiet + dump, key=lambda t: t.enqueue_s)
    found = bursts(tasks)
    assert len(found) == 1
    first, last = found[0]
    assert last - first + 1 == 200 + 2  # the dump and the two quiet tasks in its bucket
    assert bursts(quiet) == []


def test_drain_time_is_from_a_bursts_first_arrival_to_its_last_start() -> None:
    quiet = [Task(float(t), 1.0) for t in range(0, 600, 5)]
    dump = [Task(300.0, 1.0) for _ in range(100)]
    tasks = sorted(quiet + dump, key=lambda t: t.enqueue_s)
    waits = [0.0] * len(tasks)
    waits[tasks.index(dump[0]) + 50] = 42.0  # the last of the dump to start
    assert drain_times(tasks, waits) == [42.0]


def test_cli_reports_batch_metrics_and_the_bound(tmp_path: Path) -> None:
    quiet = [Task(float(t), 1.0) for t in range(0, 600, 5)]
    dump = [Task(300.0 + i * 0.001, 0.5) for i in range(400)]
    trace = tmp_path / "dump.csv"
    write_trace(trace, sorted(quiet + dump, key=lambda t: t.enqueue_s))
    out = subprocess.run(
        [sys.executable, "-m", "celeriac", "simulate", "--trace", str(trace), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    row = json.loads(out.stdout)
    assert row["bursts"] == 1
    assert row["drain_mean_s"] == row["drain_max_s"] > 0
    assert row["pod_seconds_per_task"] == round(row["pod_seconds"] / 520, 3)
    assert row["pod_seconds_lower_bound"] > 0
    table = subprocess.run(
        [sys.executable, "-m", "celeriac", "simulate", "--trace", str(trace)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "drain_mean_s" in table.splitlines()[0]
    assert "lower bound for any policy meeting the SLO on every task" in table
