"""Predictive capacity: learn how many tasks arrive in each minute of the day and of the week,
and ask for pods a start-up ahead of a minute that brought a burst on each of the previous two
days, or in the same minute last week.

Kept compact for the pool's status (so it survives operator restarts): only minutes that
brought at least MIN_TASKS are remembered, at most MAX_ENTRIES of them (about 25 KB of status at most), each as a smoothed
count and the fastest rate seen within it. Minutes are UTC minutes since the epoch, so a
pattern tied to local time shifts by an hour across a DST change and is relearned in two days.

The floor is sized for the part of the predicted burst that has not arrived yet: once it has,
the backlog is in the signals and the reactive policy sizes for it, so a prediction never
holds pods after its load came. Like schedules, it only ever raises the decision.
"""

from __future__ import annotations

import math

from celeriac.policy.model import ArrivalProfile, ProfileEntry

MINUTE_S = 60
DAY_MIN = 1440
WEEK_MIN = 10080
MIN_TASKS = 50.0  # a minute with fewer arrivals is not a burst worth pods ahead of it
MAX_ENTRIES = 256
SMOOTHING = 0.5  # weight of the newest occurrence in the smoothed count and peak


def _folded(
    entries: list[ProfileEntry], minute: int, tasks: float, peak: float
) -> list[ProfileEntry]:
    """The profile with one finished minute's arrivals added, per period."""
    out = list(entries)
    for period in (DAY_MIN, WEEK_MIN):
        key, index = minute % period, minute // period
        old = next((e for e in out if e.period_min == period and e.minute == key), None)
        if old is None:
            out.append(
                ProfileEntry(
                    minute=key, period_min=period, tasks=tasks, peak_per_s=peak, seen=1, last=index
                )
            )
            continue
        out.remove(old)
        out.append(
            ProfileEntry(
                minute=key,
                period_min=period,
                tasks=old.tasks + SMOOTHING * (tasks - old.tasks),
                peak_per_s=old.peak_per_s + SMOOTHING * (peak - old.peak_per_s),
                seen=old.seen + 1 if old.last == index - 1 else 1,
                last=index,
            )
        )
    # The most recently seen minutes stay when the profile is full.
    out.sort(key=lambda e: e.last * e.period_min + e.minute)
    return out[-MAX_ENTRIES:]


def learn(profile: ArrivalProfile, now: float, arrivals: float, dt: float) -> ArrivalProfile:
    """Count this tick's arrivals in the current minute; fold the minute in once it ends."""
    minute = int(now // MINUTE_S)
    rate = arrivals / dt if dt > 0 else 0.0
    if profile.minute is None or profile.minute == minute:
        return profile.model_copy(
            update={
                "minute": minute,
                "tasks": profile.tasks + arrivals,
                "peak_per_s": max(profile.peak_per_s, rate),
            }
        )
    entries = profile.entries
    if profile.tasks >= MIN_TASKS:
        entries = _folded(entries, profile.minute, profile.tasks, profile.peak_per_s)
    return ArrivalProfile(entries=entries, minute=minute, tasks=arrivals, peak_per_s=rate)


def recurring(profile: ArrivalProfile, minute: int) -> ProfileEntry | None:
    """The entry that predicts `minute`: seen on each of the two previous days, or in the same
    minute last week; the larger if both."""
    found = []
    for e in profile.entries:
        if e.minute != minute % e.period_min:
            continue
        index = minute // e.period_min
        daily = e.period_min == DAY_MIN and e.seen >= 2 and e.last == index - 1
        weekly = e.period_min == WEEK_MIN and e.last == index - 1
        if daily or weekly:
            found.append(e)
    return max(found, key=lambda e: e.tasks, default=None)


def predicted_slots(
    profile: ArrivalProfile, now: float, lead_s: float, service_s: float, target_s: float
) -> float:
    """Slots for the predicted arrivals of the minutes from now to a start-up ahead that have
    not arrived yet: what arrives within one target wait, each started within it."""
    best = 0.0
    first, last = int(now // MINUTE_S), int((now + lead_s) // MINUTE_S)
    for minute in range(first, last + 1):
        entry = recurring(profile, minute)
        if entry is None:
            continue
        arrived = profile.tasks if profile.minute == minute else 0.0
        remaining = max(0.0, entry.tasks - arrived)
        within_target = min(remaining, entry.peak_per_s * target_s)
        best = max(best, within_target * service_s / target_s)
    return best


def predicted_pods(slots: float, per_pod: int) -> int:
    return math.ceil(slots / per_pod - 1e-9) if slots > 0 else 0
