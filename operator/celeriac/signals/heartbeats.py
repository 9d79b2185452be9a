"""Worker load from Celery's worker events over the broker, on RabbitMQ and Redis alike.

Every Celery worker sends `worker-heartbeat` events every 2 s unless started with
`--without-heartbeat` (`-E` is not needed: the worker group is always on), and
`worker-offline` on a warm shutdown. They go to the `celeryev` exchange with routing key
`worker.heartbeat` (a topic exchange on AMQP; Celery turns it into a Redis PUBLISH fanout
on Redis, celery/events/event.py `get_exchange`). One standing consumer per broker reads
them all, whatever the number of pools, through Celery's own EventReceiver (an
auto-deleting queue with a message TTL, so a dead operator leaves nothing behind).

Two kinds of worker are read:

- stock workers: the heartbeat gives `active` (tasks running), `processed`, `loadavg`.
  It names no pool, so `heartbeats(hostnames)` answers for the hostnames the caller
  knows are its pods (`celery@<pod>`, as the operator renders `--hostname`).
- workers with the celeriac library: its load report (pool size, range, CPU, task
  durations) as an event of type `worker-celeriac-load` whose fields are the
  `model.WorkerLoad` document plus `pool` (the pool id "namespace/name"); `loads(pool)`
  returns them. On Redis the library also writes the report into Redis, read in the
  backlog's round trip; RabbitMQ has no such place, so this is its path.

`HeartbeatListener.worker_source` plugs into `RabbitMQReader(workers=...)`. Until a
broker's consumer has listened for one heartbeat interval and more, or while it is
disconnected, the pool's workers are unknown (None with an error), never an empty list.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery
from celery.events.receiver import EventReceiver
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from celeriac.signals.connection import redact, server_label
from celeriac.signals.model import WorkerLoad
from celeriac.signals.reader import PoolQuery

log = logging.getLogger(__name__)

HEARTBEAT = "worker-heartbeat"
ONLINE = "worker-online"
OFFLINE = "worker-offline"
LOAD_REPORT = "worker-celeriac-load"
ROUTING_KEY = "worker.#"  # every worker-* event; task events are not asked for
# Celery's default heartbeat interval is 2 s: a worker silent this long is gone or wedged.
STALE_S = 30.0
# A consumer that listened this long has heard every live worker at least twice.
WARM_UP_S = 5.0


class Heartbeat(BaseModel):
    """A stock Celery worker as its heartbeat shows it (validated: the broker is untrusted)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    hostname: str = Field(max_length=512)
    active: int = Field(default=0, ge=0, description="Tasks executing now.")
    processed: int = Field(default=0, ge=0, description="Tasks finished since start.")
    loadavg: tuple[float, float, float] | None = None
    freq: float | None = Field(default=None, ge=0)
    timestamp: float = Field(description="Worker's clock, adjusted by its utcoffset.")


@dataclass
class _Seen:
    received_at: float
    heartbeat: Heartbeat | None = None
    load: WorkerLoad | None = None
    pool_id: str | None = None


class WorkerBook:
    """The latest event of each worker on one broker; pure, time is an argument."""

    def __init__(self, stale_s: float = STALE_S) -> None:
        self.stale_s = stale_s
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def apply(self, event: dict[str, Any], received_at: float) -> None:
        kind = event.get("type")
        hostname = event.get("hostname")
        if not isinstance(hostname, str):
            return
        with self._lock:
            if kind == OFFLINE:
                self._seen.pop(hostname, None)  # warm shutdown: gone now, not in 30 s
                return
            seen = self._seen.setdefault(hostname, _Seen(received_at))
            seen.received_at = received_at
            try:
                if kind in (HEARTBEAT, ONLINE):
                    seen.heartbeat = Heartbeat.model_validate(event)
                elif kind == LOAD_REPORT:
                    seen.load, seen.pool_id = _load_report(event)
            except (ValidationError, ValueError):
                log.debug("ignoring a malformed %s event", kind)

    def loads(self, pool_id: str, now: float) -> list[WorkerLoad]:
        """Library load reports of one pool's workers, newest per worker."""
        with self._lock:
            self._expire(now)
            found = [s.load for s in self._seen.values() if s.load and s.pool_id == pool_id]
        return sorted(found, key=lambda w: w.hostname)

    def heartbeats(self, hostnames: set[str], now: float) -> list[Heartbeat]:
        """Stock heartbeats of the given workers (those that sent one recently)."""
        with self._lock:
            self._expire(now)
            found = [
                s.heartbeat
                for name, s in self._seen.items()
                if name in hostnames and s.heartbeat is not None
            ]
        return sorted(found, key=lambda h: h.hostname)

    def _expire(self, now: float) -> None:
        for name in [n for n, s in self._seen.items() if now - s.received_at > self.stale_s]:
            del self._seen[name]


