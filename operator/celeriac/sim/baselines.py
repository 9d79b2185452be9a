"""What users run instead of celeriac, with their published defaults, plus static fleets.

Defaults as documented by each project: KEDA's ScaledObject (pollingInterval 30 s,
cooldownPeriod 300 s) and Redis list scaler (listLength 5, AverageValue) at
keda.sh/docs/latest/reference/scaledobject-spec and .../scalers/redis-lists; the HPA v2
algorithm and default behavior (15 s sync, 0.1 tolerance, up max(100 %, 4 pods) per 15 s,
300 s down stabilization) at kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale;
Knative's KPA (2 s tick, 60 s stable and 6 s panic windows, panic at 2x) at
knative.dev/docs/serving/autoscaling/kpa-specific. The clairvoyant oracle is in `oracle`.

`keda-tuned` is KEDA as a careful user would set it; it still sees only `LLEN`, so neither
prefetched nor running tasks, nor the priority sub-lists (keda#7066).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from celeriac.sim.engine import Target, View
from celeriac.sim.metrics import erlang_wait_within
from celeriac.sim.trace import Task

HPA_SYNC_S = 15.0  # --horizontal-pod-autoscaler-sync-period: cluster-wide, not per object
HPA_TOLERANCE = 0.1


@dataclass
class HPABehavior:
    """HPA v2 default behavior: up max(100 %, 4 pods) per 15 s; down after a 300 s
    stabilization window of recommendations, 100 % per 15 s."""

    down_window_s: float = 300.0
    recs: list[tuple[float, int]] = field(default_factory=list)

    def apply(self, now: float, current: int, raw: int) -> int:
        self.recs = [(t, r) for t, r in self.recs if now - t <= self.down_window_s] + [(now, raw)]
        if raw > current:
            return min(raw, max(2 * current, current + 4))
        if raw < current:
            return min(current, max(r for _, r in self.recs))
        return current


def hpa_ratio(current: int, ratio: float) -> int:
    """ceil(current x metric / target), unchanged within the tolerance."""
    if abs(ratio - 1.0) <= HPA_TOLERANCE:
        return current
    return math.ceil(current * ratio)


@dataclass
class HPACpuPolicy:
    """HPA on CPU: tasks are CPU-bound, one core per busy process, requests = processes."""

    concurrency: int
    target: float = 0.7
    min_replicas: int = 1
    name: str = "hpa-cpu"
    interval_s: float = HPA_SYNC_S
    idle_first: bool = False
    wake_interval_s: float | None = None
    initial_replicas: int = 1
    behavior: HPABehavior = field(default_factory=HPABehavior)

    def decide(self, view: View) -> Target:
        current = max(view.replicas, 1)
        raw = hpa_ratio(current, view.busy_fraction / self.target)
        want = max(self.min_replicas, self.behavior.apply(view.now, view.replicas, raw))
        return Target(want, self.concurrency, self.concurrency)


@dataclass
class KedaPolicy:
    """KEDA's Redis list scaler: AverageValue target `listLength` on LLEN, behind an HPA.

    KEDA itself polls every `pollingInterval` and only moves 0 <-> 1 (to zero after
    `cooldownPeriod` without activity); between 1 and N the HPA reads the metric every 15 s.
    """

    concurrency: int
    list_length: int = 5
    polling_s: float = 30.0
    cooldown_s: float = 300.0
    min_replicas: int = 0
    down_window_s: float = 300.0
    name: str = "keda"
    idle_first: bool = False
    wake_interval_s: float | None = None
    initial_replicas: int = 1
    last_active_s: float = 0.0
    next_poll_s: float = 0.0
    next_sync_s: float = 0.0

    def __post_init__(self) -> None:
        self.behavior = HPABehavior(down_window_s=self.down_window_s)
        self.interval_s = min(self.polling_s, HPA_SYNC_S)

    def target(self, replicas: int) -> Target:
        return Target(replicas, self.concurrency, self.concurrency)

    def decide(self, view: View) -> Target:
        now, current = view.now, view.replicas
        if now >= self.next_poll_s:
            self.next_poll_s = now + self.polling_s
            active = view.llen > 0  # activationListLength 0
            if active:
                self.last_active_s = now
            if current == 0:
                return self.target(1 if active else 0)
            idle_for = now - self.last_active_s
            if self.min_replicas == 0 and not active and idle_for >= self.cooldown_s:
                return self.target(0)
        if current == 0 or now < self.next_sync_s:
            return self.target(current)
        self.next_sync_s = now + HPA_SYNC_S
        raw = hpa_ratio(current, view.llen / (self.list_length * current))
        return self.target(max(1, self.min_replicas, self.behavior.apply(now, current, raw)))


def keda_tuned(concurrency: int) -> KedaPolicy:
    """listLength = processes per pod, 5 s polling, keep one pod, 60 s scale-down window.
    The HPA's 15 s sync is a controller-manager flag a pool owner cannot change."""
    return KedaPolicy(
        concurrency,
        list_length=concurrency,
        polling_s=5.0,
        cooldown_s=60.0,
        min_replicas=1,
        down_window_s=60.0,
        name="keda-tuned",
    )


