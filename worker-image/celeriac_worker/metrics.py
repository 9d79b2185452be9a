"""Prometheus metrics of a worker, served from its main process on CELERIAC_METRICS_PORT.

Task outcomes and waits come from `observe.OBSERVER` (main process), the pool from the
live autoscaler, so one ordinary registry is enough: no multiprocess directory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from celery import bootsteps
from celery.signals import task_received
from celery.worker import state
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from celeriac_worker.observe import OBSERVER, Observer
from celeriac_worker.settings import WorkerEnv

log = logging.getLogger(__name__)
WAIT_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
RUN_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200)


class WorkerMetrics:
    def __init__(self, observer: Observer, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.tasks = Counter(
            "celeriac_worker_tasks",
            "Tasks seen by this worker, by state (received, started, succeeded, failed, retried, lost, ...)",
            ["task", "queue", "state"],
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "celeriac_worker_queue_wait_seconds",
            "From publication (or ETA) to start in a pool process",
            ["queue"],
            buckets=WAIT_BUCKETS_S,
            registry=self.registry,
        )
        self.runtime = Histogram(
            "celeriac_worker_task_runtime_seconds",
            "Run time of finished tasks",
            ["task"],
            buckets=RUN_BUCKETS_S,
            registry=self.registry,
        )
        observer.on_outcome.append(lambda task, queue, s: self.tasks.labels(task, queue, s).inc())
        observer.on_wait.append(lambda queue, s: self.queue_wait.labels(queue).observe(s))
        observer.on_run.append(lambda task, s: self.runtime.labels(task).observe(s))


class PoolCollector(Collector):
    """Pool size, the autoscale range and the in-flight counts, read at scrape time."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        scaler = getattr(self.worker, "autoscaler", None)
        pool = getattr(self.worker, "pool", None)
        size = scaler.processes if scaler is not None else getattr(pool, "num_processes", 0)
        yield GaugeMetricFamily("celeriac_worker_pool_processes", "Live pool processes", size)
        if scaler is not None:
            yield GaugeMetricFamily(
                "celeriac_worker_pool_min", "Autoscale range minimum", scaler.min_concurrency
            )
            yield GaugeMetricFamily(
                "celeriac_worker_pool_max", "Autoscale range maximum", scaler.max_concurrency
            )
            yield from self._limits(scaler)
        yield GaugeMetricFamily(
            "celeriac_worker_tasks_running", "Tasks executing now", len(state.active_requests)
        )
        yield GaugeMetricFamily(
            "celeriac_worker_tasks_reserved",
            "Tasks received and not finished (running included)",
            len(state.reserved_requests),
        )

    def _limits(self, scaler: Any) -> Iterator[Metric]:
        limits = getattr(scaler, "limits", None)
        if limits is None:
            return  # Celery's stock autoscaler
        yield GaugeMetricFamily(
            "celeriac_worker_cpu_limit_cores",
            "CPU the pod may use (cgroup quota or cores)",
            limits.cpu_cores,
        )
        if limits.memory_bytes is not None:
            yield GaugeMetricFamily(
                "celeriac_worker_memory_limit_bytes", "The pod's memory limit", limits.memory_bytes
            )
        held = CounterMetricFamily(
            "celeriac_worker_pool_growth_held",
            "Autoscaler decisions that kept the pool below the tasks at hand, by the budget that bound",
            labels=["by"],
        )
        held.add_metric(["cpu"], scaler.cpu_limited)
        held.add_metric(["memory"], scaler.memory_limited)
        yield held


METRICS = WorkerMetrics(OBSERVER)


@task_received.connect
def _count_received(request: Any = None, **_: Any) -> None:
    if request is not None:
        queue = (request.delivery_info or {}).get("routing_key") or "unknown"
        METRICS.tasks.labels(request.name, queue, "received").inc()


class MetricsServer(bootsteps.StartStopStep):
    """Serves /metrics once the pool exists; a port of 0 (the default) turns it off."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.port = WorkerEnv().metrics_port
        self.server: Any = None

    def start(self, worker: Any) -> None:
        if not self.port:
            return
        METRICS.registry.register(PoolCollector(worker))
        self.server, _thread = start_http_server(self.port, registry=METRICS.registry)
        log.info("metrics on port %d", self.port)

    def stop(self, worker: Any) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
