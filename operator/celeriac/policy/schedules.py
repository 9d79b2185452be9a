"""Scheduled capacity: recurring cron windows (with a time zone) that raise the replica floor
ahead of load the user knows is coming, as KEDA's cron scaler does.

A window is open at time T when its most recent `start` at or before T is later than its most
recent `end`. The policy looks a start-up ahead (T = now + learned start-up), so the pods a
window asks for are ready when it opens. Cron parsing is croniter's (what Airflow, Celery beat
alternatives and KEDA users' Python tooling use), so DST and ranges follow its rules.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from celeriac.api.pool import ScheduleWindow


def check_window(start: str, end: str, time_zone: str) -> None:
    """Raise ValueError naming the field when a window cannot be evaluated."""
    for field, expression in (("start", start), ("end", end)):
        if len(expression.split()) != 5 or not croniter.is_valid(expression):
            raise ValueError(f"schedule {field} {expression!r} is not a 5-field cron expression")
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"schedule timeZone {time_zone!r} is not an IANA time zone") from None


def _last(expression: str, at: datetime) -> float:
    previous: float = croniter(expression, at).get_prev(float)
    return previous


def is_open(window: ScheduleWindow, at_s: float) -> bool:
    return _open_in_minute(window.start, window.end, window.time_zone, int(at_s // 60))


@lru_cache(maxsize=4096)
def _open_in_minute(start: str, end: str, time_zone: str, minute: int) -> bool:
    """Cron has minute resolution, so a window is open or closed for a whole minute: cached,
    since croniter walks the calendar and a pool asks every few seconds."""
    # One second into the minute: croniter's get_prev is strictly before its start, and a
    # window opens at its start time, not a minute after.
    at = datetime.fromtimestamp(minute * 60 + 1, tz=UTC).astimezone(ZoneInfo(time_zone))
    return _last(start, at) > _last(end, at)


def schedule_floor(windows: list[ScheduleWindow], at_s: float) -> tuple[int, str | None]:
    """The highest minReplicas among the windows open at `at_s`, and that window's name."""
    best, name = 0, None
    for window in windows:
        if window.min_replicas > best and is_open(window, at_s):
            best, name = window.min_replicas, window.name
    return best, name


def raised_to_floor(
    desired: int, limited_by: str | None, floor: int, why: str | None, max_replicas: int
) -> tuple[int, str | None]:
    """A floor only ever raises the decision (up to maxReplicas), never lowers it."""
    floor = min(floor, max_replicas)
    if floor > desired:
        return floor, why
    return desired, limited_by
