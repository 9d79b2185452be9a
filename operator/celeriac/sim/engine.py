"""A discrete-event simulation of one Celery queue on Redis and a fleet of worker pods.

What it models, because it decides the outcome:
- pods take `pod_startup_s` from request to ready and are billed from request until their
  warm shutdown ends (Pending, Starting, Ready, Terminating);
- each pod runs Celery's in-process autoscaler: it prefetches up to range_max x
  `prefetch_multiplier` messages, forks processes up to range_max as soon as it holds that
  many tasks, and shrinks towards range_min once `keepalive_s` passed since it last grew,
  never killing a busy process (celery/worker/autoscale.py, billiard);
- the broker hands a message to the consumer that has waited longest (BRPOP), from the
  highest-priority sub-list first (kombu priority steps; step 0 is the plain list, the only
  one a LLEN on the queue name sees);
- a pod asked to stop takes no new task, hands its prefetched ones back to the head of the
  queue, finishes what runs, then goes (SIGTERM: warm shutdown).
Which pod goes on scale-in is the policy's: idle-first (pod-deletion-cost, what the operator
sets) or youngest-first (the ReplicaSet's default).
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from celeriac.sim.metrics import SimResult, TimelinePoint, drain_times
from celeriac.sim.trace import Task

PRIORITY_STEPS = (0, 3, 6, 9)  # kombu's Redis default
GIVE_UP_AFTER_S = 86_400.0
# From LPUSH to the operator's reconcile on a keyspace-notification wake-up: the median
# measured by bench/bench_reaction.py (bench/results/reaction.md).
WAKE_LATENCY_S = 0.5
# Same-time events: finished tasks free slots before new pods, arrivals and ticks see them.
_DONE, _READY, _TICK = 0, 1, 2


@dataclass
class Pod:
    id: int
    requested_at: float
    ready_at: float
    range_min: int
    range_max: int
    processes: int = 0
    running: int = 0
    reserved: deque[int] = field(default_factory=deque)  # prefetched, not started
    last_grow_s: float = 0.0
    stopping: bool = False
    gone_at: float | None = None
    processed: int = 0
    service_done_s: float = 0.0
    waiting_for_work: bool = False  # blocked in BRPOP
    # Busy and available process-seconds while ready, since the last tick: CPU as HPA sees it.
    busy_area: float = 0.0
    slot_area: float = 0.0
    mark_t: float = 0.0

    def flush(self, now: float) -> None:
        self.busy_area += self.running * (now - self.mark_t)
        if not self.stopping:
            self.slot_area += self.range_max * max(0.0, now - max(self.mark_t, self.ready_at))
        self.mark_t = now

    def is_ready(self, now: float) -> bool:
        return now >= self.ready_at and not self.stopping

    @property
    def held(self) -> int:
        return self.running + len(self.reserved)


@dataclass(frozen=True)
class View:
    """What a policy may observe at a tick."""

    now: float
    llen: int  # the plain Redis list only: what `LLEN <queue>` returns
    waiting: int  # every priority sub-list
    reserved: int  # prefetched + running: the unacked hash under acks_late
    running: int
    oldest_wait_s: float | None
    pods: list[Pod]  # live, not terminating
    terminating: list[Pod]  # still finishing their tasks
    replicas: int
    ready: int
    completed: int
    mean_service_s: float | None
    busy_fraction: float  # busy processes / range_max of ready pods, averaged since last tick


@dataclass(frozen=True)
class Target:
    replicas: int
    range_min: int
    range_max: int


class Policy(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def interval_s(self) -> float: ...
    @property
    def idle_first(self) -> bool: ...
    @property
    def initial_replicas(self) -> int: ...
    @property
    def wake_interval_s(self) -> float | None:
        """Ticks early on new work, at most this often (the operator's keyspace wake-up)."""
        ...

    def decide(self, view: View) -> Target: ...


@dataclass
class SimConfig:
    concurrency: int = 4
    prefetch_multiplier: int = 1
    pod_startup_s: float = 20.0
    slo_wait_s: float = 10.0
    keepalive_s: float = 30.0
    max_replicas: int = 100
    drain_tail_s: float = 300.0


class Simulation:
    def __init__(self, tasks: list[Task], policy: Policy, config: SimConfig) -> None:
        self.tasks = tasks
        self.policy = policy
        self.cfg = config
        self.queues: dict[int, deque[int]] = {step: deque() for step in PRIORITY_STEPS}
        self.waits: list[float] = [float("inf")] * len(tasks)
        self.events: list[tuple[float, int, int, int, int]] = []  # (t, kind, seq, pod, task)
        self.seq = 0
        self.pods: dict[int, Pod] = {}
        self.gone: list[Pod] = []
        self.hungry: deque[Pod] = deque()
        self.range = (config.concurrency, config.concurrency)
        self.completed = 0
        self.service_done = 0.0
        self.actions = 0
        self.requeued = 0
        self.max_replicas = 0
        self.timeline: list[TimelinePoint] = []
        self.tick_generation = 0
        self.last_tick_s = 0.0
        self.next_tick_s = 0.0
        self.wake_pending = False

    # Event plumbing.
    def push(self, t: float, kind: int, pod: int = -1, task: int = -1) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, kind, self.seq, pod, task))

    # The broker.
    def waiting(self) -> int:
        return sum(len(q) for q in self.queues.values())

    def pop_task(self) -> int | None:
        for step in PRIORITY_STEPS:
            if self.queues[step]:
                return self.queues[step].popleft()
        return None

    def enqueue(self, i: int, front: bool = False) -> None:
        step = PRIORITY_STEPS[bisect_right(PRIORITY_STEPS, self.tasks[i].priority) - 1]
        if front:
            self.queues[step].appendleft(i)
        else:
            self.queues[step].append(i)

    def oldest_wait(self, now: float) -> float | None:
        heads = [self.tasks[q[0]].enqueue_s for q in self.queues.values() if q]
        return now - min(heads) if heads else None

    # A worker.
    def wants_more(self, pod: Pod, now: float) -> bool:
        limit = pod.range_max * max(self.cfg.prefetch_multiplier, 1)
        return pod.is_ready(now) and pod.held < max(limit, 1)

    def offer(self, pod: Pod, now: float) -> None:
        if not pod.waiting_for_work and self.wants_more(pod, now):
            pod.waiting_for_work = True
            self.hungry.append(pod)

    def start_tasks(self, pod: Pod, now: float) -> None:
        qty = pod.held
        if min(qty, pod.range_max) > pod.processes:
            pod.processes = min(qty, pod.range_max)
            pod.last_grow_s = now
        while pod.reserved and pod.running < pod.processes:
            i = pod.reserved.popleft()
            self.waits[i] = now - self.tasks[i].enqueue_s
            pod.flush(now)
            pod.running += 1
            self.push(now + self.tasks[i].service_s, _DONE, pod.id, i)

    def shrink_idle(self, pod: Pod, now: float) -> None:
        if now - pod.last_grow_s >= self.cfg.keepalive_s:
            floor = max(pod.held, pod.range_min, pod.running)
            pod.processes = min(pod.processes, max(floor, 0))

    def dispatch(self, now: float) -> None:
        while self.hungry and self.waiting():
            pod = self.hungry.popleft()
            pod.waiting_for_work = False
            if pod.gone_at is not None or not self.wants_more(pod, now):
                continue
            task = self.pop_task()
            assert task is not None
            pod.reserved.append(task)
            self.start_tasks(pod, now)
            self.offer(pod, now)

    # Fleet changes.
    def apply(self, target: Target, now: float) -> None:
        # A pod never runs more processes than the pool's per-pod bound (worker.concurrency.max).
        rmax = max(1, min(target.range_max, self.cfg.concurrency))
        rmin = max(0, min(target.range_min, rmax))
        if (rmin, rmax) != self.range:
            self.range = (rmin, rmax)
            for pod in self.pods.values():
                if not pod.stopping:
                    # Autoscaler.update(): the new max applies at once; busy processes stay.
                    pod.flush(now)
                    pod.range_min, pod.range_max = rmin, rmax
                    pod.processes = max(min(pod.processes, rmax), pod.running, rmin)
                    self.start_tasks(pod, now)
                    self.offer(pod, now)
        live = [p for p in self.pods.values() if not p.stopping]
        want = max(0, min(self.cfg.max_replicas, target.replicas))
        if want != len(live):
            self.actions += 1
        for _ in range(want - len(live)):
            pid = len(self.pods) + len(self.gone)
            pod = Pod(pid, now, now + self.cfg.pod_startup_s, rmin, rmax, processes=rmin)
            self.pods[pid] = pod
            self.push(pod.ready_at, _READY, pid)
        if want < len(live):
            if self.policy.idle_first:
                order = sorted(live, key=lambda p: (p.is_ready(now), p.held, p.requested_at))
            else:
                order = sorted(live, key=lambda p: -p.requested_at)
            for pod in order[: len(live) - want]:
                self.stop(pod, now)
        self.max_replicas = max(self.max_replicas, want)

    def stop(self, pod: Pod, now: float) -> None:
        pod.flush(now)
        pod.stopping = True
        self.requeued += len(pod.reserved)
        for i in reversed(pod.reserved):
            self.enqueue(i, front=True)
        pod.reserved.clear()
        if pod.running == 0:
            self.retire(pod, now)

    def retire(self, pod: Pod, now: float) -> None:
        pod.gone_at = now
        del self.pods[pod.id]
        self.gone.append(pod)

    def wake(self, now: float) -> None:
        """New work wakes the policy early, no more often than its wake interval."""
        interval = self.policy.wake_interval_s
        if interval is None or self.wake_pending:
            return
        due = max(now + WAKE_LATENCY_S, self.last_tick_s + interval)
        if due < self.next_tick_s:
            self.tick_generation += 1
            self.wake_pending = True
            self.push(due, _TICK, self.tick_generation)

    def view(self, now: float) -> View:
        live = [p for p in self.pods.values() if not p.stopping]
        ready = [p for p in live if p.is_ready(now)]
        busy_area = slot_area = 0.0
        for pod in self.pods.values():
            pod.flush(now)
            busy_area += pod.busy_area
            slot_area += pod.slot_area
            pod.busy_area = pod.slot_area = 0.0
        busy = busy_area / slot_area if slot_area else 0.0
        return View(
            now=now,
            llen=len(self.queues[PRIORITY_STEPS[0]]),
            waiting=self.waiting(),
            reserved=sum(p.held for p in self.pods.values()),
            running=sum(p.running for p in self.pods.values()),
            oldest_wait_s=self.oldest_wait(now),
            pods=live,
            terminating=[p for p in self.pods.values() if p.stopping],
            replicas=len(live),
            ready=len(ready),
            completed=self.completed,
            mean_service_s=self.service_done / self.completed if self.completed else None,
            busy_fraction=busy,
        )

    def task_done(self, pod: Pod, task: Task, now: float) -> bool:
        """A task finished; True when its pod was stopping and is now gone."""
        pod.flush(now)
        pod.running -= 1
        pod.processed += 1
        pod.service_done_s += task.service_s
        self.completed += 1
        self.service_done += task.service_s
        if pod.stopping and pod.running == 0:
            self.retire(pod, now)
            return True
        self.start_tasks(pod, now)
        self.shrink_idle(pod, now)
        self.offer(pod, now)
        return False

    def tick(self, now: float, done: bool, end: float) -> None:
        """The policy's tick: it observes, decides, and the fleet follows."""
        self.last_tick_s = now
        self.wake_pending = False
        for pod in self.pods.values():
            self.shrink_idle(pod, now)
        view = self.view(now)
        self.apply(self.policy.decide(view), now)
        live = [p for p in self.pods.values() if not p.stopping]
        self.timeline.append(TimelinePoint(now, len(live), view.waiting, view.oldest_wait_s or 0.0))
        # A policy that never serves the queue ends the run a day late, its tasks unserved.
        if not (done and now >= end) and now < end + GIVE_UP_AFTER_S:
            self.next_tick_s = now + self.policy.interval_s
            self.push(self.next_tick_s, _TICK, self.tick_generation)

    def run(self) -> SimResult:
        tasks, cfg = self.tasks, self.cfg
        start = self.policy.initial_replicas
        for _ in range(start):
            pid = len(self.pods)
            self.pods[pid] = Pod(pid, 0.0, 0.0, cfg.concurrency, cfg.concurrency, cfg.concurrency)
        for pod in self.pods.values():
            self.offer(pod, 0.0)
        self.max_replicas = start
        self.push(0.0, _TICK, 0)
        end = (tasks[-1].enqueue_s if tasks else 0.0) + cfg.drain_tail_s
        next_task, now = 0, 0.0
        while self.events:
            t_event = self.events[0][0]
            if next_task < len(tasks) and tasks[next_task].enqueue_s <= t_event:
                now = tasks[next_task].enqueue_s
                self.enqueue(next_task)
                next_task += 1
                self.dispatch(now)
                self.wake(now)
                continue
            now, kind, _, pod_id, task_id = heapq.heappop(self.events)
            if kind == _DONE:
                if self.task_done(self.pods[pod_id], tasks[task_id], now):
                    continue
            elif kind == _READY:
                pod_or_none = self.pods.get(pod_id)
                if pod_or_none is not None and not pod_or_none.stopping:
                    self.offer(pod_or_none, now)
            elif pod_id == self.tick_generation:
                done = next_task >= len(tasks) and self.completed == len(tasks)
                self.tick(now, done, end)
            self.dispatch(now)
        for pod in list(self.pods.values()):
            self.retire(pod, now)
        return SimResult(
            policy=self.policy.name,
            waits=self.waits,
            pod_seconds=sum((p.gone_at or now) - p.requested_at for p in self.gone),
            scaling_actions=self.actions,
            max_replicas=self.max_replicas,
            requeued=self.requeued,
            timeline=self.timeline,
            slo_wait_s=cfg.slo_wait_s,
            drain_s=drain_times(tasks, self.waits),
            pod_spans=[(p.requested_at, p.gone_at or now) for p in self.gone],
        )


def simulate(tasks: list[Task], policy: Policy, config: SimConfig) -> SimResult:
    return Simulation(tasks, policy, config).run()
