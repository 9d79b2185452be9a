"""Reads a Celery-correct backlog for many pools on RabbitMQ: one request per broker per tick.

The same interface as the Redis `reader.BacklogReader`: `read(list[PoolQuery])` returns
PoolSignals by pool id, a pool whose broker could not be read has `queues=None` and an
error (stale, never zero), and `close()` releases the connections.

One `GET /api/queues/<vhost>?columns=...` per broker (and vhost) and tick carries every
queue of every pool on it: ready (all priorities of an `x-max-priority` queue together),
unacknowledged (prefetched, running under acks_late), consumers, publish and deliver
rates, and the head message's timestamp for the age of the oldest waiting task (not on
priority queues, whose head is not their oldest message).

Rejected: AMQP `queue.declare(passive=True)` gives only the ready count, one round trip per
queue (1,500 for 500 pools x 3 queues) and not the unacknowledged count at all, which is
the count KEDA's RabbitMQ users miss. Consuming and requeueing messages to read their
headers is never done: it reorders the queue and redelivers (the `redelivered` flag
changes what a worker does with acks_late tasks).

Worker load does not come from here: RabbitMQ has no place for the worker's load report,
so it arrives as broker events (`heartbeats`), passed in as `workers`.
"""

from __future__ import annotations

import json
import ssl
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import ValidationError

from celeriac.signals import rabbitmq_api
from celeriac.signals.connection import redact
from celeriac.signals.model import PoolSignals, QueueBacklog, WorkerLoad
from celeriac.signals.rabbitmq_api import Endpoint, QueueRow
from celeriac.signals.rabbitmq_client import ManagementClient, ManagementError
from celeriac.signals.reader import PoolQuery

MAX_PARALLEL_ENDPOINTS = 8

# (pool query, now) -> (workers, error); None workers means unknown, with the error saying why.
WorkerSource = Callable[[PoolQuery, float], tuple[list[WorkerLoad] | None, str | None]]


def _no_worker_source(_query: PoolQuery, _now: float) -> tuple[list[WorkerLoad] | None, str]:
    return None, "no worker load source for RabbitMQ pools"


class RabbitMQReader:
    def __init__(
        self,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        workers: WorkerSource = _no_worker_source,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.clock = clock
        self.workers = workers
        self.ssl_context = ssl_context
        self.client = ManagementClient(timeout_s, ssl_context)
        self._pool: ThreadPoolExecutor | None = None

    def read(self, queries: list[PoolQuery]) -> dict[str, PoolSignals]:
        now = self.clock()
        out: dict[str, PoolSignals] = {}
        by_endpoint: dict[tuple[Endpoint, str], list[PoolQuery]] = defaultdict(list)
        for q in queries:
            try:
                where = rabbitmq_api.endpoint(q.broker_url, q.management_url)
                by_endpoint[(where, rabbitmq_api.vhost_of(q.broker_url))].append(q)
            except ValueError as exc:
                # urlparse quotes the port text it could not read: part of a Secret's value.
                detail = redact(redact(str(exc), q.broker_url), q.management_url or "")
                out[q.pool_id] = self._failed(q, f"management endpoint unusable: {detail}", now)
        groups = list(by_endpoint.items())
        if len(groups) <= 1:
            for (where, vhost), group in groups:
                out.update(self._read_endpoint(where, vhost, group, now))
            return out
        # Endpoints in parallel: a dead one costs the tick its timeout once, not once each.
        if self._pool is None:
            self._pool = ThreadPoolExecutor(MAX_PARALLEL_ENDPOINTS, "celeriac-rabbitmq")
        for result in self._pool.map(
            lambda g: self._read_endpoint(g[0][0], g[0][1], g[1], now), groups
        ):
            out.update(result)
        return out

    def _failed(self, query: PoolQuery, error: str, now: float) -> PoolSignals:
        workers, workers_error = self.workers(query, now)
        return PoolSignals(
            observed_at=now, backlog_error=error, workers=workers, workers_error=workers_error
        )

    def _read_endpoint(
        self, where: Endpoint, vhost: str, queries: list[PoolQuery], now: float
    ) -> dict[str, PoolSignals]:
        try:
            raw = self.client.get(where, rabbitmq_api.queues_path(vhost))
            rows, invalid = parse_queue_list(raw)
        except ManagementError as exc:
            return {q.pool_id: self._failed(q, str(exc), now) for q in queries}
        out = {}
        for q in queries:
            workers, workers_error = self.workers(q, now)
            queues, error = pool_backlog(q, rows, invalid, now)
            out[q.pool_id] = PoolSignals(
                observed_at=now,
                queues=queues,
                backlog_error=error,
                workers=workers,
                workers_error=workers_error,
            )
        return out

    @property
    def requests(self) -> int:
        return self.client.requests

    def close(self) -> None:
        self.client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def parse_queue_list(raw: bytes) -> tuple[dict[str, QueueRow], set[str]]:
    """One vhost's rows by queue name, and the names of rows that did not validate."""
    try:
        doc: Any = json.loads(raw)
    except ValueError as exc:
        raise ManagementError(f"RabbitMQ management API sent invalid JSON: {exc}") from exc
    if not isinstance(doc, list):
        raise ManagementError("RabbitMQ management API sent a queue list that is not a list")
    rows: dict[str, QueueRow] = {}
    invalid: set[str] = set()
    for item in doc:
        try:
            row = QueueRow.model_validate(item)
        except ValidationError:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                invalid.add(item["name"])
            continue
        if row.name in rows or row.name in invalid:
            invalid.add(row.name)  # one name twice in one vhost: which row is true?
            continue
        rows[row.name] = row
    return rows, invalid


def pool_backlog(
    query: PoolQuery,
    rows: dict[str, QueueRow],
    invalid: set[str],
    now: float,
) -> tuple[list[QueueBacklog] | None, str | None]:
    """One pool's queues from its vhost's list, or None and why when any of them is unknown."""
    queues = []
    for name in query.queues:
        if name in invalid:
            return None, f"RabbitMQ reported queue {name!r} in a shape celeriac cannot read"
        row = rows.get(name)
        if row is None:
            # Not declared yet: no worker and no publisher has used it, so nothing waits.
            queues.append(QueueBacklog(queue=name, waiting=0, reserved=0, consumers=0))
            continue
        if row.messages_ready is None or row.messages_unacknowledged is None:
            return None, f"RabbitMQ has not reported statistics for queue {name!r} yet"
        queues.append(queue_backlog(row, now))
    return queues, None


def queue_backlog(row: QueueRow, now: float) -> QueueBacklog:
    ready = row.messages_ready or 0
    age = None
    # A priority queue's head is its most urgent message, not its oldest: unknown, never low.
    if ready and row.head_message_timestamp is not None and not row.has_priorities:
        # Whole seconds: the age reads up to 1 s high, never low.
        age = max(0.0, now - row.head_message_timestamp)
    return QueueBacklog(
        queue=row.name,
        waiting=ready,
        reserved=row.messages_unacknowledged or 0,
        oldest_age_s=age,
        consumers=row.consumers,
        publish_rate_per_s=_rate(row.publish_rate),
        deliver_rate_per_s=_rate(row.deliver_rate),
    )


def _rate(value: float | None) -> float | None:
    return None if value is None or value < 0 else value
