"""Prometheus metrics: what the operator decided, and why, per pool."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

from celeriac.policy.model import Decision
from celeriac.signals.model import PoolSignals

POOL = ["namespace", "pool"]

DESIRED_REPLICAS = Gauge("celeriac_desired_replicas", "Replicas the policy wants", POOL)
CURRENT_REPLICAS = Gauge(
    "celeriac_current_replicas", "Deployment replicas before this decision", POOL
)
POOL_MODE = Gauge(
    "celeriac_pool_mode",
    "1 for the pool's scaling.mode (Auto, or Recommend: it writes nothing but status)",
    [*POOL, "mode"],
)
RANGE_MAX = Gauge("celeriac_pod_range_max", "Per-pod --autoscale max the operator applies", POOL)
RANGE_MIN = Gauge("celeriac_pod_range_min", "Per-pod --autoscale min the operator applies", POOL)
BACKLOG = Gauge(
    "celeriac_queue_backlog",
    "Tasks not finished, by queue and state (waiting in the list, reserved in unacked)",
    [*POOL, "queue", "state"],
)
OLDEST_AGE = Gauge(
    "celeriac_queue_oldest_age_seconds", "Age of the oldest due task", [*POOL, "queue"]
)
SIGNAL_UP = Gauge("celeriac_signal_up", "1 when the backlog could be read", POOL)
DECISIONS = Counter("celeriac_decisions_total", "Policy decisions by mode", [*POOL, "mode"])
SCALING_ACTIONS = Counter(
    "celeriac_scaling_actions_total", "Replica changes applied", [*POOL, "direction"]
)
RECONCILE_ERRORS = Counter(
    "celeriac_reconcile_errors_total", "Failed reconciles by reason", [*POOL, "reason"]
)
RECONCILE_SECONDS = Histogram(
    "celeriac_reconcile_seconds",
    "Time for one tick of one pool: observe (signals included), plan, act and report",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TICK_LATENESS = Histogram(
    "celeriac_tick_lateness_seconds",
    "How much later than its interval planned a pool's tick started",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
API_WRITES = Counter(
    "celeriac_api_writes_total",
    "Writes to the Kubernetes API for a pool (Deployment, pod annotations, status)",
    POOL,
)
FALLING_BEHIND = Counter(
    "celeriac_ticks_late_total", "Ticks that started a whole interval late", POOL
)
SIGNALS_SECONDS = Histogram(
    "celeriac_signals_seconds",
    "Time to read the signals of every due pool in one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


# Per pool: the queues with backlog series, and those with an oldest-age series.
_shown: dict[tuple[str, str], tuple[frozenset[str], frozenset[str]]] = {}


def observe_decision(
    namespace: str,
    pool: str,
    decision: Decision,
    current: int | None,
    signals: PoolSignals | None,
    mode: str = "Auto",
) -> None:
    DESIRED_REPLICAS.labels(namespace, pool).set(decision.desired_replicas)
    for labels in _series_of(POOL_MODE, namespace, pool):
        if labels[2] != mode:
            POOL_MODE.remove(*labels)
    POOL_MODE.labels(namespace, pool, mode).set(1)
    if current is not None:
        CURRENT_REPLICAS.labels(namespace, pool).set(current)
    RANGE_MIN.labels(namespace, pool).set(decision.range_min)
    RANGE_MAX.labels(namespace, pool).set(decision.range_max)
    DECISIONS.labels(namespace, pool, decision.mode.value).inc()
    if signals is None:
        return
    SIGNAL_UP.labels(namespace, pool).set(0 if signals.queues is None else 1)
    if signals.queues is None:
        return
    aged = set()
    for q in signals.queues:
        BACKLOG.labels(namespace, pool, q.queue, "waiting").set(q.waiting)
        BACKLOG.labels(namespace, pool, q.queue, "reserved").set(q.reserved)
        if q.oldest_age_s is not None:
            OLDEST_AGE.labels(namespace, pool, q.queue).set(q.oldest_age_s)
            aged.add(q.queue)
    # A queue dropped from the spec, or one with nothing due, leaves no stale series. What
    # each pool shows is remembered here: scanning every series of the metric for the pool's
    # cost O(pools) per tick, O(pools^2) per interval (issue #16).
    queues = frozenset(q.queue for q in signals.queues)
    shown_queues, shown_aged = _shown.get((namespace, pool), (frozenset(), frozenset()))
    for queue in shown_queues - queues:
        for state in ("waiting", "reserved"):
            with contextlib.suppress(KeyError):
                BACKLOG.remove(namespace, pool, queue, state)
    for queue in shown_aged - aged:
        with contextlib.suppress(KeyError):
            OLDEST_AGE.remove(namespace, pool, queue)
    _shown[(namespace, pool)] = (queues, frozenset(aged))


def forget_pool(namespace: str, pool: str) -> None:
    """Every series of a deleted pool, per-queue ones included: none outlives its pool."""
    _shown.pop((namespace, pool), None)
    for gauge in (DESIRED_REPLICAS, CURRENT_REPLICAS, RANGE_MAX, RANGE_MIN, SIGNAL_UP):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, pool)
    for labelled in (
        POOL_MODE,
        BACKLOG,
        OLDEST_AGE,
        DECISIONS,
        SCALING_ACTIONS,
        RECONCILE_ERRORS,
        API_WRITES,
        FALLING_BEHIND,
    ):
        for labels in _series_of(labelled, namespace, pool):
            with contextlib.suppress(KeyError):
                labelled.remove(*labels)


def _series_of(metric: Gauge | Counter, namespace: str, pool: str) -> list[tuple[str, ...]]:
    # prometheus_client keeps the label tuples of a metric in `_metrics`; there is no public
    # way to list them.
    keys: list[tuple[str, ...]] = list(getattr(metric, "_metrics", {}).keys())
    return [k for k in keys if k[:2] == (namespace, pool)]
