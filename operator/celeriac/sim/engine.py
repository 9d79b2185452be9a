"""A time-stepped simulation of one Celery queue and a fleet of worker pods.

What it models, because it decides the outcome: pods take `pod_startup_s` to become ready
and are billed from the moment they are requested until their warm shutdown ends; each pod
runs as many tasks as its process count (the in-process `--autoscale` range maximum) and
prefetches up to `prefetch_multiplier` x that, where Redis' `LLEN` no longer sees them; a pod
asked to stop takes no new task, hands its prefetched ones back and finishes what runs. Which
pod goes first on scale-in is the policy's: idle-first (pod-deletion-cost) or youngest-first
(the ReplicaSet's default when nothing says otherwise).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from celeriac.sim.trace import Task


@dataclass
class Pod:
    id: int
    requested_at: float
    ready_at: float
    processes: int
    running: list[tuple[float, int]] = field(default_factory=list)  # (finish time, task index)
    reserved: deque[int] = field(default_factory=deque)
    stopping: bool = False
    stopped_at: float | None = None
    processed: int = 0
    busy_s: float = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.ready_at and not self.stopping


@dataclass(frozen=True)
class View:
    """What a policy may observe at a tick."""

    now: float
    llen: int  # the Redis list only
    reserved: int  # prefetched + running: the unacked hash
    running: int
    oldest_wait_s: float | None
    pods: list[Pod]
    replicas: int
    ready: int
    processes: int  # per pod, as last set
    completed: int
    mean_service_s: float | None
    busy_fraction: float  # busy processes / all processes of ready pods, over the last tick


class Policy(Protocol):
    name: str
    interval_s: float
    idle_first: bool

    def decide(self, view: View) -> tuple[int, int]:
        """(replicas, processes per pod)."""
        ...


@dataclass
class SimConfig:
    concurrency: int = 4
    prefetch_multiplier: int = 1
    pod_startup_s: float = 20.0
    slo_wait_s: float = 10.0
    dt_s: float = 0.25
    initial_replicas: int = 1
    max_replicas: int = 100
    drain_tail_s: float = 300.0


@dataclass
class SimResult:
    policy: str
    tasks: int
    waits: list[float]
    pod_seconds: float
    scaling_actions: int
    max_replicas: int
    timeline: list[tuple[float, int, int, float]]  # (t, replicas, waiting, oldest wait)
    slo_wait_s: float

    def percentile(self, q: float) -> float:
        ordered = sorted(self.waits)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    def summary(self) -> dict[str, float | int | str]:
        met = sum(1 for w in self.waits if w <= self.slo_wait_s)
        return {
            "policy": self.policy,
            "tasks": self.tasks,
            "slo_wait_s": self.slo_wait_s,
            "slo_attainment": round(met / max(1, self.tasks), 4),
            "wait_p50_s": round(self.percentile(0.50), 2),
            "wait_p95_s": round(self.percentile(0.95), 2),
            "wait_p99_s": round(self.percentile(0.99), 2),
            "pod_seconds": round(self.pod_seconds, 1),
            "scaling_actions": self.scaling_actions,
            "max_replicas": self.max_replicas,
        }


def simulate(tasks: list[Task], policy: Policy, config: SimConfig) -> SimResult:
    cfg = config
    queue: deque[int] = deque()
    waits: list[float | None] = [None] * len(tasks)
    initial = int(getattr(policy, "initial_replicas", cfg.initial_replicas))
    pods: list[Pod] = [Pod(i, 0.0, 0.0, cfg.concurrency) for i in range(initial)]
    gone: list[Pod] = []
    next_task = 0
    now = 0.0
    next_tick = 0.0
    processes = cfg.concurrency
    actions = 0
    max_replicas = len(pods)
    completed = 0
    service_done = 0.0
    busy_acc = 0.0
    slots_acc = 0.0
    timeline: list[tuple[float, int, int, float]] = []
    pod_ids = len(pods)
    end = (tasks[-1].enqueue_s if tasks else 0.0) + cfg.drain_tail_s
    while now <= end or queue or any(p.running or p.reserved for p in pods):
        while next_task < len(tasks) and tasks[next_task].enqueue_s <= now:
            queue.append(next_task)
            next_task += 1
        for pod in pods:
            if pod.running:
                still = [(f, i) for f, i in pod.running if f > now]
                done = len(pod.running) - len(still)
                if done:
                    for _f, i in pod.running:
                        if _f <= now:
                            service_done += tasks[i].service_s
                    completed += done
                    pod.processed += done
                    pod.running = still
        # Warm shutdown ends when nothing runs any more.
        for pod in pods:
            if pod.stopping and not pod.running and pod.stopped_at is None:
                pod.stopped_at = now
        for pod in [p for p in pods if p.stopped_at is not None]:
            pods.remove(pod)
            gone.append(pod)
        # Dispatch: prefetch into ready pods (round-robin, like BRPOP across consumers), then run.
        ready = [p for p in pods if p.ready(now)]
        limit = processes * cfg.prefetch_multiplier
        progress = True
        while queue and progress:
            progress = False
            for pod in ready:
                if queue and len(pod.running) + len(pod.reserved) < max(limit, processes):
                    pod.reserved.append(queue.popleft())
                    progress = True
        for pod in ready:
            while pod.reserved and len(pod.running) < pod.processes:
                i = pod.reserved.popleft()
                waits[i] = now - tasks[i].enqueue_s
                pod.running.append((now + tasks[i].service_s, i))
        busy_acc += sum(len(p.running) for p in ready) * cfg.dt_s
        slots_acc += sum(p.processes for p in ready) * cfg.dt_s

        if now >= next_tick:
            oldest = now - tasks[queue[0]].enqueue_s if queue else None
            view = View(
                now=now,
                llen=len(queue),
                reserved=sum(len(p.running) + len(p.reserved) for p in pods),
                running=sum(len(p.running) for p in pods),
                oldest_wait_s=oldest,
                pods=[p for p in pods if not p.stopping],
                replicas=sum(1 for p in pods if not p.stopping),
                ready=len(ready),
                processes=processes,
                completed=completed,
                mean_service_s=service_done / completed if completed else None,
                busy_fraction=busy_acc / slots_acc if slots_acc else 0.0,
            )
            busy_acc = slots_acc = 0.0
            want, processes = policy.decide(view)
            want = max(0, min(cfg.max_replicas, want))
            processes = max(1, processes)
            for pod in pods:
                if pod.processes != processes and not pod.stopping:
                    pod.processes = processes
            live = [p for p in pods if not p.stopping]
            if want != len(live):
                actions += 1
            if want > len(live):
                for _ in range(want - len(live)):
                    pods.append(Pod(pod_ids, now, now + cfg.pod_startup_s, processes))
                    pod_ids += 1
            elif want < len(live):
                if policy.idle_first:
                    order = sorted(
                        live, key=lambda p: (now >= p.ready_at, len(p.running), p.requested_at)
                    )
                else:
                    order = sorted(live, key=lambda p: -p.requested_at)
                for pod in order[: len(live) - want]:
                    pod.stopping = True
                    # Prefetched tasks go back to the head of the queue.
                    queue.extendleft(reversed(pod.reserved))
                    pod.reserved.clear()
            max_replicas = max(max_replicas, sum(1 for p in pods if not p.stopping))
            timeline.append(
                (now, sum(1 for p in pods if not p.stopping), len(queue), oldest or 0.0)
            )
            next_tick = now + policy.interval_s
        now += cfg.dt_s
        if now > end + 86_400:
            break
    pod_seconds = sum(((p.stopped_at or now) - p.requested_at) for p in gone + pods)
    return SimResult(
        policy=policy.name,
        tasks=len(tasks),
        waits=[w if w is not None else float("inf") for w in waits],
        pod_seconds=pod_seconds,
        scaling_actions=actions,
        max_replicas=max_replicas,
        timeline=timeline,
        slo_wait_s=cfg.slo_wait_s,
    )
