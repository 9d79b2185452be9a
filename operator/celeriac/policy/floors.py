"""Floors above the reactive decision: scheduled windows and predicted bursts. Both look a
start-up ahead, so the pods they ask for are ready when the load comes."""

from __future__ import annotations

from celeriac.policy.estimate import DEFAULT_SERVICE_S, DEFAULT_STARTUP_S
from celeriac.policy.model import PolicyInput, PolicyMemory
from celeriac.policy.predict import learn, predicted_pods, predicted_slots
from celeriac.policy.schedules import schedule_floor


def with_learned_profile(inp: PolicyInput, mem: PolicyMemory) -> PolicyMemory:
    """Count this tick's arrivals into the profile when prediction is on; an empty profile
    otherwise, so a pool that never asked for it carries none in its status."""
    if not inp.scaling.predictive.enabled:
        return (
            mem
            if not mem.profile.entries
            else mem.model_copy(update={"profile": type(mem.profile)()})
        )
    latest = mem.arrivals[-1] if mem.arrivals and mem.arrivals[-1].t == inp.now else None
    if latest is None:
        return mem
    profile = learn(mem.profile, inp.now, latest.arrivals, latest.dt)
    return mem.model_copy(update={"profile": profile})


def capacity_floor(inp: PolicyInput, mem: PolicyMemory, per_pod: int) -> tuple[int, str | None]:
    """The highest floor in force, and what set it (for the reason and limitedBy)."""
    scaling, now = inp.scaling, inp.now
    lead_s = mem.startup_s or DEFAULT_STARTUP_S
    floor, window = schedule_floor(scaling.schedules, now + lead_s)
    why = f"schedule {window}" if window else None
    if scaling.predictive.enabled:
        service_s = mem.service_s or DEFAULT_SERVICE_S
        slots = predicted_slots(
            mem.profile, now, lead_s, service_s, scaling.target_queue_wait_seconds
        )
        pods = predicted_pods(slots, per_pod)
        if pods > floor:
            floor, why = pods, "prediction"
    return floor, why
