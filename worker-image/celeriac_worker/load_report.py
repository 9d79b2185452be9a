"""Publishes this worker's load for the operator, every couple of seconds.

One JSON document per worker in the Redis hash `{prefix}celeriac.workers.{pool}`
(field = Celery hostname), read by the operator in the same pipelined round trip as
the backlog. The hash expires if every worker of the pool goes away.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import redis
from celery.signals import worker_shutting_down
from celery.worker import state

from celeriac_worker.observe import OBSERVER
from celeriac_worker.settings import WorkerEnv

if TYPE_CHECKING:
    from celeriac_worker.autoscaler import CeleriacAutoscaler

log = logging.getLogger(__name__)
KEY_TTL_S = 60


class LoadReporter(threading.Thread):
    def __init__(self, scaler: CeleriacAutoscaler, env: WorkerEnv) -> None:
        super().__init__(name="celeriac-load-report", daemon=True)
        self.scaler = scaler
        self.env = env
        self.key = f"{env.global_keyprefix}celeriac.workers.{env.pool_id}"
        self.durations = OBSERVER.durations
        self.halt = threading.Event()
        self.client = redis.Redis.from_url(
            env.broker_url, socket_timeout=5, socket_connect_timeout=5
        )
        worker_shutting_down.connect(self._withdraw, weak=False)

    @property
    def hostname(self) -> str:
        return str(self.scaler.worker.hostname)

    def document(self) -> dict[str, Any]:
        cores = self.scaler.cpu.cores()
        return {
            "hostname": self.hostname,
            "pod": self.env.pod_name,
            "running": len(state.active_requests),
            "reserved": len(state.reserved_requests),
            "pool_size": self.scaler.processes,
            "range_min": self.scaler.min_concurrency,
            "range_max": self.scaler.max_concurrency,
            "cpu_percent": round(cores * 100.0, 1),
            "cpu_limit_cores": self.scaler.limits.cpu_cores,
            "processed_total": sum(state.total_count.values()),
            "mean_task_seconds": self.durations.mean_s,
            "p99_task_seconds": self.durations.p99_s,
            "ts": time.time(),
        }

    def publish(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.key, self.hostname, json.dumps(self.document()))
        pipe.expire(self.key, KEY_TTL_S)
        pipe.execute()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.publish()
            except (redis.RedisError, OSError) as exc:
                log.warning("load report failed: %s", exc)
            except AttributeError:
                # The reporter starts with the autoscaler, before the pool has processes.
                log.debug("pool not started yet; no load report")
            self.halt.wait(self.env.report_interval_s)

    def _withdraw(self, **_: Any) -> None:
        self.halt.set()
        # If this fails the report goes stale and the operator drops it.
        with contextlib.suppress(redis.RedisError, OSError):
            self.client.hdel(self.key, self.hostname)
