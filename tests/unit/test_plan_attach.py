"""Attached pools (spec.scaleTargetRef), recommend-only pools, and stock workers asked
before a scale-in: each plan rule, tick by tick, against a world of data."""

from __future__ import annotations

from typing import Any

import pytest

from celeriac.actuators.celery_inspect import ActiveAnswer, running_by_pod
from celeriac.controller.busy_probe import as_loads
from celeriac.controller.observation import ProbedLoad
from celeriac.controller.runtime import parse_spec
from celeriac.signals.model import PoolSignals, QueueBacklog
from tests.support.plan_world import NOW, SPEC, World, ready_pod, wants

ATTACHED: dict[str, Any] = {
    **{k: v for k, v in SPEC.items() if k != "template"},
    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mine"},
}
RECOMMEND: dict[str, Any] = {**ATTACHED, "scaling": {**SPEC["scaling"], "mode": "Recommend"}}
BUSY = PoolSignals(observed_at=NOW, queues=[QueueBacklog(queue="celery", waiting=7, reserved=3)])
IDLE = PoolSignals(
    observed_at=NOW, queues=[QueueBacklog(queue="celery", waiting=0, reserved=0)], workers=[]
)


def _condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def _users_deployment(replicas: int, ready: int = 0) -> World:
    # The user's chart created it (no replicas field of theirs): nobody owns spec.replicas.
    return World(
        deployment={
            "metadata": {"managedFields": [], "generation": 1},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{}]}}},
            "status": {"readyReplicas": ready},
        }
    )


# --- the spec ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {**SPEC, "scaleTargetRef": ATTACHED["scaleTargetRef"]},
        {k: v for k, v in SPEC.items() if k != "template"},
    ],
    ids=["both", "neither"],
)
def test_a_pool_names_exactly_one_of_template_and_scale_target_ref(spec: dict[str, Any]) -> None:
    parsed, error = parse_spec(spec)
    assert parsed is None
    assert error is not None
    assert "set exactly one of template" in error


def test_scale_target_ref_defaults_to_an_apps_v1_deployment_and_refuses_core_kinds() -> None:
    parsed, _ = parse_spec({**ATTACHED, "scaleTargetRef": {"name": "mine"}})
    assert parsed is not None
    assert parsed.scale_target_ref is not None
    assert (parsed.scale_target_ref.group, parsed.scale_target_ref.version) == ("apps", "v1")
    core = {"apiVersion": "v1", "kind": "ReplicationController", "name": "rc"}
    assert parse_spec({**ATTACHED, "scaleTargetRef": core})[0] is None


# --- attached: only the replica count, through /scale ------------------------------------


def test_attached_pool_writes_only_the_replica_count_through_scale() -> None:
    world = _users_deployment(2)
    template_before = world.deployment["spec"]["template"] if world.deployment else None
    plan, result = world.tick(wants(4), spec=ATTACHED, signals=BUSY)
    assert world.target_scales == [4]
    assert (world.applied, world.scaled) == ([], [])
    assert plan.deployment is None
    assert world.deployment is not None
    assert world.deployment["spec"]["template"] is template_before
    assert [e.reason for e in plan.events] == ["Scaled"]
    assert world.statuses[-1]["selector"] == "app=mine"
    assert result.writes == 2  # /scale and the status


def test_attached_pool_without_its_target_holds_and_says_so() -> None:
    world = World()
    plan, result = world.tick(wants(4), spec=ATTACHED, signals=BUSY)
    assert (world.applied, world.target_scales, world.scaled) == ([], [], [])
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "ScaleTargetUnavailable")]
    degraded = _condition(world.statuses[-1], "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ScaleTargetUnavailable")
    assert "Deployment mine not found" in degraded["message"]
    assert result.writes == 1
    plan, _ = world.tick(wants(4), spec=ATTACHED, signals=BUSY, now=NOW + 5)
    assert plan.events == ()
    assert plan.write_status is False


def test_one_foreign_edit_is_restored_and_repeated_edits_raise_a_contest_once() -> None:
    world = _users_deployment(2)
    world.tick(wants(3), spec=ATTACHED, signals=BUSY)
    world.edit_by_hand(5)  # e.g. `helm upgrade` of a chart that still sets replicas
    plan, _ = world.tick(wants(3), spec=ATTACHED, signals=BUSY, now=NOW + 5)
    assert [e.reason for e in plan.events] == ["ScaleTargetEdited"]
    assert world.target_scales == [3, 3]
    assert _condition(world.statuses[-1], "ScaleTargetContested")["status"] == "False"

    world.edit_by_hand(6)
    plan, _ = world.tick(wants(3), spec=ATTACHED, signals=BUSY, now=NOW + 10)
    reasons = [(e.type, e.reason) for e in plan.events]
    assert reasons == [("Warning", "ScaleTargetEdited"), ("Warning", "ScaleTargetContested")]
    assert "'kubectl-edit'" in plan.events[1].message
    contested = _condition(world.statuses[-1], "ScaleTargetContested")
    assert (contested["status"], contested["reason"]) == ("True", "ReplicasFought")
    assert world.statuses[-1]["scaleTargetEdits"] == [NOW + 5, NOW + 10]

    world.edit_by_hand(7)
    plan, _ = world.tick(wants(3), spec=ATTACHED, signals=BUSY, now=NOW + 15)
    assert [e.reason for e in plan.events] == ["ScaleTargetEdited"]  # no second contest event


