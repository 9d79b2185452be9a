"""How many worker slots, then pods, the work needs: Little's law plus the backlog.

To keep up, rate*S/rho slots; to start every waiting task within the target wait T, another
W*S/T. Work in hand (running or prefetched) is never left without its slot. When more is
needed than the pool has, new pods serve only after start-up, so they are sized for what will
still wait then, given the pods that are ready or already starting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from celeriac.policy.estimate import DEFAULT_SERVICE_S, DEFAULT_STARTUP_S, short_rate
from celeriac.policy.model import PolicyInput, PolicyMemory

TARGET_UTILIZATION = 0.85  # rho: keep-up slots run at most this busy
# Work in hand counts up to this multiple of the keep-up need in the steady recommendation.
STEADY_IN_HAND = 1.5


@dataclass(frozen=True)
class Load:
    """What the signals say is there to do, in tasks and task rates."""

    waiting: int
    backlog: int
    running: int
    service_s: float
    rate_per_s: float
    burst_rate_per_s: float

    @property
    def in_hand(self) -> float:
        return max(float(self.running), float(self.backlog - self.waiting))


@dataclass(frozen=True)
class Need:
    slots: float  # worker slots wanted now
    demand_slots: float  # slots the short-window rate would want: what panic compares
    pods: int  # slots in pods, before zero, panic and limits
    steady_pods: int  # what the pool needs once its backlog is gone: what windows remember


def current_load(inp: PolicyInput, mem: PolicyMemory) -> Load:
    sig = inp.signals
    rate = mem.arrival_rate_per_s or 0.0
    # The panic window's rate and its second half's: a burst shows in the latter seconds sooner.
    panic_s = inp.scaling.panic_window_seconds
    burst = max(
        rate,
        short_rate(mem.arrivals, inp.now, panic_s),
        short_rate(mem.arrivals, inp.now, panic_s / 2),
    )
    return Load(
        waiting=sig.waiting or 0,
        backlog=sig.backlog or 0,
        running=sum(w.running for w in (sig.workers or [])),
        service_s=mem.service_s or DEFAULT_SERVICE_S,
        rate_per_s=rate,
        burst_rate_per_s=burst,
    )


def slots_after_start_up(
    load: Load, have: int, ready_slots: int, startup_s: float, target_s: float
) -> float:
    """Slots to ask for when the pool has `have` and needs more: new pods serve only after
    start-up, so they are sized for what will still wait then."""
    service = load.service_s
    starting_slots = have - ready_slots
    served = (ready_slots + starting_slots / 2) * startup_s / service
    later = load.waiting + load.burst_rate_per_s * startup_s - served
    if later <= 0:
        return max(float(have), load.in_hand)
    keep_up_burst = load.burst_rate_per_s * service / TARGET_UTILIZATION
    return max(have, keep_up_burst) + later * service / target_s


def held_past(load: Load, horizon_s: float) -> float:
    """Slots the tasks in hand still hold `horizon_s` from now: what waits needs slots beyond
    these, not among them. Durations taken as exponential with the measured mean: short tasks
    free their slots within the target wait, minutes-long ones hold them (without this, a few
    long tasks leave the short ones no slot at all)."""
    return load.in_hand * math.exp(-horizon_s / max(load.service_s, 1e-3))


def pods_for(slots: float, per_pod: int) -> int:
    return math.ceil(slots / per_pod - 1e-9) if slots > 0 else 0


def size(inp: PolicyInput, mem: PolicyMemory, load: Load, per_pod: int) -> Need:
    target = inp.scaling.target_queue_wait_seconds
    keep_up = load.rate_per_s * load.service_s / TARGET_UTILIZATION
    drain = load.waiting * load.service_s / target
    held = held_past(load, target)
    slots = max(load.in_hand, max(keep_up, held) + drain)
    have = inp.current_replicas * per_pod
    if slots > have:
        ready_slots = min(inp.ready_replicas, inp.current_replicas) * per_pod
        startup = mem.startup_s or DEFAULT_STARTUP_S
        slots = slots_after_start_up(load, have, ready_slots, startup, target)
    pods = pods_for(slots, per_pod)
    # The stabilization window remembers what the pool needs once its backlog is gone, not the
    # transient drain, so capacity added for a backlog leaves once it is worked off. Work in
    # hand counts up to half again the keep-up need: enough that Poisson noise does not flap
    # the pool, too little for a drained backlog to hold its pods through the window.
    # Long tasks in hand are no transient: they hold their slots whatever the backlog.
    steady = max(keep_up, held, min(load.in_hand, STEADY_IN_HAND * keep_up))
    demand = max(slots, load.burst_rate_per_s * load.service_s / TARGET_UTILIZATION)
    return Need(
        slots=slots,
        demand_slots=demand,
        pods=pods,
        steady_pods=min(pods, pods_for(steady, per_pod)),
    )
