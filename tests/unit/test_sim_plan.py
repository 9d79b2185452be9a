"""The simulator runs the operator's own plan(): what a user does to a pool mid-run
(`kubectl scale cwp`, `paused: true`) and drain-aware scale-in are simulated as they run."""

from __future__ import annotations

from celeriac.sim.celeriac_policy import CeleriacPolicy, SpecChange
from celeriac.sim.engine import SimConfig, simulate
from celeriac.sim.trace import Task

CONFIG = SimConfig(concurrency=2, pod_startup_s=10.0)


def _busy(seconds: int, per_s: int = 4, service_s: float = 2.0) -> list[Task]:
    return [
        Task(enqueue_s=t + i / per_s, service_s=service_s)
        for t in range(seconds)
        for i in range(per_s)
    ]


def test_a_paused_pool_keeps_its_replicas_under_load() -> None:
    policy = CeleriacPolicy(2, 10.0, changes=(SpecChange(at_s=0.0, paused=True),))
    result = simulate(_busy(120), policy, CONFIG)
    assert result.max_replicas == 1
    assert {d.mode.value for d in policy.decisions} == {"Paused"}


def test_the_same_load_unpaused_scales_up() -> None:
    policy = CeleriacPolicy(2, 10.0)
    result = simulate(_busy(120), policy, CONFIG)
    assert result.max_replicas > 1


def test_kubectl_scale_is_a_jump_the_policy_then_continues_from() -> None:
    idle = [Task(enqueue_s=float(t), service_s=0.1) for t in range(0, 600, 30)]
    policy = CeleriacPolicy(2, 10.0, changes=(SpecChange(at_s=100.0, replicas=6),))
    result = simulate(idle, policy, CONFIG)
    jumped = [p for p in result.timeline if 100.0 <= p.t <= 110.0]
    assert max(p.replicas for p in jumped) == 6
    assert any(d.reason == "scaled by hand to 6" for d in policy.decisions)
    # Nothing to do for 6 pods: the policy brings them back down afterwards.
    assert result.timeline[-1].replicas < 6
