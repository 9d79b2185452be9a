"""The policies compared in the simulator: celeriac's own `decide()`, and what users use instead.

Baselines follow their published defaults (FIELD-NOTES: KEDA ScaledObject and Redis list
scaler, HPA v2, Knative KPA). `keda-tuned` is KEDA as a careful user would set it; it still
sees only `LLEN`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from celeriac.api.pool import Concurrency, Scaling
from celeriac.policy import decide
from celeriac.policy.model import PolicyInput, PolicyMemory
from celeriac.signals.model import PoolSignals, QueueBacklog, WorkerLoad
from celeriac.sim.engine import Policy, View
from celeriac.sim.trace import Task


@dataclass
class CeleriacPolicy:
    """The operator's policy, fed the signals the operator would read."""

    concurrency: int
    slo_wait_s: float
    min_replicas: int = 1
    max_replicas: int = 100
    name: str = "celeriac"
    interval_s: float = 5.0
    idle_first: bool = True
    memory: PolicyMemory = field(default_factory=PolicyMemory)

    def __post_init__(self) -> None:
        # Aim at half the SLO: the target is where the queue wait is steered, the SLO a bound.
        self.scaling = Scaling(
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            target_queue_wait_seconds=self.slo_wait_s / 2,
            polling_interval_seconds=self.interval_s,
        )
        self.bounds = Concurrency(min=1, max=self.concurrency)

    def decide(self, view: View) -> tuple[int, int]:
        workers = [
            WorkerLoad(
                hostname=f"celery@pod-{p.id}",
                pod=f"pod-{p.id}",
                running=len(p.running),
                reserved=len(p.running) + len(p.reserved),
                pool_size=p.processes,
                range_min=1,
                range_max=p.processes,
                processed_total=p.processed,
                mean_task_seconds=view.mean_service_s,
                ts=view.now,
            )
            for p in view.pods
            if view.now >= p.ready_at
        ]
        signals = PoolSignals(
            observed_at=view.now,
            queues=[
                QueueBacklog(
                    queue="celery",
                    waiting=view.llen,
                    reserved=view.reserved,
                    oldest_age_s=view.oldest_wait_s,
                )
            ],
            workers=workers,
        )
        decision = decide(
            PolicyInput(
                now=view.now,
                scaling=self.scaling,
                concurrency=self.bounds,
                signals=signals,
                current_replicas=view.replicas,
                ready_replicas=view.ready,
                memory=self.memory,
            )
        )
        self.memory = decision.memory
        return decision.desired_replicas, decision.range_max


@dataclass
class HPABehavior:
    """The HPA's default behavior: up max(100 %, 4 pods)/15 s, down 300 s stabilization."""

    down_window_s: float = 300.0
    recs: list[tuple[float, int]] = field(default_factory=list)

    def apply(self, now: float, current: int, raw: int) -> int:
        self.recs = [(t, r) for t, r in self.recs if now - t <= self.down_window_s] + [(now, raw)]
        if raw > current:
            return min(raw, max(2 * current, current + 4))
        if raw < current:
            return min(current, max(r for _, r in self.recs))
        return current


@dataclass
class HPACpuPolicy:
    concurrency: int
    target: float = 0.7
    min_replicas: int = 1
    name: str = "hpa-cpu"
    interval_s: float = 15.0
    idle_first: bool = False
    behavior: HPABehavior = field(default_factory=HPABehavior)

    def decide(self, view: View) -> tuple[int, int]:
        current = max(view.replicas, 1)
        ratio = view.busy_fraction / self.target
        raw = current if abs(ratio - 1) <= 0.1 else math.ceil(current * ratio)
        return max(
            self.min_replicas, self.behavior.apply(view.now, view.replicas, raw)
        ), self.concurrency


@dataclass
class KedaPolicy:
    """Redis list scaler: desired = ceil(LLEN / listLength) through the HPA (AverageValue)."""

    concurrency: int
    list_length: int = 5
    down_window_s: float = 300.0
    min_replicas: int = 1
    name: str = "keda"
    interval_s: float = 15.0
    idle_first: bool = False

    def __post_init__(self) -> None:
        self.behavior = HPABehavior(down_window_s=self.down_window_s)

    def decide(self, view: View) -> tuple[int, int]:
        raw = math.ceil(view.llen / self.list_length)
        current = view.replicas
        if current > 0 and raw > 0:
            ratio = view.llen / (current * self.list_length)
            raw = current if abs(ratio - 1) <= 0.1 else raw
        return max(self.min_replicas, self.behavior.apply(view.now, current, raw)), self.concurrency


def keda_tuned(concurrency: int, min_replicas: int = 1) -> KedaPolicy:
    # listLength = slots per pod, 60 s scale-down window, the HPA's 15 s sync left alone.
    return KedaPolicy(
        concurrency,
        list_length=concurrency,
        down_window_s=60.0,
        min_replicas=min_replicas,
        name="keda-tuned",
    )


@dataclass
class KpaPolicy:
    """Knative-style: concurrency target, 60 s stable and 6 s panic windows, 2 s tick."""

    concurrency: int
    target_utilization: float = 0.7
    min_replicas: int = 1
    name: str = "kpa"
    interval_s: float = 2.0
    idle_first: bool = False
    samples: list[tuple[float, float]] = field(default_factory=list)
    panic_until: float = 0.0

    def decide(self, view: View) -> tuple[int, int]:
        demand = view.llen + view.reserved
        self.samples = [(t, d) for t, d in self.samples if view.now - t <= 60.0] + [
            (view.now, demand)
        ]
        per_pod = self.concurrency * self.target_utilization
        stable = sum(d for _, d in self.samples) / len(self.samples)
        recent = [d for t, d in self.samples if view.now - t <= 6.0]
        panic = sum(recent) / len(recent)
        current = max(view.replicas, 1)
        stable_want = math.ceil(stable / per_pod)
        panic_want = math.ceil(panic / per_pod)
        if panic_want >= 2 * current:
            self.panic_until = view.now + 60.0
        if view.now < self.panic_until:
            want = max(view.replicas, panic_want)
        else:
            want = max(stable_want, math.ceil(view.replicas / 2))  # scale-down rate 2x
        return max(self.min_replicas, want), self.concurrency


