"""Per-queue series follow the pool's queues tick by tick, and no pool touches another's."""

from __future__ import annotations

from prometheus_client import REGISTRY

from celeriac.controller import metrics
from celeriac.policy.model import Decision, Mode, PolicyMemory
from celeriac.signals.model import PoolSignals, QueueBacklog

DECISION = Decision(
    desired_replicas=1,
    range_min=1,
    range_max=2,
    mode=Mode.NORMAL,
    reason="t",
    memory=PolicyMemory(),
)


def _signals(**ages: float | None) -> PoolSignals:
    queues = [QueueBacklog(queue=q, waiting=3, reserved=1, oldest_age_s=a) for q, a in ages.items()]
    return PoolSignals(observed_at=0.0, queues=queues)


def _waiting(pool: str, queue: str) -> float | None:
    labels = {"namespace": "m", "pool": pool, "queue": queue, "state": "waiting"}
    return REGISTRY.get_sample_value("celeriac_queue_backlog", labels)


def _age(pool: str, queue: str) -> float | None:
    labels = {"namespace": "m", "pool": pool, "queue": queue}
    return REGISTRY.get_sample_value("celeriac_queue_oldest_age_seconds", labels)


def test_a_dropped_queue_and_an_emptied_age_leave_no_series_and_spare_other_pools() -> None:
    metrics.observe_decision("m", "one", DECISION, 1, _signals(a=5.0, b=7.0))
    metrics.observe_decision("m", "two", DECISION, 1, _signals(a=2.0, b=4.0))
    metrics.observe_decision("m", "one", DECISION, 1, _signals(a=None))
    assert (_waiting("one", "a"), _waiting("one", "b")) == (3.0, None)
    assert (_age("one", "a"), _age("one", "b")) == (None, None)
    assert (_waiting("two", "b"), _age("two", "b")) == (3.0, 4.0)
    metrics.forget_pool("m", "two")
    assert (_waiting("two", "a"), _age("two", "a")) == (None, None)
    metrics.observe_decision("m", "two", DECISION, 1, _signals(c=1.0))
    assert (_waiting("two", "c"), _age("two", "c")) == (3.0, 1.0)
