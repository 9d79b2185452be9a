"""Drain-aware scale-in, a step of the plan. Pure.

Every pod's pod-deletion-cost is kept current, so a lower replica count makes the
ReplicaSet remove idle pods first. When busy pods must go (the policy wants fewer pods than
are busy), the ones that will go stop consuming (`cancel_consumer`): they finish what they
run and then are idle pods, removed first. Without that, held pods kept taking new tasks and
`maxReplicas` was no ceiling under steady load. If load comes back before they go, they
consume again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from celeriac.api.pool import CeleryWorkerPoolSpec
from celeriac.controller import stock_workers
from celeriac.controller.observation import Observation, PodView
from celeriac.policy.model import Decision, Mode
from celeriac.policy.scale_in import PodState, plan_scale_in
from celeriac.signals.model import PoolSignals


@dataclass(frozen=True)
class ConsumerChange:
    queues: tuple[str, ...]
    stop: dict[str, str] = field(default_factory=dict)  # hostname -> pod
    resume: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Drained:
    decision: Decision
    hold_since: float | None  # since when busy pods hold a scale-in
    costs: dict[str, int]  # deletion costs to write (only those that change)
    consumers: ConsumerChange | None = None
    probe: tuple[str, ...] = ()  # stock workers to ask `inspect active` (controller.busy_probe)


def drain(
    obs: Observation,
    spec: CeleryWorkerPoolSpec,
    signals: PoolSignals | None,
    decision: Decision,
    current: int | None,
) -> Drained:
    """A scale-in only over pods already ranked, held while busy pods finish (until the
    drain deadline), the leaving busy pods told to stop consuming.

    The ReplicaSet controller reads pod-deletion-cost from its informer cache, so a cost
    written together with a lower replica count may not be seen yet: a scale-in waits one
    tick when, by the costs the ReplicaSet sees now, a busy pod could be among those removed
    (a cost that changes without putting a busy pod at risk holds nothing up).
    """
    if current is None or signals is None or signals.workers is None:
        return Drained(decision, None, {})
    live = [p for p in obs.pods if not p.deleting]
    reported = {w.pod: w.running for w in signals.workers if w.pod is not None}
    running, unknown, unreported = stock_workers.known_loads(obs, spec, reported, live)
    ask = unreported if decision.desired_replicas < current else ()
    if unknown and ask:
        why = f"asking {len(unknown)} workers what they run (inspect active) before scale-in"
        held = _held(decision, current, why)
        return Drained(held, obs.previous.drain_hold_since, {}, None, ask)
    states = [PodState(p.name, p.created_at, running.get(p.name), p.ready) for p in live]
    busy_since = obs.previous.drain_hold_since or obs.now
    scale_in = plan_scale_in(
        states,
        current,
        decision.desired_replicas,
        # Only running tasks left: what is reserved sits on the busy pods themselves.
        backlog_gone=signals.waiting == 0,
        busy_since=busy_since,
        drain_deadline_s=spec.scaling.drain_deadline_seconds,
        now=obs.now,
    )
    have = {p.name: p.deletion_cost for p in live}
    # A pod of unknown load keeps the cost it has: ranking it idle is what this avoids.
    costs = {
        n: c
        for n, c in scale_in.deletion_costs.items()
        if have.get(n) != str(c) and (n in running or n not in unknown)
    }
    leaving = _leaving(live, scale_in.deletion_costs, current - decision.desired_replicas)
    consumers = consumer_change(spec, signals, live, leaving, decision)
    if decision.desired_replicas >= current:
        return Drained(decision, None, costs, consumers)
    removing = current - scale_in.allowed_replicas
    seen = {p.name: _as_cost(p.deletion_cost) for p in live}  # what the ReplicaSet sees now
    if costs and _leaving(live, seen, removing) != _leaving(
        live, scale_in.deletion_costs, removing
    ):
        held = _held(decision, current, "ranking pods before scale-in")
        return Drained(held, obs.previous.drain_hold_since, costs, consumers, ask)
    if scale_in.allowed_replicas == decision.desired_replicas:
        return Drained(decision, None, costs, consumers, ask)
    held = _held(decision, scale_in.allowed_replicas, scale_in.reason)
    return Drained(held, busy_since, costs, consumers, ask)


def _busy_pod_may_go(live: list[PodView], running: dict[str, int], removing: int) -> bool:
    """Whether removing `removing` pods by the costs the ReplicaSet sees now could take a
    busy pod: its cost is at or below the highest cost among those removed (the ReplicaSet
    breaks ties by its own rules, so a tie counts as 'may go')."""
    if removing <= 0:
        return False
    seen = sorted(_as_cost(p.deletion_cost) for p in live if p.ready)
    if not seen:
        return False
    boundary = seen[min(removing, len(seen)) - 1]
    return any(
        running.get(p.name, 0) > 0 and _as_cost(p.deletion_cost) <= boundary
        for p in live
        if p.ready
    )


def _as_cost(annotation: str | None) -> int:
    """pod-deletion-cost as the ReplicaSet reads it: absent or unparsable is 0."""
    try:
        return int(annotation) if annotation is not None else 0
    except ValueError:
        return 0


def _leaving(live: list[PodView], costs: dict[str, int], count: int) -> set[str]:
    """The pods a scale-in by `count` removes: the cheapest, as the ReplicaSet picks them."""
    if count <= 0:
        return set()
    ranked = sorted(live, key=lambda p: (costs.get(p.name, 0), p.name))
    return {p.name for p in ranked[:count]}


def consumer_change(
    spec: CeleryWorkerPoolSpec,
    signals: PoolSignals,
    live: list[PodView],
    leaving: set[str],
    decision: Decision,
) -> ConsumerChange | None:
    if decision.mode == Mode.PAUSED:
        return None
    hosts = {w.pod: (w.hostname, w.running) for w in signals.workers or [] if w.pod}
    stop = {
        hosts[p.name][0]: p.name
        for p in live
        if p.name in leaving and not p.draining and p.name in hosts and hosts[p.name][1] > 0
    }
    resume = {
        hosts[p.name][0]: p.name
        for p in live
        if p.draining and p.name not in leaving and p.name in hosts
    }
    if not stop and not resume:
        return None
    return ConsumerChange(tuple(spec.queues), stop, resume)


def _held(decision: Decision, replicas: int, why: str) -> Decision:
    return decision.model_copy(
        update={
            "desired_replicas": replicas,
            "reason": f"{decision.reason}; {why}",
            "limited_by": "drain",
        }
    )