@dataclass
class KpaPolicy:
    """Knative KPA on in-flight work (waiting + held by workers): 2 s tick, 60 s stable and
    6 s panic windows, panic at 2x, scale-down at most 2x per tick, to zero after the stable
    window saw nothing plus a 30 s grace."""

    concurrency: int
    target_utilization: float = 0.7
    min_replicas: int = 0
    name: str = "kpa"
    interval_s: float = 2.0
    idle_first: bool = False
    wake_interval_s: float | None = None
    initial_replicas: int = 1
    samples: list[tuple[float, float]] = field(default_factory=list)
    panic_until: float = 0.0
    last_demand_s: float = 0.0

    def decide(self, view: View) -> Target:
        now = view.now
        demand = view.waiting + view.reserved
        if demand:
            self.last_demand_s = now
        self.samples = [(t, d) for t, d in self.samples if now - t < 60.0] + [(now, demand)]
        per_pod = self.concurrency * self.target_utilization
        stable = sum(d for _, d in self.samples) / len(self.samples)
        recent = [d for t, d in self.samples if now - t < 6.0]
        stable_want = math.ceil(stable / per_pod)
        panic_want = math.ceil(sum(recent) / len(recent) / per_pod)
        current = view.replicas
        if panic_want >= 2 * max(current, 1) and panic_want > current:
            self.panic_until = now + 60.0
        if now < self.panic_until:
            want = max(current, panic_want)
        else:
            want = max(stable_want, math.ceil(current / 2))
        if want == 0 and now - self.last_demand_s < 60.0 + 30.0:
            want = min(current, 1)
        return Target(max(self.min_replicas, want), self.concurrency, self.concurrency)


@dataclass
class StaticPolicy:
    replicas: int
    concurrency: int
    name: str
    interval_s: float = 60.0
    idle_first: bool = False
    wake_interval_s: float | None = None

    @property
    def initial_replicas(self) -> int:
        return self.replicas

    def decide(self, view: View) -> Target:
        return Target(self.replicas, self.concurrency, self.concurrency)


def peak_replicas(tasks: list[Task], concurrency: int, window_s: float = 60.0) -> int:
    """Enough slots for the busiest minute's work."""
    best, work, j = 0.0, 0.0, 0
    for t in tasks:
        work += t.service_s
        while tasks[j].enqueue_s < t.enqueue_s - window_s:
            work -= tasks[j].service_s
            j += 1
        best = max(best, work / window_s)
    return max(1, math.ceil(best / concurrency))


def erlang_replicas(
    tasks: list[Task], concurrency: int, slo_wait_s: float, target: float = 0.95
) -> int:
    """Fewest pods so that P(wait <= SLO) >= target at the trace's mean load (M/M/c)."""
    span = max(tasks[-1].enqueue_s - tasks[0].enqueue_s, 1.0)
    rate = len(tasks) / span
    service = sum(t.service_s for t in tasks) / len(tasks)
    servers = max(1, math.ceil(rate * service))
    while erlang_wait_within(servers, rate, service, slo_wait_s) < target and servers < 10_000:
        servers += 1
    return max(1, math.ceil(servers / concurrency))
