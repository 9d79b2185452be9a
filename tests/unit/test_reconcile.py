"""The order of one reconcile and who wins: the user's hand, pause, or the policy."""

from __future__ import annotations

from typing import Any

from celeriac.actuators.celery_control import RangeResult
from celeriac.controller.reconcile import PoolReconciler, PoolRef
from celeriac.policy.model import Decision, Mode, PolicyInput
from celeriac.signals.model import PoolSignals, QueueBacklog, WorkerLoad

NOW = 1_700_000_000.0
REF = PoolRef(namespace="ns", name="pool", uid="uid-1", generation=3)


class InMemoryKube:
    """The Kubernetes edge as a dict: enough to observe what the reconcile writes."""

    def __init__(self, replicas: int | None = None, ready: int = 0) -> None:
        self.deployment: dict[str, Any] | None = (
            None
            if replicas is None
            else {"spec": {"replicas": replicas}, "status": {"readyReplicas": ready}}
        )
        self.applied: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.pods: list[dict[str, Any]] = []
        self.annotations: dict[str, dict[str, str | None]] = {}

    def read_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.deployment

    def apply_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(body)
        ready = (self.deployment or {}).get("status", {}).get("readyReplicas", 0)
        self.deployment = {"spec": body["spec"], "status": {"readyReplicas": ready}}
        return self.deployment

    def patch_pool_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return self.pods

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        self.annotations.setdefault(name, {}).update(annotations)
        for pod in self.pods:
            if pod["metadata"]["name"] == name:
                pod["metadata"].setdefault("annotations", {}).update(annotations)


def ready_pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": "2023-11-14T22:00:00Z"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def load(pod: str, running: int, rng: tuple[int, int] = (1, 4)) -> WorkerLoad:
    return WorkerLoad(
        hostname=f"celery@{pod}",
        pod=pod,
        running=running,
        pool_size=max(running, 1),
        range_min=rng[0],
        range_max=rng[1],
        ts=NOW,
    )


class RecordingControl:
    def __init__(self, answer: set[str]) -> None:
        self.answer = answer
        self.calls: list[tuple[list[str], int, int]] = []

    def apply_range(
        self,
        broker_url: str,
        hostnames: Any,
        range_min: int,
        range_max: int,
        global_keyprefix: str = "",
    ) -> RangeResult:
        hosts = list(hostnames)
        self.calls.append((hosts, range_min, range_max))
        ok = {h: (range_min, range_max) for h in hosts if h in self.answer}
        return RangeResult(ok, [h for h in hosts if h not in self.answer], 1 if ok else 3)


def wants(replicas: int) -> Any:
    def decide(inp: PolicyInput) -> Decision:
        return Decision(
            desired_replicas=replicas,
            range_min=inp.concurrency.min,
            range_max=inp.concurrency.max,
            mode=Mode.NORMAL,
            reason=f"policy wants {replicas}",
            memory=inp.memory,
        )

    return decide


SPEC: dict[str, Any] = {
    "queues": ["celery"],
    "template": {"image": "w:1", "app": "proj"},
    "broker": {"urlSecretRef": {"name": "b"}},
    "scaling": {"minReplicas": 1, "maxReplicas": 5},
}
SIGNALS = PoolSignals(observed_at=NOW, queues=[QueueBacklog(queue="celery", waiting=7, reserved=3)])


def test_first_reconcile_creates_the_deployment_and_reports_it() -> None:
    kube = InMemoryKube()
    events: list[tuple[str, str, str]] = []
    PoolReconciler(kube, wants(2), lambda *e: events.append(e)).reconcile(
        REF, SPEC, {}, SIGNALS, NOW
    )
    assert kube.applied[0]["spec"]["replicas"] == 2
    assert events[0][:2] == ("Normal", "DeploymentCreated")
    status = kube.statuses[-1]
    assert status["desiredReplicas"] == 2
    assert status["backlog"] == 10
    assert status["observedGeneration"] == 3
    assert status["selector"] == "celeriac.dev/pool=pool"


def test_a_changed_decision_scales_and_emits_one_event() -> None:
    kube = InMemoryKube(replicas=2, ready=2)
    events: list[tuple[str, str, str]] = []
    out = PoolReconciler(kube, wants(4), lambda *e: events.append(e)).reconcile(
        REF, SPEC, {}, SIGNALS, NOW
    )
    assert out.scaled_from == 2
    assert kube.deployment is not None
    assert kube.deployment["spec"]["replicas"] == 4
    assert [e[1] for e in events] == ["Scaled"]
    assert "2 -> 4" in events[0][2]
    assert kube.statuses[-1]["lastScaleTime"] == "2023-11-14T22:13:20Z"


def test_kubectl_scale_is_a_jump_applied_once() -> None:
    kube = InMemoryKube(replicas=2)
    spec = {**SPEC, "replicas": 4}
    r = PoolReconciler(kube, wants(1))
    r.reconcile(REF, spec, {}, SIGNALS, NOW)
    assert kube.deployment is not None
    assert kube.deployment["spec"]["replicas"] == 4
    first = kube.statuses[-1]
    assert first["appliedSpecReplicas"] == 4
    # Next tick: the same spec.replicas is no new request, so the policy decides again.
    r.reconcile(REF, spec, first, SIGNALS, NOW + 5)
    assert kube.deployment["spec"]["replicas"] == 1