def test_a_contest_ends_when_the_edits_leave_the_window() -> None:
    world = _users_deployment(2)
    world.tick(wants(3), spec=ATTACHED, signals=BUSY)
    for i in (1, 2):
        world.edit_by_hand(5)
        world.tick(wants(3), spec=ATTACHED, signals=BUSY, now=NOW + 5 * i)
    assert _condition(world.statuses[-1], "ScaleTargetContested")["status"] == "True"
    world.tick(wants(3), spec=ATTACHED, signals=BUSY, now=NOW + 700)
    assert _condition(world.statuses[-1], "ScaleTargetContested")["status"] == "False"
    assert world.statuses[-1]["scaleTargetEdits"] == []


# --- recommend only ----------------------------------------------------------------------


def test_recommend_mode_writes_only_status_and_reports_the_recommendation() -> None:
    world = _users_deployment(2, ready=2)
    world.pods = [ready_pod("mine-a"), ready_pod("mine-b")]
    plan, result = world.tick(wants(5), spec=RECOMMEND, signals=BUSY)
    assert (world.applied, world.scaled, world.target_scales, world.annotations) == (
        [],
        [],
        [],
        {},
    )
    assert result.writes == 1  # the status alone
    status = world.statuses[-1]
    assert (status["desiredReplicas"], status["replicas"]) == (5, 2)
    assert status["reason"].startswith("recommend only: policy wants 5")
    assert [(e.reason, e.message.split(" (")[0]) for e in plan.events] == [
        ("Recommended", "would scale 2 -> 5")
    ]
    assert plan.scaled_from is None
    assert status["lastScaleTime"] is None
    plan, _ = world.tick(wants(5), spec=RECOMMEND, signals=BUSY, now=NOW + 5)
    assert plan.events == ()  # the same recommendation is not news


def test_recommend_mode_ranks_no_pod_and_asks_no_worker_on_the_way_down() -> None:
    world = _users_deployment(3, ready=3)
    world.pods = [ready_pod(f"mine-{c}") for c in "abc"]
    plan, _ = world.tick(wants(1), spec=RECOMMEND, signals=IDLE)
    assert (plan.deletion_costs, plan.probe, plan.scale_to, plan.ranges) == ({}, (), None, None)
    assert world.statuses[-1]["desiredReplicas"] == 1


def test_recommend_mode_beside_another_autoscaler_reverts_nothing() -> None:
    world = _users_deployment(2)
    world.tick(wants(3), spec=RECOMMEND, signals=BUSY)
    world.edit_by_hand(6)  # KEDA's HPA scales the workload
    plan, _ = world.tick(wants(3), spec=RECOMMEND, signals=BUSY, now=NOW + 5)
    assert world.replicas == 6
    assert world.target_scales == []
    assert "ScaleTargetEdited" not in [e.reason for e in plan.events]
    assert world.statuses[-1]["replicas"] == 6


def test_recommend_mode_with_a_template_creates_no_deployment() -> None:
    world = World()
    spec = {**SPEC, "scaling": {**SPEC["scaling"], "mode": "Recommend"}}
    plan, _ = world.tick(wants(2), spec=spec, signals=BUSY)
    assert world.applied == []
    assert plan.deployment is None
    assert "DeploymentCreated" not in [e.reason for e in plan.events]


# --- stock workers: asked before a scale-in ----------------------------------------------


def test_stock_workers_are_asked_before_a_scale_in_and_the_busy_one_ranks_last() -> None:
    world = _users_deployment(3, ready=3)
    world.pods = [ready_pod(f"mine-{c}") for c in "abc"]
    plan, _ = world.tick(wants(2), spec=ATTACHED, signals=IDLE)
    assert plan.probe == ("mine-a", "mine-b", "mine-c")
    assert world.target_scales == []
    assert world.annotations == {}
    assert "inspect active" in world.statuses[-1]["reason"]

    # The answers (controller.busy_probe) arrive before the next tick: mine-a runs a task.
    answer = ActiveAnswer(NOW + 4, {"mine-a": 1, "mine-b": 0, "mine-c": 0}, ())
    world.probed = as_loads(answer)
    plan, _ = world.tick(wants(2), spec=ATTACHED, signals=IDLE, now=NOW + 5)
    costs = {
        pod: a["controller.kubernetes.io/pod-deletion-cost"] for pod, a in world.annotations.items()
    }
    assert int(costs["mine-a"]) > int(costs["mine-b"]) == int(costs["mine-c"])
    assert world.target_scales == []  # ranked this tick: the ReplicaSet sees it next tick

    plan, _ = world.tick(wants(2), spec=ATTACHED, signals=IDLE, now=NOW + 10)
    assert world.target_scales == [2]
    assert plan.probe == ("mine-a", "mine-b", "mine-c")  # asked on every scale-in tick


