"""Scheduled capacity: cron windows in a time zone raise the floor a start-up ahead, and never
lower what the reactive policy decides."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from celeriac.api.pool import Scaling, ScheduleWindow
from celeriac.policy import decide
from celeriac.policy.model import PolicyInput, PolicyMemory
from celeriac.policy.schedules import is_open, raised_to_floor, schedule_floor
from tests.unit.test_policy_properties import inputs


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


MORNING = ScheduleWindow(
    name="morning",
    start="0 9 * * 1-5",
    end="30 9 * * 1-5",
    time_zone="Europe/Paris",
    min_replicas=6,
)


def test_a_window_opens_and_closes_in_its_time_zone() -> None:
    # Monday 5 January 2026: Paris is UTC+1, so 09:00-09:30 there is 08:00-08:30 UTC.
    assert not is_open(MORNING, utc(2026, 1, 5, 7, 59, 59))
    assert is_open(MORNING, utc(2026, 1, 5, 8, 0))
    assert is_open(MORNING, utc(2026, 1, 5, 8, 29, 58))
    assert not is_open(MORNING, utc(2026, 1, 5, 8, 30))
    # In summer Paris is UTC+2; on a Saturday the window does not open at all.
    assert is_open(MORNING, utc(2026, 7, 6, 7, 0))
    assert not is_open(MORNING, utc(2026, 7, 4, 7, 0))


def test_the_highest_open_floor_wins() -> None:
    late = MORNING.model_copy(update={"name": "batch", "min_replicas": 9, "start": "15 9 * * 1-5"})
    assert schedule_floor([MORNING, late], utc(2026, 1, 5, 8, 10)) == (6, "morning")
    assert schedule_floor([MORNING, late], utc(2026, 1, 5, 8, 20)) == (9, "batch")
    assert schedule_floor([MORNING], utc(2026, 1, 5, 12, 0)) == (0, None)


def test_a_floor_only_raises_and_stays_under_max_replicas() -> None:
    assert raised_to_floor(3, None, 6, "schedule morning", 10) == (6, "schedule morning")
    assert raised_to_floor(8, "scaleUp policy", 6, "schedule morning", 10) == (8, "scaleUp policy")
    assert raised_to_floor(3, None, 60, "schedule morning", 10) == (10, "schedule morning")


def test_decide_asks_for_the_pods_a_start_up_before_the_window_opens() -> None:
    # Pods took 40 s to start: at 07:59:30 UTC (08:59:30 Paris) the window is 30 s away.
    inp = PolicyInput.model_validate(
        {
            "now": utc(2026, 1, 5, 7, 59, 30),
            "scaling": Scaling(schedules=[MORNING]),
            "concurrency": {"min": 1, "max": 4},
            "signals": {"observed_at": utc(2026, 1, 5, 7, 59, 30), "queues": []},
            "current_replicas": 1,
            "ready_replicas": 1,
            "memory": PolicyMemory(startup_s=40.0),
        }
    )
    d = decide(inp)
    assert (d.desired_replicas, d.limited_by) == (6, "schedule morning")
    assert d.reason == "backlog 0 tasks: 1 -> 6 pods (limited by schedule morning; wants 0)"
    early = inp.model_copy(update={"memory": PolicyMemory(startup_s=20.0)})
    assert decide(early).desired_replicas == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("start", "0 9 * *", "start"),
        ("end", "61 9 * * *", "not a 5-field cron expression"),
        ("time_zone", "Mars/Olympus", "not an IANA time zone"),
    ],
)
def test_invalid_windows_are_refused_naming_the_field(field: str, value: str, message: str) -> None:
    spec = MORNING.model_dump() | {field: value}
    with pytest.raises(ValidationError, match=message):
        ScheduleWindow.model_validate(spec)


windows = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["a", "b"]),
            "start": st.sampled_from(["* * * * *", "0 9 * * *", "*/5 * * * *", "0 0 1 1 *"]),
            "end": st.sampled_from(["30 9 * * *", "*/7 * * * *", "0 0 2 1 *"]),
            "timeZone": st.sampled_from(
                ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]
            ),
            "minReplicas": st.integers(0, 50),
        }
    ).map(ScheduleWindow.model_validate),
    min_size=1,
    max_size=3,
)


@settings(max_examples=300, deadline=None)
@given(inputs(), windows)
def test_schedules_never_lower_capacity_below_the_reactive_decision(
    inp: PolicyInput, chosen: list[ScheduleWindow]
) -> None:
    reactive = decide(inp)
    scheduled = decide(
        inp.model_copy(update={"scaling": inp.scaling.model_copy(update={"schedules": chosen})})
    )
    assert scheduled.desired_replicas >= reactive.desired_replicas
    assert scheduled.desired_replicas <= inp.scaling.max_replicas
