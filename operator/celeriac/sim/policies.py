"""Every policy the simulator knows, by the name `celeriac simulate --policy` takes."""

from __future__ import annotations

from celeriac.sim.baselines import (
    HPACpuPolicy,
    KedaPolicy,
    KpaPolicy,
    StaticPolicy,
    erlang_replicas,
    keda_tuned,
    peak_replicas,
)
from celeriac.sim.celeriac_policy import CeleriacPolicy
from celeriac.sim.engine import Policy, SimConfig
from celeriac.sim.oracle import OraclePolicy
from celeriac.sim.trace import Task

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
    name: str,
    tasks: list[Task],
    concurrency: int,
    slo_wait_s: float,
    startup_s: float,
    config: SimConfig | None = None,
) -> Policy:
    """`config` lets the oracle check its plan in the simulator the run uses."""
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
        replicas = erlang_replicas(tasks, concurrency, slo_wait_s)
        return StaticPolicy(replicas, concurrency, "static-erlang")
    if name == "oracle":
        return OraclePolicy(tasks, concurrency, startup_s, slo_wait_s, config=config)
    raise ValueError(f"unknown policy {name!r}; one of {', '.join(POLICY_NAMES)}")