def test_a_pod_that_turned_busy_after_the_ranking_holds_the_scale_in_and_is_ranked_again() -> None:
    world = _users_deployment(3, ready=3)
    world.pods = [ready_pod(f"mine-{c}") for c in "abc"]
    world.probed = {p: ProbedLoad(NOW, 0) for p in ("mine-a", "mine-b", "mine-c")}
    world.tick(wants(3), spec=ATTACHED, signals=IDLE)  # all idle: ranked alike
    world.probed["mine-a"] = ProbedLoad(NOW + 4, 1)  # the newest answer: a task started
    world.tick(wants(2), spec=ATTACHED, signals=IDLE, now=NOW + 5)
    # Ranked alike, the ReplicaSet might pick mine-a: wait until it sees mine-a's new cost.
    assert world.target_scales == []
    assert "ranking pods" in world.statuses[-1]["reason"]
    cost = world.annotations["mine-a"]["controller.kubernetes.io/pod-deletion-cost"]
    assert int(cost) > int(
        world.annotations["mine-b"]["controller.kubernetes.io/pod-deletion-cost"]
    )
    world.tick(wants(2), spec=ATTACHED, signals=IDLE, now=NOW + 6)
    assert world.target_scales == [2]


def test_removing_idle_pods_does_not_wait_for_a_ranking() -> None:
    world = _users_deployment(3, ready=3)
    world.pods = [ready_pod(f"mine-{c}") for c in "abc"]
    world.probed = {p: ProbedLoad(NOW, 0) for p in ("mine-a", "mine-b", "mine-c")}
    world.tick(wants(2), spec=ATTACHED, signals=IDLE)
    assert world.target_scales == [2]


def test_answers_left_from_an_earlier_scale_in_are_not_trusted() -> None:
    world = _users_deployment(3, ready=3)
    world.pods = [ready_pod(f"mine-{c}") for c in "abc"]
    spec = {**ATTACHED, "scaling": {**ATTACHED["scaling"], "pollingIntervalSeconds": 1}}
    world.probed = {p: ProbedLoad(NOW - 4, 0) for p in ("mine-a", "mine-b", "mine-c")}
    plan, _ = world.tick(wants(2), spec=spec, signals=IDLE)
    assert plan.probe == ("mine-a", "mine-b", "mine-c")
    assert world.target_scales == []
    assert world.annotations == {}


def test_a_stale_answer_is_asked_again_and_a_silent_pod_stays_unknown() -> None:
    world = _users_deployment(2, ready=2)
    world.pods = [ready_pod("mine-a"), ready_pod("mine-b")]
    world.probed = as_loads(ActiveAnswer(NOW - 60, {"mine-a": 0}, ("mine-b",)))
    assert world.probed == {"mine-a": ProbedLoad(NOW - 60, 0)}
    plan, _ = world.tick(wants(1), spec=ATTACHED, signals=IDLE)
    assert plan.probe == ("mine-a", "mine-b")
    assert world.target_scales == []


def test_a_scale_in_below_the_busy_stock_workers_holds_them() -> None:
    world = _users_deployment(3, ready=3)
    world.pods = [ready_pod(f"mine-{c}") for c in "abc"]
    world.probed = {
        "mine-a": ProbedLoad(NOW, 2),
        "mine-b": ProbedLoad(NOW, 1),
        "mine-c": ProbedLoad(NOW, 0),
    }
    world.tick(wants(1), spec=ATTACHED, signals=IDLE)  # ranks
    plan, _ = world.tick(wants(1), spec=ATTACHED, signals=IDLE, now=NOW + 5)
    assert world.target_scales == [2]  # the idle one goes; two busy pods finish first
    assert plan.decision is not None
    assert plan.decision.limited_by == "drain"


def test_rendered_pools_rank_by_reports_and_never_ask() -> None:
    world = World.with_deployment(3, ready=3)
    world.tick(wants(3), signals=IDLE)
    world.pods = [ready_pod(f"pool-workers-{c}") for c in "abc"]
    plan, _ = world.tick(wants(2), signals=IDLE, now=NOW + 5)
    assert plan.probe == ()


def test_only_the_asked_workers_answers_count_and_only_as_task_lists() -> None:
    replies = {
        "celery@mine-a": [{"id": "t1"}, {"id": "t2"}],
        "celery@mine-b": [],
        "celery@other-pool": [{"id": "x"}],  # not asked: anyone on the broker may reply
        "celery@mine-c": {"forged": True},
    }
    assert running_by_pod(replies, ["mine-a", "mine-b", "mine-c"]) == {"mine-a": 2, "mine-b": 0}
    assert running_by_pod(None, ["mine-a"]) == {}
