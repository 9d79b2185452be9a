"""Per-task CPU share: measured from each task's own start, apart from queueing, learned per name."""

import os
import time

import pytest

from celeriac_worker import proc_stats
from celeriac_worker.cpu import windowed_rate
from celeriac_worker.task_demand import (
    MAX_IN_FLIGHT,
    MAX_NAMES,
    TaskDemand,
    core_share,
    runnable_window,
)

MS = 1_000_000


class FakeProcesses:
    """Cumulative (run ns, run-queue wait ns) per pid, advanced by the test."""

    def __init__(self) -> None:
        self.ns: dict[int, tuple[int, int]] = {}

    def read(self, pid: int) -> tuple[int, int] | None:
        return self.ns.get(pid)

    def advance(self, pid: int, run_ms: int, wait_ms: int = 0) -> None:
        run, wait = self.ns[pid]
        self.ns[pid] = (run + run_ms * MS, wait + wait_ms * MS)


def test_a_task_is_measured_from_its_own_start_not_from_idle_time() -> None:
    procs = FakeProcesses()
    procs.ns[10] = (5_000 * MS, 0)  # 5 s of earlier work, then a long idle spell
    demand = TaskDemand(procs.read)
    demand.started("t1", "render", 10, now_s=100.0)
    procs.advance(10, run_ms=200)
    demand.finished("t1", now_s=100.2)
    assert demand.cores("render") == pytest.approx(1.0)


def test_a_cpu_bound_task_sharing_a_core_with_three_others_still_reads_one_core() -> None:
    procs = FakeProcesses()
    procs.ns[10] = (0, 0)
    demand = TaskDemand(procs.read)
    demand.started("t1", "render", 10, now_s=0.0)
    procs.advance(10, run_ms=200, wait_ms=600)
    demand.finished("t1", now_s=0.8)
    assert demand.cores("render") == pytest.approx(1.0)


def test_a_sleeping_task_on_a_crowded_node_wants_almost_nothing() -> None:
    procs = FakeProcesses()
    procs.ns[11] = (0, 0)
    demand = TaskDemand(procs.read)
    demand.started("t1", "sleep", 11, now_s=0.0)
    # 5 ms of CPU, and 30 ms queued for a core after waking: run + wait would read 0.27.
    procs.advance(11, run_ms=5, wait_ms=30)
    demand.finished("t1", now_s=0.130)
    assert demand.cores("sleep") == pytest.approx(0.05)
    assert demand.cores("never-seen") is None


def test_a_long_task_teaches_while_it_runs() -> None:
    procs = FakeProcesses()
    procs.ns[12] = (0, 0)
    demand = TaskDemand(procs.read)
    demand.started("t1", "long", 12, now_s=0.0)
    procs.advance(12, run_ms=500)
    demand.sample_running(now_s=0.5)
    assert demand.cores("long") == pytest.approx(1.0)
    demand.sample_running(now_s=1.5)  # then it waits on I/O for a second
    assert demand.cores("long") == pytest.approx(0.5 / 1.5)  # CPU over runnable time, summed


def test_a_name_settles_once_a_task_finished_or_ran_a_second() -> None:
    procs = FakeProcesses()
    procs.ns[16] = (0, 0)
    demand = TaskDemand(procs.read)
    demand.started("t1", "load", 16, now_s=0.0)
    procs.advance(16, run_ms=10)
    demand.sample_running(now_s=0.5)
    assert demand.estimates(["load"]) == [pytest.approx(0.02)]
    assert demand.estimates(["load"], settled_only=True) == [None]
    demand.sample_running(now_s=1.0)
    assert demand.estimates(["load"], settled_only=True) == [pytest.approx(0.02 * 0.95)]
    assert demand.estimates(["load"], settled_only=True, peak=False) == [pytest.approx(0.01)]


def test_a_vanished_process_teaches_nothing() -> None:
    procs = FakeProcesses()
    procs.ns[13] = (0, 0)
    demand = TaskDemand(procs.read)
    demand.started("t1", "lost", 13, now_s=0.0)
    del procs.ns[13]
    demand.finished("t1", now_s=1.0)
    assert demand.cores("lost") is None


