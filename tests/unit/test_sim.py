"""The simulator: agrees with queueing theory, models Celery's worker and Redis as the policy
sees them, loses no task, and says what is wrong with a trace."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

from celeriac.sim.baselines import KedaPolicy, StaticPolicy
from celeriac.sim.engine import SimConfig, Target, View, simulate
from celeriac.sim.metrics import erlang_c, erlang_wait_within
from celeriac.sim.policies import POLICY_NAMES, make_policy
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
    waited, mean_wait, within = [], [], []
    # 8 seeds x 30k tasks: the seed-to-seed spread of P(wait) is about 5 %, the mean's less.
    for seed in range(8):
        result = simulate(
            poisson(seed, rate, service, 30_000),
            StaticPolicy(2, 4, "static"),
            SimConfig(concurrency=4, pod_startup_s=0, drain_tail_s=0),
        )
        waited.append(sum(1 for w in result.waits if w > 0) / len(result.waits))
        mean_wait.append(sum(result.waits) / len(result.waits))
        within.append(sum(1 for w in result.waits if w <= 10.0) / len(result.waits))
    p_wait = erlang_c(servers, rate * service)
    expected_mean = p_wait / (servers / service - rate)
    assert sum(waited) / len(waited) == pytest.approx(p_wait, rel=0.03)
    assert sum(mean_wait) / len(mean_wait) == pytest.approx(expected_mean, rel=0.05)
    assert sum(within) / len(within) == pytest.approx(
        erlang_wait_within(servers, rate, service, 10.0), abs=0.01
    )


def test_erlang_c_known_value() -> None:
    # Two servers, one Erlang: P(wait) = 1/3.
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)


class Scripted:
    """Asks for a fixed fleet and records what it was shown."""

    name = "scripted"
    idle_first = False
    wake_interval_s: float | None = None

    def __init__(
        self, replicas: int, range_max: int, initial: int = 1, interval_s: float = 1.0
    ) -> None:
        self.replicas = replicas
        self.range_max = range_max
        self.initial_replicas = initial
        self.interval_s = interval_s
        self.views: list[View] = []
        self.processes: dict[float, list[int]] = {}

    def decide(self, view: View) -> Target:
        self.views.append(view)
        self.processes[view.now] = [p.processes for p in view.pods]
        return Target(self.replicas, 1, self.range_max)


def test_prefetched_tasks_are_invisible_to_llen() -> None:
    tasks = [Task(0.0, 100.0) for _ in range(20)]
    policy = Scripted(1, 1)
    simulate(tasks, policy, SimConfig(concurrency=1, prefetch_multiplier=4, drain_tail_s=0))
    view = next(v for v in policy.views if v.now >= 1.0)
    assert view.running == 1
    assert view.reserved == 4  # one running, three prefetched: the unacked hash
    assert view.llen == 16  # what a LLEN-only scaler sees
    assert view.waiting == 16


def test_priority_sub_lists_are_waiting_but_not_in_the_plain_list() -> None:
    tasks = [Task(0.0, 50.0, priority=p) for p in (0, 0, 5, 9, 9)]
    policy = Scripted(1, 1)
    simulate(tasks, policy, SimConfig(concurrency=1, drain_tail_s=0))
    view = next(v for v in policy.views if v.now >= 1.0)
    # The first task runs; of the four left, two sit in the \x06\x163 and \x06\x169 sub-lists.
    assert (view.waiting, view.llen) == (4, 1)


def test_the_worker_grows_to_its_range_max_then_shrinks_after_keepalive() -> None:
    tasks = [Task(0.0, 10.0) for _ in range(6)]
    policy = Scripted(1, 4, interval_s=5.0)
    simulate(tasks, policy, SimConfig(concurrency=4, keepalive_s=30.0, drain_tail_s=60))
    sizes = policy.processes
    assert sizes[5.0] == [4]  # six tasks in hand, four processes: the range maximum
    assert sizes[25.0] == [4]  # idle since 20 s, but within keepalive of the last grow
    assert sizes[35.0] == [1]  # keepalive passed: back to the range minimum


def test_pods_serve_after_start_up_and_are_billed_from_the_request() -> None:
    tasks = [Task(0.0, 1.0)]
    policy = Scripted(1, 1, initial=0)
    result = simulate(tasks, policy, SimConfig(concurrency=1, pod_startup_s=20.0, drain_tail_s=0))
    assert result.waits == [20.0]
    # Asked for at t=0, ready at 20, busy until 21, still wanted when the run ends at 21.
    assert result.pod_seconds == pytest.approx(21.0)


class ScaleInAt:
    name = "scale-in"
    idle_first = False
    wake_interval_s: float | None = None
    initial_replicas = 1
    interval_s = 5.0

    def decide(self, view: View) -> Target:
        return Target(1 if view.now < 5.0 else 0, 1, 1)


def test_a_terminating_pod_finishes_running_tasks_and_hands_back_prefetched_ones() -> None:
    tasks = [Task(0.0, 30.0), Task(0.0, 1.0), Task(0.0, 1.0)]
    result = simulate(
        tasks, ScaleInAt(), SimConfig(concurrency=1, prefetch_multiplier=3, drain_tail_s=0)
    )
    assert result.requeued == 2
    assert result.waits[0] == 0.0  # ran to completion under warm shutdown
    # Handed back, and nobody is left to run them.
    assert [math.isinf(w) for w in result.waits[1:]] == [True, True]
    assert result.pod_seconds == pytest.approx(30.0)  # billed while terminating


def test_keda_sees_only_llen_and_wakes_from_zero_on_its_polling_interval() -> None:
    keda = KedaPolicy(concurrency=1, list_length=1, min_replicas=0)
    keda.initial_replicas = 0
    tasks = [Task(1.0, 5.0)]
    result = simulate(tasks, keda, SimConfig(concurrency=1, pod_startup_s=10.0, drain_tail_s=0))
    # Polled at 0 (empty) and 30: the pod is asked for at 30 and ready at 40.
    assert result.waits == [39.0]


def test_celeriac_wakes_on_new_work_instead_of_waiting_for_its_tick() -> None:
    tasks = [Task(0.5, 1.0) for _ in range(200)]
    policy = make_policy("celeriac", tasks, 4, 10.0, 20.0)
    result = simulate(tasks, policy, SimConfig(pod_startup_s=20.0, drain_tail_s=0))
    # The burst lands at 0.5 s; the operator reconciles half a second later, not at its 5 s tick.
    scaled = next(p for p in result.timeline if p.replicas > 1)
    assert scaled.t == 1.0


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_policy_finishes_every_task(name: str) -> None:
    tasks = poisson(3, 4.0, 2.0, 1500)
    result = simulate(tasks, make_policy(name, tasks, 4, 10.0, 20.0), SimConfig())
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
    cli = [sys.executable, "-m", "celeriac", "simulate"]
    out = subprocess.run(
        [*cli, "--trace", str(trace), "--policy", "keda", "--json"],
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
    assert (summary["tasks"], summary["policy"]) == (300, "keda")
    bad = tmp_path / "bad.csv"
    for body, message in [
        ("enqueue_s,service_s\n2,1\n1,1\n", "rows must be sorted"),
        ("enqueue_s,service_s\n1,-1\n", "must be >= 0"),
    ]:
        bad.write_text(body)
        failed = subprocess.run(
            [*cli, "--trace", str(bad)], capture_output=True, text=True, check=False, timeout=60
        )
        assert failed.returncode == 2
        assert message in failed.stderr
        assert "Traceback" not in failed.stderr
    missing = subprocess.run(
        [*cli, "--trace", str(tmp_path / "nope.csv")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (missing.returncode, "Traceback" in missing.stderr) == (2, False)
    assert "no such file" in missing.stderr
