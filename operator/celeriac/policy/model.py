"""The policy's contract: signals and state in, desired state out.

`decide(PolicyInput) -> Decision` is pure: no I/O, no clock reads (time is `now`).
The operator and the simulator call the very same function.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from celeriac.api.pool import Concurrency, Scaling
from celeriac.signals.model import PoolSignals


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Recommendation(Frozen):
    t: float
    replicas: int


class ScaleEvent(Frozen):
    t: float
    from_replicas: int
    to_replicas: int


class ArrivalSample(Frozen):
    """Tasks that arrived in the `dt` seconds before `t` (backlog growth plus completions),
    and what the workers completed in them and ran at `t`."""

    t: float
    arrivals: float
    dt: float
    # For Little's law on the workers (estimate.little_service); 0 in memories written before.
    completed: float = 0.0
    running: float = 0.0


class ProfileEntry(Frozen):
    """Arrivals seen in one minute of the day (`period_min` 1440) or of the week (10080)."""

    minute: int = Field(ge=0, description="Minute within the period.")
    period_min: int
    tasks: float = Field(ge=0, description="Tasks that arrived in that minute, smoothed.")
    peak_per_s: float = Field(ge=0, description="Fastest arrival rate seen within it.")
    seen: int = Field(ge=1, description="Consecutive periods it was seen in.")
    last: int = Field(description="Index of the period it was last seen in.")


class ArrivalProfile(Frozen):
    """What predictive scaling learned, and the minute it is counting now."""

    entries: list[ProfileEntry] = Field(default_factory=list)
    minute: int | None = Field(default=None, description="Minutes since the epoch, counting now.")
    tasks: float = 0.0
    peak_per_s: float = 0.0


class PolicyMemory(Frozen):
    """What the policy needs to remember between ticks; persisted in the pool's status."""

    recommendations: list[Recommendation] = Field(default_factory=list)
    scale_events: list[ScaleEvent] = Field(default_factory=list)
    last_busy_at: float | None = Field(default=None, description="Last time there was any work.")
    panic_until: float | None = None
    # Smoothed measurements the policy derives from successive signals.
    arrival_rate_per_s: float | None = None
    service_s: float | None = None
    last_completed_total: int | None = None
    last_backlog: int | None = None
    last_t: float | None = None
    range_max: int | None = Field(default=None, description="Per-pod range maximum last decided.")
    arrivals: list[ArrivalSample] = Field(
        default_factory=list, description="Recent arrivals per tick, for windowed rates."
    )
    startup_s: float | None = Field(
        default=None, description="Smoothed time from asking for a pod to it being ready."
    )
    last_ready: int | None = None
    profile: ArrivalProfile = Field(
        default_factory=ArrivalProfile, description="Only with scaling.predictive.enabled."
    )


class PolicyInput(Frozen):
    now: float
    scaling: Scaling
    concurrency: Concurrency
    signals: PoolSignals
    current_replicas: int = Field(ge=0, description="The Deployment's spec.replicas now.")
    ready_replicas: int = Field(ge=0)
    memory: PolicyMemory = Field(default_factory=PolicyMemory)


class Mode(StrEnum):
    NORMAL = "Normal"
    PANIC = "Panic"
    HOLD = "Hold"  # signals missing or stale
    PAUSED = "Paused"
    IDLE = "Idle"


class Decision(Frozen):
    desired_replicas: int = Field(ge=0)
    range_min: int = Field(ge=0, description="Per-pod --autoscale min.")
    range_max: int = Field(ge=0, description="Per-pod --autoscale max.")
    mode: Mode
    reason: str = Field(description="One line a user reads in `kubectl get cwp`.")
    limited_by: str | None = Field(
        default=None, description="minReplicas, maxReplicas, a rate limit or stabilization, if any."
    )
    memory: PolicyMemory