def test_hostile_names_and_ids_stay_bounded() -> None:
    procs = FakeProcesses()
    procs.ns[14] = (0, 0)
    demand = TaskDemand(procs.read)
    for i in range(MAX_IN_FLIGHT + 10):
        demand.started(f"id{i}", "n", 14, now_s=0.0)
    assert len(demand._running) == MAX_IN_FLIGHT
    for i in range(MAX_NAMES + 10):
        demand.started("x", f"name{i}", 14, now_s=0.0)
        procs.advance(14, run_ms=10)
        demand.finished("x", now_s=1.0)
    assert len(demand._cores) == MAX_NAMES
    assert len(demand._peaks) == MAX_NAMES


def test_sizing_plans_with_a_decaying_peak_so_noisy_readings_do_not_swing_it() -> None:
    procs = FakeProcesses()
    procs.ns[15] = (0, 0)
    demand = TaskDemand(procs.read)
    for run_ms in (95, 60, 90, 62):  # a CPU-bound task read on a crowded node
        demand.started("t", "render", 15, now_s=0.0)
        procs.advance(15, run_ms=run_ms)
        demand.finished("t", now_s=0.1)
    # Shares over the summed readings: 0.95, 0.775, 0.8167, 0.7675; the peak decays from 0.95.
    assert demand.estimates(["render", "other"]) == [pytest.approx(0.95 * 0.95**3), None]
    assert demand.estimates(["render"], peak=False) == [pytest.approx(3.07 / 4)]


@pytest.mark.parametrize(
    ("run_s", "wait_s", "window_s", "reading"),
    [(0.2, 0.0, 0.2, (0.2, 0.2)), (0.2, 0.6, 0.8, (0.2, 0.2)), (0.0, 0.1, 0.1, (0.1, 0.1))],
)
def test_runnable_window(
    run_s: float, wait_s: float, window_s: float, reading: tuple[float, float]
) -> None:
    assert runnable_window(run_s, wait_s, window_s) == pytest.approx(reading)


def test_a_short_stale_window_weighs_as_little_as_it_lasted() -> None:
    # Nine 100 ms sleeping tasks at 5 %, then one 25 ms window that caught the result write.
    readings = [(0.005, 0.1)] * 9 + [(0.024, 0.025)]
    assert core_share(readings) == pytest.approx(0.069 / 0.925)
    assert core_share([]) == 1.0


def test_this_process_reports_its_own_cpu_and_peak_memory() -> None:
    before = proc_stats.schedstat_ns(os.getpid())
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    after = proc_stats.schedstat_ns(os.getpid())
    assert before is not None
    assert after is not None
    assert after[0] - before[0] >= 50 * MS
    peak, rss = proc_stats.peak_rss_bytes(os.getpid()), proc_stats.rss_bytes(os.getpid())
    assert peak is not None
    assert rss is not None
    assert peak >= rss > 0
    assert proc_stats.schedstat_ns(2**22 + 1) is None


def test_windowed_rate_covers_only_the_last_window() -> None:
    # Idle for 10 s, then a full core for the last 0.5 s: the old reading said 0.05.
    samples = [(0.0, {1: 0.0}), (10.0, {1: 0.0}), (10.25, {1: 0.25}), (10.5, {1: 0.5})]
    assert windowed_rate(samples, now_s=10.5, window_s=1.0) == pytest.approx(1.0)
    assert windowed_rate(samples[:1], now_s=10.5, window_s=1.0) == 0.0


def test_windowed_rate_survives_processes_exiting_and_forking() -> None:
    # Process 2 (5 s of past CPU) was released and 3 forked: only 1's half core counts.
    samples = [(0.0, {1: 1.0, 2: 5.0}), (1.0, {1: 1.5, 3: 0.01})]
    assert windowed_rate(samples, now_s=1.0, window_s=1.0) == pytest.approx(0.5)
