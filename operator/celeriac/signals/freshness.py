"""Whether a pool's signals can be acted on: one rule, read by the policy and the status."""

from __future__ import annotations

from celeriac.signals.model import PoolSignals


def signal_problem(
    signals: PoolSignals | None, stale_after_s: float, now: float
) -> tuple[str, str] | None:
    """(reason, message) when the backlog is missing, unreadable or too old; else None.

    A pool with a problem holds its replicas: an unreadable broker is not an empty queue.
    """
    if signals is None:
        return "SignalsUnavailable", "no signals gathered yet"
    if signals.queues is None:
        return (
            "BrokerUnavailable",
            f"backlog unreadable: {signals.backlog_error or 'unknown error'}",
        )
    age = now - signals.observed_at
    if age > stale_after_s:
        return (
            "SignalsStale",
            f"backlog reading is {age:.0f} s old (staleAfterSeconds {stale_after_s:.0f})",
        )
    return None
