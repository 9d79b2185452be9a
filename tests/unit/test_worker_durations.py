"""The worker's task-duration summary that the operator sizes the grace period on."""

from celeriac_worker.observe import TaskDurations


def test_p99_of_recent_durations() -> None:
    durations = TaskDurations(window=100)
    assert durations.p99_s is None
    for i in range(1, 101):
        durations.observe(float(i))
    assert durations.p99_s == 99.0
    durations.observe(1000.0)  # the window slides: 1 s drops out, 1000 s comes in
    assert durations.p99_s == 100.0
    assert durations.mean_s is not None


def test_a_single_duration_is_its_own_p99() -> None:
    durations = TaskDurations()
    durations.observe(3.5)
    assert durations.p99_s == 3.5
