"""One tick, rule by rule: what plan() decides to write from what was observed, and what
act() then writes. The world is data (tests/support/plan_world.py); no cluster, no fakes
of the plan itself."""

from __future__ import annotations

from celeriac.policy.model import PolicyMemory, Recommendation
from celeriac.signals.model import PodCPU, PoolSignals, QueueBacklog
from tests.support.plan_world import NOW, SPEC, World, load, ready_pod, wants

SIGNALS = PoolSignals(observed_at=NOW, queues=[QueueBacklog(queue="celery", waiting=7, reserved=3)])


def _condition(status: dict, type_: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == type_)


# --- creating and scaling ----------------------------------------------------------------


def test_first_tick_creates_the_deployment_and_reports_it() -> None:
    world = World()
    plan, _ = world.tick(wants(2), signals=SIGNALS)
    assert world.applied[0]["spec"]["replicas"] == 2
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "DeploymentCreated")]
    status = world.statuses[-1]
    assert status["desiredReplicas"] == 2
    assert status["backlog"] == 10
    assert status["observedGeneration"] == 3
    assert status["selector"] == "celeriac.dev/pool=pool"


def test_a_changed_decision_scales_only_the_replica_count_with_one_event() -> None:
    world = World()
    world.tick(wants(2), signals=SIGNALS)
    plan, _ = world.tick(wants(4), signals=SIGNALS, now=NOW + 5)
    assert plan.scaled_from == 2
    assert plan.deployment is None  # the rendered body did not change
    assert world.scaled == [4]
    assert [e.reason for e in plan.events] == ["Scaled"]
    assert "2 -> 4" in plan.events[0].message
    assert world.statuses[-1]["lastScaleTime"] == "2023-11-14T22:13:25Z"


def test_an_unchanged_pool_costs_no_write() -> None:
    world = World()
    world.tick(wants(2), signals=SIGNALS)
    plan, result = world.tick(wants(2), signals=SIGNALS, now=NOW + 5)
    assert (plan.deployment, plan.scale_to, plan.deletion_costs, plan.write_status) == (
        None,
        None,
        {},
        False,
    )
    assert result.writes == 0
    assert len(world.applied) == 1
    assert len(world.statuses) == 1


def test_moving_numbers_reach_the_status_at_most_every_30_s() -> None:
    world = World()
    world.tick(wants(2), signals=SIGNALS)
    busier = PoolSignals(
        observed_at=NOW, queues=[QueueBacklog(queue="celery", waiting=9, reserved=3)]
    )
    plan, _ = world.tick(wants(2), signals=busier, now=NOW + 10)
    assert plan.write_status is False
    plan, _ = world.tick(wants(2), signals=busier, now=NOW + 30)
    assert plan.write_status is True
    assert world.statuses[-1]["backlog"] == 12


def test_a_template_change_applies_the_whole_body_again() -> None:
    world = World()
    world.tick(wants(2), signals=SIGNALS)
    changed = {**SPEC, "template": {"image": "w:2", "app": "proj"}}
    plan, _ = world.tick(wants(2), spec=changed, signals=SIGNALS, now=NOW + 5)
    assert plan.deployment is not None
    assert world.applied[-1]["spec"]["template"]["spec"]["containers"][0]["image"] == "w:2"


# --- the user's hand: kubectl scale, pause, hand edits -----------------------------------


def test_kubectl_scale_is_a_jump_applied_once() -> None:
    world = World.with_deployment(2)
    spec = {**SPEC, "replicas": 4}
    world.tick(wants(1), spec=spec, signals=SIGNALS)
    assert world.replicas == 4
    assert world.statuses[-1]["appliedSpecReplicas"] == 4
    # Next tick: the same spec.replicas is no new request, so the policy decides again.
    world.tick(wants(1), spec=spec, signals=SIGNALS, now=NOW + 5)
    assert world.replicas == 1


def test_kubectl_scale_becomes_the_policy_history() -> None:
    world = World.with_deployment(2)
    plan, _ = world.tick(wants(1), spec={**SPEC, "replicas": 4}, signals=SIGNALS)
    assert plan.decision is not None
    assert plan.decision.memory.recommendations == [Recommendation(t=NOW, replicas=4)]


