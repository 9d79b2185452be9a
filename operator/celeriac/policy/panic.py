"""Panic mode: demand far above capacity scales up at once (no stabilization, no rate policy)
and blocks scale-down until the queue empties or the hold ends (Knative's KPA)."""

from __future__ import annotations

PANIC_HOLD_S = 60.0  # Knative's stable window: panic lasts this long after its last trigger


def panic_until(
    previous_until: float | None,
    demand_slots: float,
    have_slots: int,
    per_pod: int,
    threshold: float,
    wants_more: bool,
    queue_empty: bool,
    now: float,
    window_s: float,
) -> float | None:
    """When panic ends, or None when the pool is not panicking."""
    until = previous_until
    if demand_slots / max(have_slots, per_pod) >= threshold and wants_more:
        until = now + max(PANIC_HOLD_S, window_s)
    if queue_empty and not wants_more:
        # The queue is empty: what panic protects (queued work on too few pods) is over.
        return None
    return until if until is not None and now < until else None
