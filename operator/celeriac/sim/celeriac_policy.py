"""The operator's own policy in the simulator: the same `decide()`, fed the signals the
operator would gather (Celery-correct backlog from the broker, worker reports)."""

from __future__ import annotations

from dataclasses import dataclass, field

from celeriac.api.pool import Concurrency, Scaling
from celeriac.policy import decide
from celeriac.policy.model import Decision, PolicyInput, PolicyMemory
from celeriac.signals.model import PoolSignals, QueueBacklog, WorkerLoad
from celeriac.sim.engine import Pod, Target, View


def worker_load(pod: Pod, now: float) -> WorkerLoad:
    return WorkerLoad(
        hostname=f"celery@pod-{pod.id}",
        pod=f"pod-{pod.id}",
        running=pod.running,
        reserved=pod.held,
        pool_size=pod.processes,
        range_min=pod.range_min,
        range_max=pod.range_max,
        processed_total=pod.processed,
        mean_task_seconds=pod.service_done_s / pod.processed if pod.processed else None,
        ts=now,
    )


def pool_signals(view: View) -> PoolSignals:
    reporting = [p for p in view.pods + view.terminating if view.now >= p.ready_at]
    return PoolSignals(
        observed_at=view.now,
        queues=[
            QueueBacklog(
                queue="celery",
                waiting=view.waiting,
                reserved=view.reserved,
                oldest_age_s=view.oldest_wait_s,
            )
        ],
        workers=[worker_load(p, view.now) for p in reporting],
    )


@dataclass
class CeleriacPolicy:
    """`scaling` defaults to the CRD's defaults with the latency target at half the SLO:
    the target is where the wait is steered, the SLO the bound it must stay under."""

    concurrency: int
    slo_wait_s: float
    scaling: Scaling | None = None
    name: str = "celeriac"
    idle_first: bool = True
    initial_replicas: int = 1
    wake_interval_s: float | None = 1.0  # controller settings: min_reconcile_interval_s
    memory: PolicyMemory = field(default_factory=PolicyMemory)
    decisions: list[Decision] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.scaling is None:
            self.scaling = Scaling(max_replicas=100, target_queue_wait_seconds=self.slo_wait_s / 2)
        self.interval_s = self.scaling.polling_interval_seconds
        self.bounds = Concurrency(min=1, max=self.concurrency)

    def decide(self, view: View) -> Target:
        assert self.scaling is not None
        decision = decide(
            PolicyInput(
                now=view.now,
                scaling=self.scaling,
                concurrency=self.bounds,
                signals=pool_signals(view),
                current_replicas=view.replicas,
                ready_replicas=view.ready,
                memory=self.memory,
            )
        )
        self.memory = decision.memory
        self.decisions.append(decision)
        return Target(decision.desired_replicas, decision.range_min, decision.range_max)
