"""Reads a Celery-correct backlog and worker load for many pools, one round trip per server.

Per queue: every priority list (LLEN, plus the oldest few messages for their age) and
the `unacked` hash attributed by routing key, so prefetched tasks and tasks running
under acks_late count. Worker load comes from the hash the worker image publishes
(celeriac.workers.<pool>): it rides in the same pipeline and carries pool size, range
and CPU, which Celery's heartbeats lack. Heartbeats would be the fallback for workers
that do not run the celeriac autoscaler.

`HVALS unacked` is O(reserved tasks) per server per tick; with prefetch multiplier 1 it
is bounded by the number of worker processes, which is what makes it affordable.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import redis
from pydantic import ValidationError
from redis.sentinel import Sentinel

from celeriac.signals import kombu_keys
from celeriac.signals.model import PoolSignals, QueueBacklog, WorkerLoad

log = logging.getLogger(__name__)

OLDEST_SCAN = 8  # messages read from the old end of each list to skip future ETAs
WORKER_STALE_S = 30.0


@dataclass(frozen=True)
class PoolQuery:
    pool_id: str
    broker_url: str
    queues: tuple[str, ...]
    global_keyprefix: str = ""
    priority_steps: tuple[int, ...] = kombu_keys.DEFAULT_PRIORITY_STEPS
    sep: str = kombu_keys.DEFAULT_SEP
    master_name: str | None = None


def connect(url: str, master_name: str | None = None, timeout_s: float = 2.0) -> redis.Redis[bytes]:
    """redis://, rediss:// (TLS) and sentinel:// URLs, as Celery spells them."""
    if url.startswith("sentinel://"):
        hosts = []
        password = None
        db = 0
        for part in url.split(";"):
            parsed = urlparse(part.strip())
            hosts.append((parsed.hostname or "127.0.0.1", parsed.port or 26379))
            password = parsed.password or password
            if parsed.path.strip("/"):
                db = int(parsed.path.strip("/"))
        if not master_name:
            raise ValueError("a sentinel:// broker URL needs spec.broker.transport.masterName")
        sentinel = Sentinel(hosts, socket_timeout=timeout_s, password=password)
        return sentinel.master_for(master_name, socket_timeout=timeout_s, db=db, password=password)
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def _headers(raw: bytes | str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, TypeError):
        return {}
    if isinstance(doc, list):  # unacked value: [payload, exchange, routing_key]
        doc = doc[0] if doc else {}
    headers = doc.get("headers") if isinstance(doc, dict) else None
    return headers if isinstance(headers, dict) else {}


def _eta(headers: dict[str, Any]) -> float | None:
    eta = headers.get("eta")
    if not eta:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(eta))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def message_age(raw: bytes | str, now: float) -> float | None:
    """Age of a due message from its publish header; None for future ETAs or no header."""
    headers = _headers(raw)
    eta = _eta(headers)
    if eta is not None and eta > now:
        return None
    published = headers.get(kombu_keys.PUBLISHED_AT_HEADER)
    if published is None:
        return None
    try:
        return max(0.0, now - float(published))
    except (TypeError, ValueError):
        return None


def _routing_key(raw: bytes | str) -> str | None:
    try:
        doc = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if isinstance(doc, list) and len(doc) == 3:
        return str(doc[2])
    return None


