"""The simulator: agrees with queueing theory, loses no task, and says what is wrong with a trace."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from celeriac.sim.engine import SimConfig, View, simulate
from celeriac.sim.policies import POLICY_NAMES, StaticPolicy, erlang_c, make_policy
from celeriac.sim.trace import Task, TraceError, load_trace, write_trace


def poisson(seed: int, rate: float, service_s: float, n: int) -> list[Task]:
    rng = random.Random(seed)
    t, tasks = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        tasks.append(Task(t, rng.expovariate(1 / service_s)))
    return tasks


def test_a_static_fleet_under_poisson_load_matches_erlang_c() -> None:
    rate, service, servers = 0.6, 10.0, 8  # offered load 6 Erlangs on 8 slots (rho 0.75)
    waited, mean_wait = [], []
    # 8 seeds x 30k tasks: the seed-to-seed spread of P(wait) is about 5 %, the mean's much less.
    for seed in range(8):
        result = simulate(
            poisson(seed, rate, service, 30_000),
            StaticPolicy(2, 4, "static"),
            SimConfig(concurrency=4, dt_s=0.05, pod_startup_s=0, drain_tail_s=0),
        )
        waited.append(sum(1 for w in result.waits if w > 0.05) / len(result.waits))
        mean_wait.append(sum(result.waits) / len(result.waits))
    p_wait = erlang_c(servers, rate * service)
    expected_mean = p_wait / (servers / service - rate)
    assert sum(waited) / len(waited) == pytest.approx(p_wait, rel=0.03)
    assert sum(mean_wait) / len(mean_wait) == pytest.approx(expected_mean, rel=0.05)


def test_erlang_c_known_value() -> None:
    # Two servers, one Erlang: P(wait) = 1/3.
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)


class Recorder:
    name = "recorder"
    interval_s = 1.0
    idle_first = False

    def __init__(self) -> None:
        self.views: list[View] = []

    def decide(self, view: View) -> tuple[int, int]:
        self.views.append(view)
        return 1, 1


def test_prefetched_tasks_are_invisible_to_llen() -> None:
    tasks = [Task(0.0, 100.0) for _ in range(20)]
    recorder = Recorder()
    simulate(
        tasks, recorder, SimConfig(concurrency=1, prefetch_multiplier=4, dt_s=0.5, drain_tail_s=0)
    )
    view = next(v for v in recorder.views if v.now >= 1.0)
    assert view.running == 1
    assert view.reserved == 4  # one running, three prefetched: the unacked hash
    assert view.llen == 16  # what a LLEN-only scaler sees


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_policy_finishes_every_task(name: str) -> None:
    tasks = poisson(3, 4.0, 2.0, 1500)
    policy = make_policy(name, tasks, 4, 10.0, 20.0)
    result = simulate(tasks, policy, SimConfig())
    assert result.tasks == 1500
    assert all(math.isfinite(w) for w in result.waits)


def test_the_same_trace_gives_the_same_result() -> None:
    tasks = poisson(5, 3.0, 2.0, 800)
    one = simulate(tasks, make_policy("celeriac", tasks, 4, 10.0, 20.0), SimConfig()).summary()
    two = simulate(tasks, make_policy("celeriac", tasks, 4, 10.0, 20.0), SimConfig()).summary()
    assert one == two


def test_trace_errors_name_the_row(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("enqueue_s,service_s\n1,1\n0.5,1\n")
    with pytest.raises(TraceError, match=r"t.csv:3: rows must be sorted"):
        load_trace(path)
    path.write_text("enqueue_s,service_s\n1,-2\n")
    with pytest.raises(TraceError, match=r"t.csv:2: enqueue_s and service_s must be >= 0"):
        load_trace(path)
    path.write_text("start,duration\n1,1\n")
    with pytest.raises(TraceError, match="header lacks enqueue_s, service_s"):
        load_trace(path)
    with pytest.raises(TraceError, match="no such file"):
        load_trace(tmp_path / "missing.csv")


def test_cli_prints_the_summary_as_json_and_refuses_bad_traces(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    write_trace(trace, poisson(1, 2.0, 1.0, 300))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "celeriac",
            "simulate",
            "--trace",
            str(trace),
            "--policy",
            "keda",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    summary = json.loads(out.stdout)
    assert {
        "tasks",
        "slo_wait_s",
        "slo_attainment",
        "wait_p50_s",
        "wait_p95_s",
        "wait_p99_s",
        "pod_seconds",
        "scaling_actions",
        "max_replicas",
    } <= set(summary)
    assert summary["tasks"] == 300
    bad = tmp_path / "bad.csv"
    bad.write_text("enqueue_s,service_s\n2,1\n1,1\n")
    failed = subprocess.run(
        [sys.executable, "-m", "celeriac", "simulate", "--trace", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert failed.returncode == 2
    assert "rows must be sorted" in failed.stderr
    assert "Traceback" not in failed.stderr
