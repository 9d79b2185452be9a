"""How the worker names a task's outcome and measures its wait."""

import pytest
from billiard.einfo import ExceptionWithTraceback
from celery.exceptions import Ignore, Reject, Retry, WorkerLostError

from celeriac_worker.observe import Observer, outcome_of, queue_wait_s


def test_wait_counts_from_publication() -> None:
    assert queue_wait_s(100.0, None, 102.5) == 2.5


def test_wait_of_an_eta_task_counts_from_its_eta() -> None:
    assert queue_wait_s(100.0, 160.0, 161.0) == 1.0


def test_an_eta_in_the_past_does_not_shorten_the_wait() -> None:
    assert queue_wait_s(100.0, 50.0, 103.0) == 3.0


def test_no_publish_stamp_no_wait() -> None:
    assert queue_wait_s(None, None, 10.0) is None


def test_clock_skew_never_gives_a_negative_wait() -> None:
    assert queue_wait_s(105.0, None, 100.0) == 0.0


@pytest.mark.parametrize(
    ("exc", "state"),
    [
        (Retry("again"), "retried"),
        (Reject("no", requeue=True), "rejected"),
        (Ignore(), "ignored"),
        (WorkerLostError("signal 9"), "lost"),
        (SystemExit(1), "lost"),
        (ValueError("bad"), "failed"),
    ],
)
def test_outcome_of(exc: BaseException, state: str) -> None:
    assert outcome_of(exc) == state


def test_outcome_of_a_wrapped_exception() -> None:
    assert outcome_of(ExceptionWithTraceback(ValueError("x"), "tb")) == "failed"


def test_observer_feeds_durations_and_hooks() -> None:
    observer = Observer()
    seen: list[tuple[str, float]] = []
    observer.on_run.append(lambda task, s: seen.append((task, s)))
    observer.ran("t", 2.0)
    observer.ran("t", 4.0)
    assert seen == [("t", 2.0), ("t", 4.0)]
    assert observer.durations.mean_s == pytest.approx(2.4)
    assert observer.durations.p99_s == 4.0
