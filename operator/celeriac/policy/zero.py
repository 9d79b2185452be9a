"""Scale to and from zero: an idle pool at zero stays there below the activation backlog;
a pool with work never goes to zero; the last pod goes only after the idle time."""

from __future__ import annotations

from celeriac.api.pool import Scaling


def zero_floor(
    pods: int,
    current: int,
    backlog: int,
    running: int,
    scaling: Scaling,
    last_busy_at: float | None,
    now: float,
) -> int:
    """The sized pod count, with the scale-to-zero rules applied."""
    activation = scaling.activation_backlog
    if backlog <= activation and running == 0 and current == 0:
        return 0
    if current == 0 and backlog > activation:
        pods = max(pods, 1)
    if scaling.min_replicas == 0 and pods == 0 and current > 0:
        idle_for = now - (last_busy_at if last_busy_at is not None else now)
        if idle_for < scaling.idle_seconds_before_zero:
            pods = 1
    if (backlog > 0 or running > 0) and (current > 0 or backlog > activation):
        pods = max(pods, 1)
    return pods
