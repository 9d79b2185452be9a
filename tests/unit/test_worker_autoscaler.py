"""The autoscaler's pure decisions: the operator's range text and the CPU budget for growth."""

import pytest

from celeriac_worker.autoscaler import allowed_growth, parse_range


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2-8", (2, 8)),
        (" 0 - 4\n", (0, 4)),
        ("3-3", (3, 3)),
        ("8-2", None),
        ("0-0", None),
        ("", None),
        ("2,8", None),
        ("-1-4", None),
        ("two-eight", None),
    ],
)
def test_parse_range(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_range(text) == expected


def test_an_idle_pod_grows_to_the_whole_backlog() -> None:
    assert allowed_growth(3, 1, busy_cores=0.0, running=0, limit_cores=1.0, target=0.8) == 3


def test_growth_fits_the_cpu_left_under_the_target() -> None:
    # 2 running use 1 core (0.5 each); 4 cores x 0.8 leaves 2.2 cores: room for 4 more.
    assert allowed_growth(6, 2, busy_cores=1.0, running=2, limit_cores=4.0, target=0.8) == 4


def test_no_growth_at_or_over_the_target() -> None:
    assert allowed_growth(3, 1, busy_cores=0.9, running=1, limit_cores=1.0, target=0.8) == 0
    assert allowed_growth(3, 1, busy_cores=0.8, running=1, limit_cores=1.0, target=0.8) == 0


def test_io_bound_tasks_do_not_count_against_the_budget() -> None:
    # 4 sleeping tasks use almost nothing: their processes are not the pod's bottleneck.
    assert allowed_growth(4, 4, busy_cores=0.04, running=4, limit_cores=1.0, target=0.8) == 4


def test_nothing_wanted_nothing_grown() -> None:
    assert allowed_growth(0, 2, busy_cores=0.0, running=0, limit_cores=1.0, target=0.8) == 0


def test_a_pool_with_no_processes_gets_one_even_when_busy() -> None:
    assert allowed_growth(3, 0, busy_cores=2.0, running=0, limit_cores=1.0, target=0.8) == 1