def test_kubectl_scale_below_min_replicas_is_clamped_with_a_reason() -> None:
    kube = InMemoryKube(replicas=4)
    spec = {**SPEC, "replicas": 1, "scaling": {"minReplicas": 3, "maxReplicas": 5}}
    PoolReconciler(kube, wants(4)).reconcile(REF, spec, {}, SIGNALS, NOW)
    assert kube.deployment is not None
    assert kube.deployment["spec"]["replicas"] == 3
    status = kube.statuses[-1]
    assert status["reason"] == "scaled by hand to 1, clamped to 3"
    limited = next(c for c in status["conditions"] if c["type"] == "ScalingLimited")
    assert (limited["status"], limited["reason"]) == ("True", "LimitedByMinReplicas")


def test_spec_rules_the_crd_enforces_are_enforced_by_the_models_too() -> None:
    kube = InMemoryKube(replicas=2)
    bad = {**SPEC, "replicas": 5, "scaling": {"maxReplicas": 3}}
    out = PoolReconciler(kube, wants(1)).reconcile(REF, bad, {}, SIGNALS, NOW)
    assert out.error is not None
    assert "replicas must be <= scaling.maxReplicas" in out.error


def test_paused_pool_keeps_its_replicas() -> None:
    kube = InMemoryKube(replicas=3)
    spec = {**SPEC, "scaling": {"paused": True, "maxReplicas": 5}}
    PoolReconciler(kube, wants(1)).reconcile(REF, spec, {}, SIGNALS, NOW)
    assert kube.deployment is not None
    assert kube.deployment["spec"]["replicas"] == 3
    active = next(c for c in kube.statuses[-1]["conditions"] if c["type"] == "ScalingActive")
    assert (active["status"], active["reason"]) == ("False", "Paused")