def test_kubectl_scale_below_min_replicas_is_clamped_with_a_reason() -> None:
    world = World.with_deployment(4)
    spec = {**SPEC, "replicas": 1, "scaling": {"minReplicas": 3, "maxReplicas": 5}}
    world.tick(wants(4), spec=spec, signals=SIGNALS)
    assert world.replicas == 3
    status = world.statuses[-1]
    assert status["reason"] == "scaled by hand to 1, clamped to 3"
    limited = _condition(status, "ScalingLimited")
    assert (limited["status"], limited["reason"]) == ("True", "LimitedByMinReplicas")


def test_paused_pool_keeps_its_replicas() -> None:
    world = World.with_deployment(3)
    spec = {**SPEC, "scaling": {"paused": True, "maxReplicas": 5}}
    world.tick(wants(1), spec=spec, signals=SIGNALS)
    assert world.replicas == 3
    active = _condition(world.statuses[-1], "ScalingActive")
    assert (active["status"], active["reason"]) == ("False", "Paused")


def test_a_hand_edit_of_the_deployment_is_reverted_with_a_warning() -> None:
    world = World()
    world.tick(wants(2), signals=SIGNALS)
    world.edit_by_hand(5)
    plan, _ = world.tick(wants(2), signals=SIGNALS, now=NOW + 5)
    assert world.replicas == 2
    assert (plan.events[0].type, plan.events[0].reason) == ("Warning", "DeploymentEdited")
    assert "'kubectl-edit'" in plan.events[0].message


def test_a_lagging_cache_of_our_own_write_is_no_hand_edit() -> None:
    # The status says 4 was decided, the cache still shows 2, but celeriac owns the field.
    world = World.with_deployment(2)
    world.status = {"desiredReplicas": 4}
    plan, _ = world.tick(wants(4), signals=SIGNALS)
    assert [e.reason for e in plan.events] == ["Scaled"]


def test_a_paused_pool_leaves_a_hand_edit_alone() -> None:
    world = World.with_deployment(5, manager="kubectl-edit")
    world.status = {"desiredReplicas": 2}
    spec = {**SPEC, "scaling": {"paused": True, "maxReplicas": 5}}
    world.tick(wants(1), spec=spec, signals=SIGNALS)
    assert world.replicas == 5


# --- bad input and broken signals --------------------------------------------------------


def test_spec_rules_the_crd_enforces_are_enforced_by_the_models_too() -> None:
    world = World.with_deployment(2)
    plan, _ = world.tick(wants(1), spec={**SPEC, "replicas": 5, "scaling": {"maxReplicas": 3}})
    assert plan.decision is None
    assert "replicas must be <= scaling.maxReplicas" in plan.events[0].message


def test_invalid_spec_is_reported_once_not_raised() -> None:
    world = World.with_deployment(2)
    bad = {**SPEC, "worker": {"concurrency": {"min": -1}}}
    plan, _ = world.tick(wants(9), spec=bad, signals=SIGNALS)
    assert world.applied == []
    degraded = _condition(world.statuses[-1], "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert "spec.worker.concurrency.min" in degraded["message"]
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "InvalidSpec")]
    again, _ = world.tick(wants(9), spec=bad, signals=SIGNALS, now=NOW + 5)
    assert again.events == ()
    assert len(world.statuses) == 1


def test_unreadable_broker_marks_the_pool_degraded_with_the_cause() -> None:
    world = World.with_deployment(2)
    down = PoolSignals(observed_at=NOW, backlog_error="Connection refused")
    world.tick(wants(2), signals=down)
    degraded = _condition(world.statuses[-1], "Degraded")
    assert degraded["status"] == "True"
    assert degraded["reason"] == "BrokerUnavailable"
    assert "Connection refused" in degraded["message"]