class BacklogReader:
    def __init__(self, timeout_s: float = 2.0, clock: Callable[[], float] = time.time) -> None:
        self.timeout_s = timeout_s
        self.clock = clock
        self._clients: dict[tuple[str, str | None], redis.Redis[bytes]] = {}
        self._lock = threading.Lock()
        self.round_trips = 0

    def _client(self, query: PoolQuery) -> redis.Redis[bytes]:
        key = (query.broker_url, query.master_name)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = connect(query.broker_url, query.master_name, self.timeout_s)
                self._clients[key] = client
            return client

    def read(self, queries: list[PoolQuery]) -> dict[str, PoolSignals]:
        by_server: dict[tuple[str, str | None], list[PoolQuery]] = defaultdict(list)
        for q in queries:
            by_server[(q.broker_url, q.master_name)].append(q)
        out: dict[str, PoolSignals] = {}
        for group in by_server.values():
            out.update(self._read_server(group))
        return out

    def _read_server(self, queries: list[PoolQuery]) -> dict[str, PoolSignals]:
        now = self.clock()
        try:
            client = self._client(queries[0])
            pipe = client.pipeline(transaction=False)
            layout: list[tuple[PoolQuery, str, int, str]] = []
            for q in queries:
                for queue in q.queues:
                    for step, key in kombu_keys.queue_keys(
                        queue, q.priority_steps, q.sep, q.global_keyprefix
                    ):
                        pipe.llen(key)
                        pipe.lrange(key, -OLDEST_SCAN, -1)
                        layout.append((q, queue, step, key))
            prefixes = sorted({q.global_keyprefix for q in queries})
            for prefix in prefixes:
                pipe.hvals(kombu_keys.unacked_key(prefix))
            for q in queries:
                pipe.hgetall(kombu_keys.worker_load_key(q.pool_id, q.global_keyprefix))
            replies = pipe.execute()
            self.round_trips += 1
        except (redis.RedisError, OSError, ValueError) as exc:
            message = f"{type(exc).__name__}: {exc}"
            with self._lock:
                # Reconnect on the next tick: a restarted server or failed-over master.
                self._clients.pop((queries[0].broker_url, queries[0].master_name), None)
            return {
                q.pool_id: PoolSignals(
                    observed_at=now, backlog_error=message, workers_error=message
                )
                for q in queries
            }
        return self._assemble(queries, layout, prefixes, replies, now)

    def _assemble(
        self,
        queries: list[PoolQuery],
        layout: list[tuple[PoolQuery, str, int, str]],
        prefixes: list[str],
        replies: list[Any],
        now: float,
    ) -> dict[str, PoolSignals]:
        waiting: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
        oldest: dict[tuple[str, str], float | None] = {}
        i = 0
        for q, queue, step, _key in layout:
            length, tail = replies[i], replies[i + 1]
            i += 2
            waiting[(q.pool_id, queue)][step] = int(length)
            # lrange returns oldest last; walk from the oldest end to the first due message.
            for raw in reversed(tail):
                age = message_age(raw, now)
                if age is not None:
                    current = oldest.get((q.pool_id, queue))
                    oldest[(q.pool_id, queue)] = age if current is None else max(current, age)
                    break
        reserved_by_prefix: dict[str, dict[str, int]] = {}
        scheduled_by_prefix: dict[str, dict[str, int]] = {}
        for prefix in prefixes:
            counts: dict[str, int] = defaultdict(int)
            later: dict[str, int] = defaultdict(int)
            for raw in replies[i]:
                rk = _routing_key(raw)
                if rk is None:
                    continue
                eta = _eta(_headers(raw))
                if eta is not None and eta > now:
                    later[rk] += 1
                else:
                    counts[rk] += 1
            reserved_by_prefix[prefix] = counts
            scheduled_by_prefix[prefix] = later
            i += 1
        out: dict[str, PoolSignals] = {}
        for q in queries:
            workers_raw: dict[bytes, bytes] = replies[i]
            i += 1
            queues = [
                QueueBacklog(
                    queue=queue,
                    waiting=sum(waiting[(q.pool_id, queue)].values()),
                    waiting_by_priority=dict(waiting[(q.pool_id, queue)]),
                    reserved=reserved_by_prefix[q.global_keyprefix].get(queue, 0),
                    scheduled=scheduled_by_prefix[q.global_keyprefix].get(queue, 0),
                    oldest_age_s=oldest.get((q.pool_id, queue)),
                )
                for queue in q.queues
            ]
            out[q.pool_id] = PoolSignals(
                observed_at=now, queues=queues, workers=self._workers(workers_raw, now)
            )
        return out

    def _workers(self, raw: dict[bytes, bytes], now: float) -> list[WorkerLoad]:
        workers = []
        for value in raw.values():
            try:
                load = WorkerLoad.model_validate_json(value)
            except ValidationError:
                log.debug("ignoring a malformed worker load report")
                continue
            if now - load.ts <= WORKER_STALE_S:
                workers.append(load)
        return sorted(workers, key=lambda w: w.hostname)

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