def test_invalid_spec_is_reported_not_raised() -> None:
    kube = InMemoryKube(replicas=2)
    events: list[tuple[str, str, str]] = []
    bad = {**SPEC, "worker": {"concurrency": {"min": -1}}}
    out = PoolReconciler(kube, wants(9), lambda *e: events.append(e)).reconcile(
        REF, bad, {}, SIGNALS, NOW
    )
    assert out.error is not None
    assert "spec.worker.concurrency.min" in out.error
    assert kube.applied == []
    degraded = next(c for c in kube.statuses[-1]["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert events[0][:2] == ("Warning", "InvalidSpec")


def test_unreadable_broker_marks_the_pool_degraded_with_the_cause() -> None:
    kube = InMemoryKube(replicas=2)
    down = PoolSignals(observed_at=NOW, backlog_error="Connection refused")
    PoolReconciler(kube, wants(2)).reconcile(REF, SPEC, {}, down, NOW)
    degraded = next(c for c in kube.statuses[-1]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True"
    assert degraded["reason"] == "BrokerUnavailable"
    assert "Connection refused" in degraded["message"]


def test_condition_transition_time_survives_an_unchanged_status() -> None:
    kube = InMemoryKube(replicas=2, ready=2)
    r = PoolReconciler(kube, wants(2))
    r.reconcile(REF, SPEC, {}, SIGNALS, NOW)
    first = kube.statuses[-1]
    r.reconcile(REF, SPEC, first, SIGNALS, NOW + 60)
    ready = [
        next(c for c in s["conditions"] if c["type"] == "Ready")["lastTransitionTime"]
        for s in kube.statuses
    ]
    assert ready[0] == ready[1]


def test_scale_in_ranks_idle_pods_first_and_holds_busy_ones() -> None:
    kube = InMemoryKube(replicas=3, ready=3)
    kube.pods = [ready_pod("busy-a"), ready_pod("busy-b"), ready_pod("idle")]
    signals = PoolSignals(
        observed_at=NOW,
        queues=[QueueBacklog(queue="celery", waiting=0, reserved=2)],
        workers=[load("busy-a", 1), load("busy-b", 1), load("idle", 0)],
    )
    reconciler = PoolReconciler(kube, wants(1))
    reconciler.reconcile(REF, SPEC, {}, signals, NOW)
    # First the pods are ranked, and the scale-in waits for the ReplicaSet to see the ranks.
    assert kube.deployment is not None
    assert kube.deployment["spec"]["replicas"] == 3
    assert kube.statuses[-1]["reason"].endswith("ranking pods before scale-in")
    costs = {
        n: int(a["controller.kubernetes.io/pod-deletion-cost"]) for n, a in kube.annotations.items()
    }
    assert min(costs, key=lambda n: costs[n]) == "idle"
    reconciler.reconcile(REF, SPEC, kube.statuses[-1], signals, NOW + 5)
    assert kube.deployment["spec"]["replicas"] == 2
    status = kube.statuses[-1]
    assert status["drainHoldSince"] == NOW + 5
    assert status["reason"].endswith("holding 2 replicas while 2 pods finish running tasks")


def test_ranges_go_only_to_workers_that_report_another_one() -> None:
    kube = InMemoryKube(replicas=2, ready=2)
    signals = PoolSignals(
        observed_at=NOW,
        queues=[QueueBacklog(queue="celery", waiting=0, reserved=0)],
        workers=[load("p1", 0, (1, 4)), load("p2", 0, (2, 2))],
    )
    control = RecordingControl(answer={"celery@p2"})
    events: list[tuple[str, str, str]] = []
    PoolReconciler(kube, wants(2), lambda *e: events.append(e), control).reconcile(
        REF, SPEC, {}, signals, NOW, broker_url="redis://x"
    )
    assert control.calls == [(["celery@p2"], 1, 4)]
    assert kube.annotations["p2"] == {"celeriac.dev/autoscale-range": "1-4"}
    status = kube.statuses[-1]
    assert (status["rangesApplied"], status["rangesReporting"]) == (2, 2)
    assert [e[:2] for e in events] == [("Normal", "RangeApplied")]
    assert events[0][2].startswith("--autoscale 1-4 applied to 1 workers in ")


def test_unconfirmed_range_is_a_warning_event() -> None:
    kube = InMemoryKube(replicas=1, ready=1)
    signals = PoolSignals(observed_at=NOW, queues=[], workers=[load("p1", 0, (3, 3))])
    events: list[tuple[str, str, str]] = []
    PoolReconciler(kube, wants(1), lambda *e: events.append(e), RecordingControl(set())).reconcile(
        REF, SPEC, {}, signals, NOW, broker_url="redis://x"
    )
    assert [e[1] for e in events] == ["RangeNotConfirmed"]
    assert kube.statuses[-1]["rangesApplied"] == 0


def test_prefetch_hoarding_is_warned_once() -> None:
    kube = InMemoryKube(replicas=1, ready=1)
    spec = {**SPEC, "worker": {"prefetchMultiplier": 4, "concurrency": {"max": 8}}}
    events: list[tuple[str, str, str]] = []
    r = PoolReconciler(kube, wants(1), lambda *e: events.append(e))
    r.reconcile(REF, spec, {}, SIGNALS, NOW)
    r.reconcile(REF, spec, kube.statuses[-1], SIGNALS, NOW + 5)
    assert [e[1] for e in events] == ["PrefetchHoarding"]
    assert "may reserve 32 tasks for 8 processes" in events[0][2]


def test_grace_period_follows_the_slowest_tasks_within_the_spec_bound() -> None:
    kube = InMemoryKube(replicas=1, ready=1)
    slow = load("p1", 1).model_copy(update={"p99_task_seconds": 100.0})
    signals = PoolSignals(
        observed_at=NOW,
        queues=[QueueBacklog(queue="celery", waiting=0, reserved=1)],
        workers=[slow],
    )
    PoolReconciler(kube, wants(1)).reconcile(
        REF, {**SPEC, "terminationGracePeriodSeconds": 600}, {}, signals, NOW
    )
    pod = kube.applied[-1]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 160
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["CELERIAC_SOFT_SHUTDOWN_TIMEOUT"] == "144"
    assert kube.statuses[-1]["gracePeriodSeconds"] == 160


def test_status_cpu_falls_back_to_metrics_server() -> None:
    from celeriac.signals.model import PodCPU

    kube = InMemoryKube(replicas=2, ready=2)
    signals = PoolSignals(
        observed_at=NOW,
        queues=[],
        pod_cpu=[
            PodCPU(pod="a", cpu_millicores=500, ts=NOW),
            PodCPU(pod="b", cpu_millicores=300, ts=NOW),
        ],
    )
    PoolReconciler(kube, wants(2)).reconcile(REF, SPEC, {}, signals, NOW)
    assert kube.statuses[-1]["cpuPercent"] == 40


def test_a_hand_edit_of_the_deployment_is_reverted_with_a_warning() -> None:
    kube = InMemoryKube(replicas=5, ready=5)
    events: list[tuple[str, str, str]] = []
    previous = {"desiredReplicas": 2}
    PoolReconciler(kube, wants(2), lambda *e: events.append(e)).reconcile(
        REF, SPEC, previous, SIGNALS, NOW
    )
    assert kube.deployment is not None
    assert kube.deployment["spec"]["replicas"] == 2
    assert events[0][:2] == ("Warning", "DeploymentEdited")


def test_a_paused_pool_leaves_a_hand_edit_alone() -> None:
    kube = InMemoryKube(replicas=5, ready=5)
    spec = {**SPEC, "scaling": {"paused": True, "maxReplicas": 5}}
    PoolReconciler(kube, wants(1)).reconcile(REF, spec, {"desiredReplicas": 2}, SIGNALS, NOW)
    assert kube.deployment is not None
    assert kube.deployment["spec"]["replicas"] == 5