@dataclass
class StaticPolicy:
    replicas: int
    concurrency: int
    name: str
    interval_s: float = 60.0
    idle_first: bool = False

    @property
    def initial_replicas(self) -> int:
        return self.replicas

    def decide(self, view: View) -> tuple[int, int]:
        return self.replicas, self.concurrency


def peak_replicas(tasks: list[Task], concurrency: int, window_s: float = 60.0) -> int:
    """Enough slots for the busiest window's work."""
    if not tasks:
        return 1
    best = 0.0
    j = 0
    work = 0.0
    for i, t in enumerate(tasks):
        work += t.service_s
        while tasks[j].enqueue_s < t.enqueue_s - window_s:
            work -= tasks[j].service_s
            j += 1
        best = max(best, work / window_s)
        del i
    return max(1, math.ceil(best / concurrency))


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits (M/M/c), computed stably."""
    if offered >= servers:
        return 1.0
    term = 1.0
    total = 1.0
    for k in range(1, servers):
        term *= offered / k
        total += term
    term *= offered / servers
    top = term * servers / (servers - offered)
    return top / (total + top)


def erlang_replicas(
    tasks: list[Task], concurrency: int, slo_wait_s: float, target: float = 0.95
) -> int:
    """Fewest pods so that P(wait <= SLO) >= target at the trace's mean load."""
    span = max(tasks[-1].enqueue_s - tasks[0].enqueue_s, 1.0)
    rate = len(tasks) / span
    service = sum(t.service_s for t in tasks) / len(tasks)
    offered = rate * service
    servers = max(1, math.ceil(offered))
    while True:
        waiting = erlang_c(servers, offered)
        p_late = waiting * math.exp(-(servers - offered) * slo_wait_s / service)
        if 1 - p_late >= target or servers > 10_000:
            return max(1, math.ceil(servers / concurrency))
        servers += 1


@dataclass
class OraclePolicy:
    """Clairvoyant lower bound on cost: knows every arrival in advance.

    A task may wait up to the SLO, so the work arriving in any SLO-long window must be done by
    slots that exist from its start: slots(s) = max over windows starting at s of the work in
    them divided by their length (a fluid bound, so a few tasks can still be late). Pods are
    asked for `startup_s` ahead, and kept through idle gaps shorter than a start-up, since a
    relaunch would cost more than idling.
    """

    tasks: list[Task]
    concurrency: int
    startup_s: float
    slo_wait_s: float = 10.0
    min_replicas: int = 1
    name: str = "oracle"
    interval_s: float = 1.0
    idle_first: bool = True

    def __post_init__(self) -> None:
        horizon = int(max(t.enqueue_s + t.service_s for t in self.tasks)) + 2
        work = [0.0] * (horizon + 1)
        longest = [0.0] * (horizon + 1)
        for t in self.tasks:
            work[int(t.enqueue_s)] += t.service_s
            longest[int(t.enqueue_s)] = max(longest[int(t.enqueue_s)], t.service_s)
        window = max(1, int(self.slo_wait_s))
        pods = []
        running = 0.0
        for s in range(horizon + 1):
            running += work[s] - (work[s - window] if s >= window else 0.0)
            pods.append(math.ceil(running / window / self.concurrency - 1e-9))
        lead = math.ceil(self.startup_s)
        want = [max(pods[s : s + lead + window] or [0]) for s in range(len(pods))]
        held = list(want)
        for s in range(len(held)):
            behind = max(want[max(0, s - lead) : s + 1])
            ahead = max(want[s : s + lead + 1] or [0])
            held[s] = max(want[s], min(behind, ahead))
        self.want = held

    def decide(self, view: View) -> tuple[int, int]:
        s = int(view.now)
        want = self.want[s] if s < len(self.want) else 0
        return max(self.min_replicas, want), self.concurrency


POLICY_NAMES = (
    "celeriac",
    "keda",
    "keda-tuned",
    "hpa-cpu",
    "kpa",
    "static-peak",
    "static-erlang",
    "oracle",
)


def make_policy(
    name: str, tasks: list[Task], concurrency: int, slo_wait_s: float, startup_s: float
) -> Policy:
    if name == "celeriac":
        return CeleriacPolicy(concurrency, slo_wait_s)
    if name == "keda":
        return KedaPolicy(concurrency)
    if name == "keda-tuned":
        return keda_tuned(concurrency)
    if name == "hpa-cpu":
        return HPACpuPolicy(concurrency)
    if name == "kpa":
        return KpaPolicy(concurrency)
    if name == "static-peak":
        return StaticPolicy(peak_replicas(tasks, concurrency), concurrency, "static-peak")
    if name == "static-erlang":
        return StaticPolicy(
            erlang_replicas(tasks, concurrency, slo_wait_s), concurrency, "static-erlang"
        )
    if name == "oracle":
        return OraclePolicy(tasks, concurrency, startup_s, slo_wait_s)
    raise ValueError(f"unknown policy {name!r}; one of {', '.join(POLICY_NAMES)}")
