"""The operator's range text as the autoscaler reads it (sizing is in test_worker_pool_sizing)."""

import pytest

from celeriac_worker.autoscaler import parse_range


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
