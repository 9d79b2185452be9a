"""Predictive capacity: a compact profile of arrivals per minute of the day and week, pods a
start-up ahead of a burst seen on the two previous days, and never below the reactive decision."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from celeriac.api.pool import Predictive
from celeriac.policy import decide
from celeriac.policy.model import ArrivalProfile, PolicyInput, PolicyMemory
from celeriac.policy.predict import (
    DAY_MIN,
    MIN_TASKS,
    WEEK_MIN,
    learn,
    predicted_slots,
    recurring,
)
from tests.unit.test_policy_properties import inputs

DAY_S = 86_400.0
NINE = 9 * 3600.0  # 09:00 UTC on day 0 (1970-01-01)


def burst_days(days: int, tasks: float = 3000.0) -> ArrivalProfile:
    """A profile fed 3000 tasks in the minute from 09:00 on each day, over 1 s ticks."""
    profile = ArrivalProfile()
    for day in range(days):
        start = day * DAY_S + NINE
        profile = learn(profile, start + 1, tasks / 2, 1.0)
        profile = learn(profile, start + 2, tasks / 2, 1.0)
        profile = learn(profile, start + 61, 0.0, 1.0)  # the next minute folds 09:00 in
    return profile


def test_a_minute_with_a_burst_is_kept_per_day_and_per_week() -> None:
    profile = burst_days(1)
    kept = {(e.period_min, e.minute): (e.tasks, e.peak_per_s, e.seen) for e in profile.entries}
    assert kept == {
        (DAY_MIN, 540): (3000.0, 1500.0, 1),
        (WEEK_MIN, 540): (3000.0, 1500.0, 1),  # weeks count from the epoch, a Thursday
    }


def test_quiet_minutes_are_not_remembered() -> None:
    profile = learn(learn(ArrivalProfile(), 1.0, MIN_TASKS - 1, 1.0), 61.0, 0.0, 1.0)
    assert profile.entries == []


def test_a_burst_is_predicted_only_after_two_days_in_a_row() -> None:
    nine_on_day = [int((d * DAY_S + NINE) // 60) for d in range(4)]
    assert recurring(burst_days(1), nine_on_day[1]) is None
    assert recurring(burst_days(2), nine_on_day[2]) is not None
    # Seen on days 0 and 1, not on day 2: nothing predicted for day 3.
    assert recurring(burst_days(2), nine_on_day[3]) is None


def test_pods_are_asked_for_a_start_up_ahead_for_what_has_not_arrived() -> None:
    profile = burst_days(2)
    day2 = 2 * DAY_S + NINE
    # 20 s before 09:00, with a 30 s start-up: within a 5 s target 1500/s bring all 3000;
    # 3000 x 0.5 s / 5 s = 300 slots.
    assert predicted_slots(profile, day2 - 20, 30.0, 0.5, 5.0) == 300.0
    assert predicted_slots(profile, day2 - 40, 30.0, 0.5, 5.0) == 0.0  # too early
    # Once 2500 of them arrived in the current minute, only 500 are still to come.
    arriving = learn(profile, day2 + 1, 2500.0, 1.0)
    assert predicted_slots(arriving, day2 + 1, 30.0, 0.5, 5.0) == 50.0


def test_decide_starts_pods_ahead_of_a_learned_burst_and_names_the_prediction() -> None:
    day2 = 2 * DAY_S + NINE
    inp = PolicyInput.model_validate(
        {
            "now": day2 - 20,
            "scaling": {
                "minReplicas": 0,
                "maxReplicas": 100,
                "targetQueueWaitSeconds": 5,
                "predictive": {"enabled": True},
            },
            "concurrency": {"min": 1, "max": 4},
            "signals": {"observed_at": day2 - 20, "queues": []},
            "current_replicas": 0,
            "ready_replicas": 0,
            "memory": PolicyMemory(profile=burst_days(2), service_s=0.5, startup_s=30.0),
        }
    )
    d = decide(inp)
    assert (d.desired_replicas, d.limited_by) == (75, "prediction")
    off = inp.model_copy(
        update={"scaling": inp.scaling.model_copy(update={"predictive": Predictive()})}
    )
    assert decide(off).desired_replicas == 0
    assert decide(off).memory.profile == ArrivalProfile()  # nothing kept when it is off


@settings(max_examples=200, deadline=None)
@given(inputs(), st.integers(1, 3), st.floats(0, 2 * DAY_S))
def test_prediction_never_lowers_capacity_below_the_reactive_decision(
    inp: PolicyInput, days: int, offset_s: float
) -> None:
    reactive = decide(inp)
    learned = inp.model_copy(
        update={
            "scaling": inp.scaling.model_copy(update={"predictive": Predictive(enabled=True)}),
            "memory": inp.memory.model_copy(update={"profile": burst_days(days)}),
            "now": inp.now,
        }
    )
    predicted = decide(learned)
    assert predicted.desired_replicas >= reactive.desired_replicas
    assert predicted.desired_replicas <= inp.scaling.max_replicas