def test_stale_signals_are_degraded_with_their_age() -> None:
    world = World.with_deployment(2)
    old = PoolSignals(observed_at=NOW - 100, queues=[])
    world.tick(wants(2), signals=old)
    degraded = _condition(world.statuses[-1], "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "SignalsStale")
    assert degraded["message"].startswith("backlog reading is 100 s old (staleAfterSeconds 30)")


def test_condition_transition_time_survives_an_unchanged_status() -> None:
    world = World.with_deployment(2, ready=2)
    world.tick(wants(2), signals=SIGNALS)
    world.tick(wants(2), signals=SIGNALS, now=NOW + 60)
    assert len(world.statuses) == 2  # the refresh after 30 s
    ready = [_condition(s, "Ready")["lastTransitionTime"] for s in world.statuses]
    assert ready[0] == ready[1]


def test_a_deployment_the_apiserver_refuses_is_reported_in_the_status() -> None:
    from kubernetes.client.exceptions import ApiException

    class Refusing(World):
        def apply_deployment(self, body: dict) -> dict:
            error = ApiException(status=422, reason="Unprocessable Entity")
            error.body = '{"message": "spec.template.spec.hostPID: Forbidden"}'
            raise error

    world = Refusing()
    _, result = world.tick(wants(2), signals=SIGNALS)
    assert result.deployment_error is not None
    status = world.statuses[-1]
    assert status["reason"].startswith("DeploymentRefused: the apiserver refused the worker")
    assert "hostPID: Forbidden" in _condition(status, "Degraded")["message"]


# --- drain-aware scale-in, ranges, warnings ----------------------------------------------


def test_scale_in_ranks_idle_pods_first_and_holds_busy_ones() -> None:
    world = World.with_deployment(3, ready=3)
    world.pods = [ready_pod("busy-a"), ready_pod("busy-b"), ready_pod("idle")]
    signals = PoolSignals(
        observed_at=NOW,
        queues=[QueueBacklog(queue="celery", waiting=0, reserved=2)],
        workers=[load("busy-a", 1), load("busy-b", 1), load("idle", 0)],
    )
    world.tick(wants(1), signals=signals)
    # First the pods are ranked, and the scale-in waits for the ReplicaSet to see the ranks.
    assert world.replicas == 3
    assert world.statuses[-1]["reason"].endswith("ranking pods before scale-in")
    costs = {
        n: int(a["controller.kubernetes.io/pod-deletion-cost"] or 0)
        for n, a in world.annotations.items()
    }
    assert min(costs, key=lambda n: costs[n]) == "idle"
    plan, _ = world.tick(wants(1), signals=signals, now=NOW + 5)
    assert plan.deletion_costs == {}  # ranked already: nothing rewritten
    assert world.replicas == 2
    status = world.statuses[-1]
    assert status["drainHoldSince"] == NOW + 5
    assert status["reason"].endswith("holding 2 replicas while 2 pods finish running tasks")


def test_reports_from_pods_outside_the_pool_are_ignored() -> None:
    world = World.with_deployment(1, ready=1)
    world.pods = [ready_pod("mine")]
    signals = PoolSignals(
        observed_at=NOW, queues=[], workers=[load("mine", 0), load("forged", 50, (9, 9))]
    )
    plan, _ = world.tick(wants(1), signals=signals)
    assert plan.ranges is None
    assert world.statuses[-1]["rangesReporting"] == 1


def test_ranges_go_only_to_workers_that_report_another_one() -> None:
    world = World.with_deployment(2, ready=2)
    world.pods = [ready_pod("p1"), ready_pod("p2")]
    signals = PoolSignals(
        observed_at=NOW,
        queues=[QueueBacklog(queue="celery", waiting=0, reserved=0)],
        workers=[load("p1", 0, (1, 4)), load("p2", 0, (2, 2))],
    )
    plan, _ = world.tick(wants(2), signals=signals)
    assert plan.ranges is not None
    assert (plan.ranges.range_min, plan.ranges.range_max) == (1, 4)
    assert plan.ranges.workers == {"celery@p2": "p2"}
    status = world.statuses[-1]
    assert (status["rangesApplied"], status["rangesReporting"]) == (1, 2)


def test_a_paused_pool_sends_no_ranges() -> None:
    world = World.with_deployment(1, ready=1)
    world.pods = [ready_pod("p1")]
    signals = PoolSignals(observed_at=NOW, queues=[], workers=[load("p1", 0, (3, 3))])
    spec = {**SPEC, "scaling": {"paused": True, "maxReplicas": 5}}
    plan, _ = world.tick(wants(1), spec=spec, signals=signals)
    assert plan.ranges is None


def test_prefetch_hoarding_is_warned_once() -> None:
    world = World.with_deployment(1, ready=1)
    spec = {**SPEC, "worker": {"prefetchMultiplier": 4, "concurrency": {"max": 8}}}
    first, _ = world.tick(wants(1), spec=spec, signals=SIGNALS)
    second, _ = world.tick(wants(1), spec=spec, signals=SIGNALS, now=NOW + 5)
    assert [e.reason for e in first.events] == ["PoolWarning"]
    assert "may reserve 32 tasks for 8 processes" in first.events[0].message
    assert second.events == ()


def test_the_grace_period_is_the_users_and_slow_tasks_are_warned_about() -> None:
    world = World.with_deployment(1, ready=1)
    world.pods = [ready_pod("p1")]
    slow = load("p1", 1).model_copy(update={"p99_task_seconds": 1200.0})
    signals = PoolSignals(
        observed_at=NOW,
        queues=[QueueBacklog(queue="celery", waiting=0, reserved=1)],
        workers=[slow],
    )
    world.tick(wants(1), signals=signals)
    pod = world.applied[-1]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 300  # the spec's default, never derived
    assert (
        "tasks run up to 1200 s (p99) but terminationGracePeriodSeconds is 300"
        in (world.statuses[-1]["warnings"][0])
    )
    # A later change of durations changes nothing in the pod template: no rollout.
    faster = signals.model_copy(
        update={"workers": [slow.model_copy(update={"p99_task_seconds": 2.0})]}
    )
    again, _ = world.tick(wants(1), signals=faster, now=NOW + 5)
    assert again.deployment is None


def test_status_cpu_falls_back_to_metrics_server() -> None:
    world = World.with_deployment(2, ready=2)
    signals = PoolSignals(
        observed_at=NOW,
        queues=[],
        pod_cpu=[
            PodCPU(pod="a", cpu_millicores=500, ts=NOW),
            PodCPU(pod="b", cpu_millicores=300, ts=NOW),
        ],
    )
    world.tick(wants(2), signals=signals)
    assert world.statuses[-1]["cpuPercent"] == 40


def test_policy_memory_is_part_of_the_status_and_read_back_after_a_restart() -> None:
    world = World.with_deployment(2, ready=2)
    world.status = {
        "policyMemory": {"service_s": 1.5, "recommendations": [{"t": NOW, "replicas": 3}]}
    }
    seen: list[PolicyMemory] = []

    def decide(inp):  # type: ignore[no-untyped-def]
        seen.append(inp.memory)
        return wants(2)(inp)

    world.tick(decide, signals=SIGNALS)
    assert seen[0].service_s == 1.5
    assert world.statuses[-1]["policyMemory"]["recommendations"] == [{"t": NOW, "replicas": 3}]


def test_a_hand_edited_template_is_restored_once_per_generation() -> None:
    world = World()
    world.tick(wants(2), signals=SIGNALS)
    world.set_image_by_hand("evil/image:1")
    plan, _ = world.tick(wants(2), signals=SIGNALS, now=NOW + 5)
    assert plan.deployment is not None
    assert world.applied[-1]["spec"]["template"]["spec"]["containers"][0]["image"] == "w:1"
    assert [e.reason for e in plan.events] == ["DeploymentEdited"]
    assert "'kubectl-set'" in plan.events[0].message
    # The other manager still owns what it added; the same generation is not restored again.
    world.deployment["metadata"]["managedFields"].append(  # type: ignore[index]
        {"manager": "kubectl-set", "fieldsV1": {"f:spec": {"f:template": {}}}}
    )
    world.deployment["metadata"]["generation"] = plan.reverted_generation  # type: ignore[index]
    again, _ = world.tick(wants(2), signals=SIGNALS, now=NOW + 10)
    assert again.deployment is None


def test_a_backlog_that_moved_a_lot_is_written_within_5_s() -> None:
    world = World()
    world.tick(wants(2), signals=SIGNALS)
    burst = PoolSignals(
        observed_at=NOW, queues=[QueueBacklog(queue="celery", waiting=90, reserved=10)]
    )
    early, _ = world.tick(wants(2), signals=burst, now=NOW + 2)
    assert early.write_status is False
    later, _ = world.tick(wants(2), signals=burst, now=NOW + 5)
    assert later.write_status is True
    assert world.statuses[-1]["backlog"] == 100


def test_busy_pods_that_will_go_stop_consuming_and_resume_when_load_returns() -> None:
    world = World.with_deployment(3, ready=3)
    world.pods = [ready_pod("busy-a"), ready_pod("busy-b"), ready_pod("busy-c")]
    signals = PoolSignals(
        observed_at=NOW,
        queues=[QueueBacklog(queue="celery", waiting=4, reserved=3)],
        workers=[load("busy-a", 1), load("busy-b", 2), load("busy-c", 3)],
    )
    world.tick(wants(1), signals=signals)  # ranks first
    plan, _ = world.tick(wants(1), signals=signals, now=NOW + 5)
    assert world.replicas == 3  # held: all three are busy and tasks still wait
    assert plan.consumers is not None
    # The two cheapest (fewest running tasks) are the ones the ReplicaSet will remove.
    assert plan.consumers.stop == {"celery@busy-a": "busy-a", "celery@busy-b": "busy-b"}
    assert plan.consumers.queues == ("celery",)
    # Their workers answered; the pods are marked. Load comes back: they consume again.
    for pod in ("busy-a", "busy-b"):
        world.annotate_pod("ns", pod, {"celeriac.dev/draining": "true"})
    again, _ = world.tick(wants(3), signals=signals, now=NOW + 10)
    assert again.consumers is not None
    assert again.consumers.stop == {}
    assert again.consumers.resume == {"celery@busy-a": "busy-a", "celery@busy-b": "busy-b"}


def test_stopping_and_resuming_consumers_marks_only_the_pods_that_answered() -> None:
    from celeriac.controller.drain import ConsumerChange
    from celeriac.controller.ranges import BrokerAddress, send_consumers
    from tests.support.plan_world import REF

    class Control:
        def __init__(self) -> None:
            self.calls: list[tuple[list[str], tuple[str, ...], bool]] = []

        def set_consuming(self, url, hosts, queues, consume, prefix="", master_name=None):  # type: ignore[no-untyped-def]
            self.calls.append((list(hosts), tuple(queues), consume))
            return [h for h in hosts if h != "celery@silent"]

    world = World()
    control = Control()
    change = ConsumerChange(
        ("celery",), stop={"celery@a": "a", "celery@silent": "s"}, resume={"celery@b": "b"}
    )
    events = send_consumers(REF, change, BrokerAddress("redis://x"), control, world)  # type: ignore[arg-type]
    assert control.calls == [
        (["celery@a", "celery@silent"], ("celery",), False),
        (["celery@b"], ("celery",), True),
    ]
    assert world.annotations == {
        "a": {"celeriac.dev/draining": "true"},
        "b": {"celeriac.dev/draining": None},
    }
    assert [e.message for e in events] == [
        "1/2 workers stop consuming to drain before scale-in",
        "1/1 workers resume consuming",
    ]


def test_an_idle_settled_pool_writes_no_status_at_all() -> None:
    world = World.with_deployment(1, ready=1)
    idle = PoolSignals(
        observed_at=NOW, queues=[QueueBacklog(queue="celery", waiting=0, reserved=0)]
    )
    world.tick(wants(1), signals=idle)

    def remembering(inp):  # type: ignore[no-untyped-def]
        # The memory's own timestamps move every tick, as the real policy's do.
        decision = wants(1)(inp)
        memory = inp.memory.model_copy(update={"last_t": inp.now})
        return decision.model_copy(update={"memory": memory})

    for minute in range(1, 6):
        later = idle.model_copy(update={"observed_at": NOW + 60 * minute})
        world.tick(remembering, signals=later, now=NOW + 60 * minute)
    assert len(world.statuses) == 1


def test_a_pool_name_too_long_for_its_labels_is_reported_not_rendered() -> None:
    from dataclasses import replace

    from celeriac.controller.plan import plan
    from tests.support.plan_world import REF

    world = World()
    obs = replace(world.observe(SPEC, SIGNALS, NOW), ref=replace(REF, name="p" * 56))
    got = plan(obs)
    assert got.deployment is None
    assert got.events[0].reason == "InvalidSpec"
    assert "at most 55 characters" in got.events[0].message
