"""The demo's summary: reaction times from the Deployment's watch, pod-seconds from the
samples, and KEDA's line from the simulator on the recorded arrivals."""

from __future__ import annotations

from pathlib import Path

from celeriac_dev.demo_report import (
    Recording,
    ReplicaChange,
    Sample,
    keda_outcome,
    measured_outcome,
    plot,
    reaction,
    summary_lines,
)


def _sample(t: float, backlog: int, pods: int) -> Sample:
    return Sample(
        t=t, backlog=backlog, desired=pods, ready=pods, pods=pods, pod_range="1-3", reason=None
    )


def test_reaction_times_run_from_the_burst_to_the_first_raise_and_to_those_pods_ready() -> None:
    changes = [
        ReplicaChange(-30.0, 1, 1),
        ReplicaChange(0.4, 4, 1),
        ReplicaChange(2.0, 4, 2),
        ReplicaChange(3.5, 6, 4),
        ReplicaChange(5.0, 6, 6),
    ]
    got = reaction(changes)
    assert got.patched_after_s == 0.4
    assert got.ready_after_s == 3.5  # 4 ready, the count first asked for


def test_no_raise_after_the_burst_is_reported_as_none() -> None:
    got = reaction([ReplicaChange(-5.0, 2, 2), ReplicaChange(1.0, 2, 2)])
    assert got.patched_after_s is None
    assert got.ready_after_s is None


def test_measured_outcome_counts_pod_seconds_from_the_burst_on() -> None:
    recording = Recording(
        samples=[
            _sample(-2.0, 0, 1),
            _sample(0.0, 50, 1),
            _sample(10.0, 30, 4),
            _sample(20.0, 0, 4),
            _sample(30.0, 0, 1),
        ]
    )
    got = measured_outcome(recording)
    assert got.peak_pods == 4
    assert got.drained_after_s == 20.0
    assert got.pod_seconds == 1 * 10 + 4 * 10 + 4 * 10  # the last sample ends the window


def test_keda_needs_the_learned_service_time() -> None:
    assert keda_outcome(Recording(arrivals_s=[0.0, 0.1]), 3, 6, 60.0) is None


def test_keda_with_defaults_on_a_burst_scales_within_the_pool_bound_and_drains() -> None:
    recording = Recording(arrivals_s=[i * 0.05 for i in range(120)], service_s=1.0, startup_s=5.0)
    run = keda_outcome(recording, concurrency=3, max_replicas=6, end_s=60.0)
    assert run is not None
    assert 1 < run.outcome.peak_pods <= 6
    assert run.outcome.drained_after_s is not None
    # 120 task-seconds on at most 18 processes cannot finish before 120 / 18 s.
    assert run.outcome.drained_after_s >= 120 / 18
    assert run.outcome.pod_seconds >= 120 / 3


def test_summary_names_both_lines_and_the_reaction(tmp_path: Path) -> None:
    recording = Recording(
        arrivals_s=[i * 0.05 for i in range(60)],
        samples=[_sample(-1.0, 0, 1), _sample(0.0, 60, 1), _sample(8.0, 0, 3), _sample(25.0, 0, 1)],
        changes=[ReplicaChange(-1.0, 1, 1), ReplicaChange(0.5, 3, 1), ReplicaChange(6.0, 3, 3)],
        service_s=0.5,
        startup_s=5.5,
    )
    keda = keda_outcome(recording, 3, 6, 25.0)
    assert keda is not None
    lines = summary_lines(recording, [measured_outcome(recording), keda.outcome], 60)
    text = "\n".join(lines)
    assert "burst -> Deployment patched: 0.50 s; -> the new pods ready: 6.0 s" in text
    assert "celeriac (measured)" in text
    assert "KEDA defaults (simulated)" in text
    png = tmp_path / "demo.png"
    plot(recording, keda, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_both_lines_pay_until_both_are_back_at_one_pod() -> None:
    recording = Recording(
        samples=[_sample(-1.0, 0, 1), _sample(0.0, 50, 1), _sample(10.0, 0, 4), _sample(20.0, 0, 1)]
    )
    got = measured_outcome(recording, horizon_s=100.0)
    assert got.settled_after_s == 20.0
    # 1 pod for 10 s, 4 for 10 s, then the 1 pod it ended with until the horizon.
    assert got.pod_seconds == 10 + 40 + 80


def test_keda_is_charged_for_its_scale_down_window() -> None:
    recording = Recording(arrivals_s=[i * 0.05 for i in range(120)], service_s=1.0, startup_s=5.0)
    run = keda_outcome(recording, concurrency=3, max_replicas=6, end_s=30.0)
    assert run is not None
    # KEDA's 300 s cooldown (and the HPA's window) keep its pods long after the drain.
    assert run.outcome.settled_after_s is not None
    assert run.outcome.settled_after_s >= 300
    assert run.horizon_s >= run.outcome.settled_after_s


def test_drained_means_empty_again_after_the_backlog_showed_up() -> None:
    # The status still says 0 just after the burst: that is not "drained".
    recording = Recording(
        samples=[_sample(0.0, 0, 1), _sample(1.5, 0, 1), _sample(3.0, 120, 6), _sample(31.0, 0, 6)]
    )
    assert measured_outcome(recording).drained_after_s == 31.0


def test_keda_runs_long_enough_to_come_back_down() -> None:
    # The demo's burst: 200 tasks of 2 s over 7 s. KEDA's 300 s cooldown runs from its last
    # active poll (about 30 s in), past the simulator's default 300 s tail.
    recording = Recording(arrivals_s=[i * 0.035 for i in range(200)], service_s=2.0, startup_s=1.0)
    run = keda_outcome(recording, concurrency=3, max_replicas=6, end_s=50.0)
    assert run is not None
    assert run.outcome.settled_after_s == 330.0
    assert run.outcome.pod_seconds > 6 * 300  # six pods held through the cooldown
