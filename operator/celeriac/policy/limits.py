"""The way from what the pool needs to what it gets: stabilization windows, the HPA's rate
policies, then minReplicas/maxReplicas. Each step returns the replicas and, when it changed
them, what limited the change (shown in the status and the reason)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from celeriac.api.pool import HPAScalingPolicy, ScalingRules
from celeriac.policy.model import Recommendation, ScaleEvent


def _allowed(
    policy: HPAScalingPolicy, current: int, events: list[ScaleEvent], now: float, up: bool
) -> int:
    """The size one policy allows, measured from the size one period ago (HPA semantics)."""
    window = [e for e in events if now - e.t < policy.period_seconds]
    changed = sum(
        (e.to_replicas - e.from_replicas) for e in window if (e.to_replicas > e.from_replicas) == up
    )
    base = current - changed
    if policy.type == "Pods":
        return base + policy.value if up else base - policy.value
    if up:
        return math.ceil(base * (1 + policy.value / 100.0))
    return math.floor(base * (1 - policy.value / 100.0))


def rate_limit(
    rules: ScalingRules, current: int, events: list[ScaleEvent], now: float, up: bool
) -> int | None:
    """The replica count the period budgets allow, or None for no limit."""
    if rules.select_policy == "Disabled":
        return current
    if not rules.policies:
        return None
    limits = [_allowed(p, current, events, now, up) for p in rules.policies]
    most_change = max(limits) if up else min(limits)
    least_change = min(limits) if up else max(limits)
    return most_change if rules.select_policy == "Max" else least_change


def stabilized(
    raw: int, current: int, past: list[Recommendation], window_s: int, now: float
) -> int:
    """Up: the lowest need within the window (never below current); down: the highest (never
    above current). The window holds past recommendations and this tick's need as computed now."""
    window = [*(r.replicas for r in past if now - r.t <= window_s), raw]
    if raw > current:
        return max(current, min(window))
    return min(current, max(window))


@dataclass(frozen=True)
class History:
    """What the rate rules look back on: past recommendations and scaling events."""

    past: list[Recommendation]
    events: list[ScaleEvent]
    now: float


def scale_up(raw: int, current: int, rules: ScalingRules, seen: History) -> tuple[int, str | None]:
    desired = stabilized(raw, current, seen.past, rules.stabilization_window_seconds, seen.now)
    limit = rate_limit(rules, current, seen.events, seen.now, up=True)
    if limit is not None and desired > limit:
        return max(limit, current), "scaleUp policy"
    return desired, None


def scale_down(
    raw: int, current: int, rules: ScalingRules, seen: History
) -> tuple[int, str | None]:
    desired = stabilized(raw, current, seen.past, rules.stabilization_window_seconds, seen.now)
    limited_by = "scaleDown stabilization" if desired > raw else None
    limit = rate_limit(rules, current, seen.events, seen.now, up=False)
    if limit is not None and desired < limit:
        return min(limit, current), "scaleDown policy"
    return desired, limited_by


def clamp(desired: int, limited_by: str | None, lo: int, hi: int) -> tuple[int, str | None]:
    if desired > hi:
        return hi, "maxReplicas"
    if desired < lo:
        return lo, "minReplicas"
    return desired, limited_by
