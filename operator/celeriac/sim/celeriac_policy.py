"""The operator's own tick in the simulator: the same `plan()` (and within it `decide()`),
fed what the operator would observe (Celery-correct backlog, worker reports, its pods)."""

from __future__ import annotations

from dataclasses import dataclass, field

from celeriac.actuators import render
from celeriac.api.pool import CeleryWorkerPoolSpec, Scaling
from celeriac.api.status import CeleryWorkerPoolStatus
from celeriac.controller.observation import DeploymentView, Observation, PodView, PoolRef
from celeriac.controller.plan import plan
from celeriac.policy.model import Decision, PolicyMemory
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


SIM_REF = PoolRef(namespace="sim", name="pool", uid="sim", generation=1)


@dataclass(frozen=True)
class SpecChange:
    """What a user does to the pool during a run: `kubectl scale cwp` (replicas) or pause."""

    at_s: float
    replicas: int | None = None
    paused: bool | None = None


@dataclass
class CeleriacPolicy:
    """The operator's own tick in the simulator: `controller.plan.plan`, the very function
    the operator runs, so drain-aware scale-in, pause and `kubectl scale` are simulated too.

    `scaling` defaults to the CRD's defaults with the latency target at half the SLO: the
    target is where the wait is steered, the SLO the bound it must stay under. The simulator
    does not model `cancel_consumer`: pods held for a drain keep taking tasks."""

    concurrency: int
    slo_wait_s: float
    scaling: Scaling | None = None
    name: str = "celeriac"
    idle_first: bool = True
    initial_replicas: int = 1
    wake_interval_s: float | None = 1.0  # controller settings: min_reconcile_interval_s
    changes: tuple[SpecChange, ...] = ()
    status: CeleryWorkerPoolStatus = field(default_factory=CeleryWorkerPoolStatus)
    decisions: list[Decision] = field(default_factory=list)
    costs: dict[str, str] = field(default_factory=dict)  # pod-deletion-cost as written

    def __post_init__(self) -> None:
        if self.scaling is None:
            self.scaling = Scaling(max_replicas=100, target_queue_wait_seconds=self.slo_wait_s / 2)
        self.interval_s = self.scaling.polling_interval_seconds
        self.spec = CeleryWorkerPoolSpec.model_validate(
            {
                "queues": ["celery"],
                "template": {"image": "sim", "app": "sim"},
                "broker": {"urlSecretRef": {"name": "sim"}},
                "worker": {"concurrency": {"min": 1, "max": self.concurrency}},
                "scaling": self.scaling.model_dump(by_alias=True),
            }
        )
        body = render.render_deployment(SIM_REF.name, SIM_REF.namespace, SIM_REF.uid, self.spec, 1)
        self.template_hash = render.body_hash(render.stamped(body))

    @property
    def memory(self) -> PolicyMemory:
        return self.status.policy_memory or PolicyMemory()

    def spec_at(self, now: float) -> CeleryWorkerPoolSpec:
        spec = self.spec
        for change in self.changes:
            if change.at_s > now:
                continue
            if change.replicas is not None:
                spec = spec.model_copy(update={"replicas": change.replicas})
            if change.paused is not None:
                scaling = spec.scaling.model_copy(update={"paused": change.paused})
                spec = spec.model_copy(update={"scaling": scaling})
        return spec

    def observe(self, view: View) -> Observation:
        pods = tuple(
            PodView(
                name=f"pod-{p.id}",
                created_at=p.requested_at,
                ready=view.now >= p.ready_at,
                deleting=False,
                deletion_cost=self.costs.get(f"pod-{p.id}"),
            )
            for p in view.pods
        )
        return Observation(
            ref=SIM_REF,
            now=view.now,
            spec=self.spec_at(view.now),
            spec_error=None,
            previous=self.status,
            deployment=DeploymentView(view.replicas, view.ready, self.template_hash),
            pods=pods,
            signals=pool_signals(view),
        )

    def decide(self, view: View) -> Target:
        the_plan = plan(self.observe(view))
        decision = the_plan.decision
        assert decision is not None  # the simulated spec is valid
        self.status = the_plan.status
        self.costs.update({pod: str(cost) for pod, cost in the_plan.deletion_costs.items()})
        self.decisions.append(decision)
        return Target(decision.desired_replicas, decision.range_min, decision.range_max)