def _load_report(event: dict[str, Any]) -> tuple[WorkerLoad, str]:
    pool_id = event.get("pool")
    if not isinstance(pool_id, str):
        raise ValueError("a load report without its pool")
    fields = {k: event[k] for k in WorkerLoad.model_fields if k in event}
    load = WorkerLoad.model_validate(fields)
    if load.pod is not None and load.hostname.split("@", 1)[-1] != load.pod:
        # The operator renders --hostname=celery@<pod>: a report naming another pod would
        # shield that pod from scale-in (its `running` sets the pod's deletion cost).
        raise ValueError("a load report for a pod other than the sender's")
    return load, pool_id


Broker = tuple[str, str]  # (broker URL, global_keyprefix)


class _Receiver(EventReceiver):  # type: ignore[misc]  # celery is untyped
    """Celery's receiver, telling when its queue is bound and consuming (even if no worker
    ever speaks: an empty pool must read as no workers, not as unknown)."""

    def __init__(self, *args: Any, on_ready: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_ready = on_ready

    def on_consume_ready(
        self, connection: Any, channel: Any, consumers: Any, **kwargs: Any
    ) -> None:
        super().on_consume_ready(connection, channel, consumers, **kwargs)
        self.on_ready()


class _BrokerConsumer(threading.Thread):
    """One standing event consumer for one broker; reconnects until stopped."""

    def __init__(self, broker: Broker, clock: Callable[[], float]) -> None:
        super().__init__(name=f"celeriac-events-{server_label(broker[0])}", daemon=True)
        self.broker = broker
        self.clock = clock
        self.book = WorkerBook()
        self.listening_since: float | None = None
        self.error: str | None = None
        self._receiver: _Receiver | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        receiver = self._receiver
        if receiver is not None:
            receiver.should_stop = True

    def run(self) -> None:
        app = Celery("celeriac-events", broker=self.broker[0], set_as_current=False)
        if self.broker[1]:
            app.conf.broker_transport_options = {"global_keyprefix": self.broker[1]}
        while not self._halt.is_set():
            try:
                self._consume(app)
            except Exception as exc:  # noqa: BLE001 (any transport's error: reconnect)
                self.listening_since = None
                # The broker URL is a Secret's value; kombu's errors may quote parts of it.
                detail = redact(str(exc), self.broker[0])
                self.error = f"{type(exc).__name__}: {detail}"
                log.info("worker events from %s lost: %s", server_label(self.broker[0]), detail)
                self._halt.wait(1.0)
        app.close()

    def _consume(self, app: Celery) -> None:
        with app.connection_for_read(connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
            self._receiver = _Receiver(
                conn,
                handlers={"*": self._on_event},
                routing_key=ROUTING_KEY,
                app=app,
                on_ready=self._on_ready,
            )
            if self._halt.is_set():
                return
            # wakeup=True broadcasts `heartbeat`: every worker answers at once, not in 2 s.
            for _ in self._receiver.consume(limit=None, timeout=None, wakeup=True):
                pass
            self.listening_since = None

    def _on_ready(self) -> None:
        self.listening_since, self.error = self.clock(), None

    def _on_event(self, event: dict[str, Any]) -> None:
        self.book.apply(event, self.clock())


class HeartbeatListener:
    """Standing event consumers, one per broker the pools use; read by pools at any time."""

    def __init__(self, clock: Callable[[], float] = time.time, warm_up_s: float = WARM_UP_S):
        self.clock = clock
        self.warm_up_s = warm_up_s
        self._consumers: dict[Broker, _BrokerConsumer] = {}
        self._lock = threading.Lock()

    def _consumer(self, broker: Broker) -> _BrokerConsumer:
        with self._lock:
            consumer = self._consumers.get(broker)
            if consumer is None:
                consumer = _BrokerConsumer(broker, self.clock)
                self._consumers[broker] = consumer
                consumer.start()
            return consumer

    def _ready(self, consumer: _BrokerConsumer, now: float) -> str | None:
        since = consumer.listening_since
        if since is None:
            why = consumer.error or "connecting"
            return f"worker events from {server_label(consumer.broker[0])} not received: {why}"
        if now - since < self.warm_up_s:
            return f"listening for worker events for {now - since:.0f} s, not yet complete"
        return None

    def worker_source(
        self, query: PoolQuery, now: float
    ) -> tuple[list[WorkerLoad] | None, str | None]:
        """Library load reports of one pool, or None and why while they cannot be known."""
        consumer = self._consumer((query.broker_url, query.global_keyprefix))
        error = self._ready(consumer, now)
        if error is not None:
            return None, error
        return consumer.book.loads(query.pool_id, now), None

    def heartbeats(
        self, broker_url: str, hostnames: set[str], global_keyprefix: str = ""
    ) -> tuple[list[Heartbeat] | None, str | None]:
        """Stock heartbeats of the given workers, or None and why while unknown."""
        consumer = self._consumer((broker_url, global_keyprefix))
        now = self.clock()
        error = self._ready(consumer, now)
        if error is not None:
            return None, error
        return consumer.book.heartbeats(hostnames, now), None

    def close(self) -> None:
        with self._lock:
            consumers = list(self._consumers.values())
            self._consumers.clear()
        for consumer in consumers:
            consumer.stop()
        for consumer in consumers:
            consumer.join(timeout=5)
