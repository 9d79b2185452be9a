"""Per-task CPU demand: measured from each task's own start, learned per task name, bounded."""

import os
import time

from celeriac_worker import proc_stats
from celeriac_worker.cpu import windowed_rate
from celeriac_worker.task_demand import MAX_IN_FLIGHT, MAX_NAMES, TaskDemand


class FakeProcesses:
    """Cumulative run + wait ns per pid, advanced by the test."""

    def __init__(self) -> None:
        self.ns: dict[int, int] = {}

    def read(self, pid: int) -> int | None:
        return self.ns.get(pid)


def test_a_task_is_measured_from_its_own_start_not_from_idle_time() -> None:
    procs = FakeProcesses()
    procs.ns[10] = 5_000_000_000  # 5 s of earlier work, then a long idle spell
    demand = TaskDemand(procs.read)
    demand.started("t1", "render", 10, now_s=100.0)
    procs.ns[10] += 200_000_000  # 0.2 s of CPU in 0.2 s
    demand.finished("t1", now_s=100.2)
    assert demand.cores("render") is not None
    assert abs((demand.cores("render") or 0) - 1.0) < 1e-9


def test_a_sleeping_task_wants_almost_nothing() -> None:
    procs = FakeProcesses()
    procs.ns[11] = 0
    demand = TaskDemand(procs.read)
    demand.started("t1", "sleep", 11, now_s=0.0)
    procs.ns[11] += 2_000_000
    demand.finished("t1", now_s=0.1)
    assert abs((demand.cores("sleep") or 0) - 0.02) < 1e-9
    assert demand.cores("never-seen") is None


def test_a_long_task_teaches_while_it_runs() -> None:
    procs = FakeProcesses()
    procs.ns[12] = 0
    demand = TaskDemand(procs.read)
    demand.started("t1", "long", 12, now_s=0.0)
    procs.ns[12] += 500_000_000
    demand.sample_running(now_s=0.5)
    assert abs((demand.cores("long") or 0) - 1.0) < 1e-9
    procs.ns[12] += 0  # then it waits on I/O for a second
    demand.sample_running(now_s=1.5)
    assert abs((demand.cores("long") or 0) - 0.7) < 1e-9  # EWMA, alpha 0.3


def test_a_vanished_process_teaches_nothing() -> None:
    procs = FakeProcesses()
    procs.ns[13] = 0
    demand = TaskDemand(procs.read)
    demand.started("t1", "lost", 13, now_s=0.0)
    del procs.ns[13]
    demand.finished("t1", now_s=1.0)
    assert demand.cores("lost") is None


def test_hostile_names_and_ids_stay_bounded() -> None:
    procs = FakeProcesses()
    procs.ns[14] = 0
    demand = TaskDemand(procs.read)
    for i in range(MAX_IN_FLIGHT + 10):
        demand.started(f"id{i}", "n", 14, now_s=0.0)
    assert len(demand._running) == MAX_IN_FLIGHT
    for i in range(MAX_NAMES + 10):
        demand.started("x", f"name{i}", 14, now_s=0.0)
        procs.ns[14] += 10_000_000
        demand.finished("x", now_s=1.0)
    assert len(demand._cores) == MAX_NAMES


def test_this_process_reports_its_own_cpu_demand_and_peak_memory() -> None:
    before = proc_stats.cpu_demand_ns(os.getpid())
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    after = proc_stats.cpu_demand_ns(os.getpid())
    assert before is not None
    assert after is not None
    assert after - before >= 50_000_000
    peak, rss = proc_stats.peak_rss_bytes(os.getpid()), proc_stats.rss_bytes(os.getpid())
    assert peak is not None
    assert rss is not None
    assert peak >= rss > 0
    assert proc_stats.cpu_demand_ns(2**22 + 1) is None


def test_windowed_rate_covers_only_the_last_window() -> None:
    # Idle for 10 s, then a full core for the last 0.5 s: the old reading said 0.05.
    samples = [(0.0, 0.0), (10.0, 0.0), (10.25, 0.25), (10.5, 0.5)]
    assert windowed_rate(samples, now_s=10.5, window_s=1.0) == 0.5 / 0.5
    assert windowed_rate(samples[:1], now_s=10.5, window_s=1.0) == 0.0
