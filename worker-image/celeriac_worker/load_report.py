"""Publishes this worker's load for the operator, every couple of seconds.

On Redis: one JSON document per worker in the Redis hash `{prefix}celeriac.workers.{pool}`
(field = Celery hostname), read by the operator in the same pipelined round trip as
the backlog. The hash expires if every worker of the pool goes away.

On RabbitMQ there is no such place: the same document goes out as a Celery event of type
`worker-celeriac-load` with the pool id, on the worker events exchange the operator
already consumes (celeriac.signals.heartbeats).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlparse, urlunparse

import kombu.exceptions
import redis
from celery.signals import worker_shutting_down
from celery.worker import state
from redis.sentinel import Sentinel

from celeriac_worker.observe import OBSERVER
from celeriac_worker.settings import WorkerEnv

if TYPE_CHECKING:
    from celeriac_worker.autoscaler import CeleriacAutoscaler

log = logging.getLogger(__name__)
KEY_TTL_S = 60
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
LOAD_EVENT = "worker-celeriac-load"  # celeriac.signals.heartbeats.LOAD_REPORT
# Set by the operator from spec.broker.transport.masterName for sentinel:// brokers.
SENTINEL_MASTER_ENV = "CELERIAC_SENTINEL_MASTER"
# kombu (kombu/utils/url.py) accepts Celery's documented CERT_REQUIRED spelling; redis-py
# only the lower-case one, so without this every report failed (issue #14, 8).
_CERT_REQS = {"CERT_REQUIRED": "required", "CERT_OPTIONAL": "optional", "CERT_NONE": "none"}
TIMEOUT_S = 5.0


def _redis_py_url(url: str) -> str:
    parsed = urlparse(url)
    query = [
        (k, _CERT_REQS.get(v, v) if k == "ssl_cert_reqs" else v)
        for k, v in parse_qsl(parsed.query, keep_blank_values=True)
    ]
    return urlunparse(parsed._replace(query=urlencode(query, safe="/", quote_via=quote)))


def broker_client(url: str, master_name: str | None) -> redis.Redis[bytes]:
    """A client for a broker URL as kombu spells it: redis://, rediss:// or sentinel://."""
    if not url.startswith("sentinel://"):
        return redis.Redis.from_url(
            _redis_py_url(url), socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
        )
    if not master_name:
        raise ValueError(f"a sentinel:// broker needs {SENTINEL_MASTER_ENV}")
    # kombu: `sentinel://[:password@]host:port[/db];sentinel://...`; the password is the master's.
    hosts: list[tuple[str, int]] = []
    auth: dict[str, Any] = {"db": 0}
    for part in url.split(";"):
        parsed = urlparse(part.strip())
        hosts.append((parsed.hostname or "127.0.0.1", parsed.port or 26379))
        if parsed.username:
            auth["username"] = unquote(parsed.username)
        if parsed.password:
            auth["password"] = unquote(parsed.password)
        if parsed.path.strip("/").isdecimal():
            auth["db"] = int(parsed.path.strip("/"))
    timeouts = {"socket_timeout": TIMEOUT_S, "socket_connect_timeout": TIMEOUT_S}
    sentinel = Sentinel(
        hosts,
        sentinel_kwargs=dict(timeouts),
        socket_timeout=TIMEOUT_S,
        socket_connect_timeout=TIMEOUT_S,
    )
    return sentinel.master_for(master_name, **auth, **timeouts)


class LoadReporter(threading.Thread):
    def __init__(self, scaler: CeleriacAutoscaler, env: WorkerEnv) -> None:
        super().__init__(name="celeriac-load-report", daemon=True)
        self.scaler = scaler
        self.env = env
        self.key = f"{env.global_keyprefix}celeriac.workers.{env.pool_id}"
        self.durations = OBSERVER.durations
        self.halt = threading.Event()
        self.over_amqp = env.broker_url.split("://", 1)[0] in AMQP_SCHEMES
        self.client = (
            None
            if self.over_amqp
            else broker_client(env.broker_url, os.environ.get(SENTINEL_MASTER_ENV))
        )
        self.dispatcher: Any = None
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
        if self.client is None:
            self._send_event()
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.key, self.hostname, json.dumps(self.document()))
        pipe.expire(self.key, KEY_TTL_S)
        pipe.execute()

    def _send_event(self) -> None:
        if self.dispatcher is None:
            app = self.scaler.worker.app
            self.dispatcher = app.events.Dispatcher(
                app.connection_for_write(), hostname=self.hostname, enabled=True
            )
        document = self.document()
        del document["hostname"]  # the dispatcher adds its own
        self.dispatcher.send(LOAD_EVENT, pool=self.env.pool_id, **document)

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.publish()
            except (redis.RedisError, OSError, kombu.exceptions.KombuError) as exc:
                log.warning("load report failed: %s", type(exc).__name__)
                self.dispatcher = None  # a new connection next time
            except AttributeError:
                # The reporter starts with the autoscaler, before the pool has processes.
                log.debug("pool not started yet; no load report")
            self.halt.wait(self.env.report_interval_s)

    def _withdraw(self, **_: Any) -> None:
        self.halt.set()
        # If this fails the report goes stale and the operator drops it. On AMQP the
        # worker's own worker-offline event withdraws it.
        if self.client is None:
            return
        with contextlib.suppress(redis.RedisError, OSError):
            self.client.hdel(self.key, self.hostname)
