"""Reads a Celery-correct backlog and worker load for many pools, one round trip per server.

One pipeline per Redis server (per URL and sentinel master) and tick carries, for every
pool on it:

- each queue's lists, the plain one and every priority sub-list: LLEN, and the oldest
  message (kombu publishes with LPUSH and consumes with BRPOP, so the oldest is at index
  -1) for the age of the oldest task that is due;
- the `unacked` hash (once per key prefix), attributed to queues by routing key, so
  prefetched tasks and tasks running under acks_late count;
- the worker load hash (HGETALL `celeriac.workers.<pool>`).

Why HVALS for `unacked`: the hash holds what workers have taken and not acked, so its
size is bounded by pods x processes x prefetch multiplier (e.g. 50 x 8 x 4 = 1,600
messages of ~1 KB: 1.6 MB and tens of ms to decode per tick; with multiplier 1, which the
worker image sets, a quarter). HLEN is O(1) but one hash serves every queue of the
database, so it can neither split the count by queue nor tell ETA-held tasks from due
ones. HSCAN bounds each reply but costs a cursor loop of round trips per tick over a hash
that changes between pages (double or missed counts). A Lua script counting by routing
key server-side would return only counts, but blocks Redis for the whole scan and needs
EVAL, which ACLs on managed Redis often deny. A large hash is logged once per server,
since it means workers hoard tasks (prefetch) and the operator pays for it every tick.

Why worker load from the celeriac hash and not Celery's heartbeats: it rides in the same
round trip as the backlog, and carries pool size, autoscale range and CPU, which
heartbeats (`active`, `processed`, `loadavg`) lack. Heartbeats are the fallback idea for
workers not built from the celeriac worker image; they are PUBLISHed, so reading them
would need a standing subscriber per server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis
from pydantic import ValidationError

from celeriac.signals import celery_message, kombu_keys
from celeriac.signals.connection import connect, server_label
from celeriac.signals.head_sightings import HeadSightings
from celeriac.signals.model import PoolSignals, QueueBacklog, WorkerLoad

log = logging.getLogger(__name__)

# Messages read from the old end of a list whose oldest message had a future ETA on the
# previous tick (left there when no worker consumes), to find the oldest due one behind it.
# Other lists send one message per tick: with every queue backlogged, reading 8 would move
# 8x the bytes (500 pools x 3 queues of 1.3 KB messages: 16 MB per tick instead of 2).
OLDEST_SCAN = 8
# Workers report every ~2 s; a report this old is from a pod that is gone or wedged.
WORKER_STALE_S = 30.0
# Above this many unacked entries on one server the read gets costly: say so once.
UNACKED_WARN = 20_000
MAX_PARALLEL_SERVERS = 8

Server = tuple[str, str | None]


@dataclass(frozen=True)
class PoolQuery:
    """What to read for one pool: its id "namespace/name", broker URL and transport options."""

    pool_id: str
    broker_url: str
    queues: tuple[str, ...]
    global_keyprefix: str = ""
    priority_steps: tuple[int, ...] = kombu_keys.DEFAULT_PRIORITY_STEPS
    sep: str = kombu_keys.DEFAULT_SEP
    master_name: str | None = None
    # amqp:// pools only: the management API's http(s) URL, credentials included; None
    # means the broker host's default port with the broker URL's user.
    management_url: str | None = field(default=None, repr=False)

    @property
    def server(self) -> Server:
        return (self.broker_url, self.master_name)


@dataclass
class _Plan:
    """The order of the commands in one server's pipeline, to read the replies back."""

    queries: list[PoolQuery]
    deep: frozenset[str]  # list keys whose oldest message was not due last time
    lists: list[tuple[str, str, int, str]] = field(default_factory=list)  # pool, queue, step, key
    prefixes: list[str] = field(default_factory=list)

    def fill(self, pipe: redis.client.Pipeline[bytes]) -> None:
        for q in self.queries:
            for queue in q.queues:
                for step, key in kombu_keys.queue_keys(
                    queue, q.priority_steps, q.sep, q.global_keyprefix
                ):
                    pipe.llen(key)
                    pipe.lrange(key, -(OLDEST_SCAN if key in self.deep else 1), -1)
                    self.lists.append((q.pool_id, queue, step, key))
        self.prefixes = sorted({q.global_keyprefix for q in self.queries})
        for prefix in self.prefixes:
            pipe.hvals(kombu_keys.unacked_key(prefix))
        for q in self.queries:
            pipe.hgetall(kombu_keys.worker_load_key(q.pool_id, q.global_keyprefix))


class BacklogReader:
    """Reads PoolSignals for many pools: one pipelined round trip per server per call.

    Clients are kept between calls; a failed server's client is dropped so the next call
    reconnects (a restarted server, a failed-over sentinel master).
    """

    def __init__(
        self,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.time,
        worker_stale_s: float = WORKER_STALE_S,
    ) -> None:
        self.timeout_s = timeout_s
        self.clock = clock
        self.worker_stale_s = worker_stale_s
        self.round_trips = 0
        self._clients: dict[Server, redis.Redis[bytes]] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._warned_large: set[Server] = set()
        self._deep_scan: dict[Server, set[str]] = defaultdict(set)
        self._sightings = HeadSightings()

    def read(self, queries: list[PoolQuery]) -> dict[str, PoolSignals]:
        """PoolSignals by pool id; a pool whose server failed has queues=None and an error."""
        by_server: dict[Server, list[PoolQuery]] = defaultdict(list)
        for q in queries:
            by_server[q.server].append(q)
        groups = list(by_server.values())
        out: dict[str, PoolSignals] = {}
        if len(groups) <= 1:
            for group in groups:
                out.update(self._read_server(group))
            return out
        # Servers in parallel: a dead one costs the tick its timeout once, not once per server.
        if self._pool is None:
            self._pool = ThreadPoolExecutor(MAX_PARALLEL_SERVERS, "celeriac-signals")
        for result in self._pool.map(self._read_server, groups):
            out.update(result)
        return out

    def _client(self, server: Server) -> redis.Redis[bytes]:
        with self._lock:
            client = self._clients.get(server)
            if client is None:
                client = connect(server[0], server[1], self.timeout_s)
                self._clients[server] = client
            return client

    def _drop_client(self, server: Server) -> None:
        with self._lock:
            client = self._clients.pop(server, None)
        if client is not None:
            client.close()

    def _read_server(self, queries: list[PoolQuery]) -> dict[str, PoolSignals]:
        server = queries[0].server
        now = self.clock()
        with self._lock:
            deep = frozenset(self._deep_scan.get(server, ()))
        plan = _Plan(queries, deep)
        try:
            pipe = self._client(server).pipeline(transaction=False)
            plan.fill(pipe)
            with self._lock:
                self.round_trips += 1
            # Per-command errors come back in place: a key of the wrong type fails its pool only.
            replies = pipe.execute(raise_on_error=False)
        except (redis.RedisError, OSError, ValueError) as exc:
            message = f"broker {server_label(server[0])} unreadable: {type(exc).__name__}: {exc}"
            self._drop_client(server)
            return {
                q.pool_id: PoolSignals(
                    observed_at=now, backlog_error=message, workers_error=message
                )
                for q in queries
            }
        return self._assemble(plan, replies, now)

    def _assemble(self, plan: _Plan, replies: list[Any], now: float) -> dict[str, PoolSignals]:
        waiting: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
        oldest: dict[tuple[str, str], float] = {}
        bounded: set[tuple[str, str]] = set()  # ages that are lower bounds (no header)
        failed: dict[str, str] = {}  # pool id -> why its backlog is unknown
        not_due_oldest: set[str] = set()
        i = 0
        for pool_id, queue, step, key in plan.lists:
            length, tail = replies[i], replies[i + 1]
            i += 2
            if isinstance(length, Exception) or isinstance(tail, Exception):
                failed.setdefault(pool_id, _key_error(key, length, tail))
                continue
            waiting[(pool_id, queue)][step] = int(length)
            if tail and not celery_message.due_age_s(tail[-1], now)[0]:
                not_due_oldest.add(key)
            age, bound = self._oldest_age(plan, key, tail, now)
            if age is not None:
                oldest[(pool_id, queue)] = max(age, oldest.get((pool_id, queue), 0.0))
                if bound:
                    bounded.add((pool_id, queue))
        if not_due_oldest or plan.deep:
            with self._lock:
                self._deep_scan[plan.queries[0].server] = not_due_oldest
        reserved: dict[str, dict[str, int]] = {}
        scheduled: dict[str, dict[str, int]] = {}
        unacked_failed: dict[str, str] = {}
        for prefix in plan.prefixes:
            if isinstance(replies[i], Exception):
                unacked_failed[prefix] = _key_error(kombu_keys.unacked_key(prefix), replies[i])
            else:
                reserved[prefix], scheduled[prefix] = self._attribute_unacked(
                    replies[i], now, plan.queries[0].server
                )
            i += 1
        out: dict[str, PoolSignals] = {}
        for q in plan.queries:
            workers_raw = replies[i]
            i += 1
            workers, workers_error = None, None
            if isinstance(workers_raw, Exception):
                key = kombu_keys.worker_load_key(q.pool_id, q.global_keyprefix)
                workers_error = _key_error(key, workers_raw)
            else:
                workers = self._workers(workers_raw, now)
            error = failed.get(q.pool_id) or unacked_failed.get(q.global_keyprefix)
            if error is not None:
                out[q.pool_id] = PoolSignals(
                    observed_at=now,
                    backlog_error=error,
                    workers=workers,
                    workers_error=workers_error,
                )
                continue
            queues = [
                QueueBacklog(
                    queue=queue,
                    waiting=sum(waiting[(q.pool_id, queue)].values()),
                    waiting_by_priority=dict(waiting[(q.pool_id, queue)]),
                    reserved=reserved[q.global_keyprefix].get(queue, 0),
                    scheduled=scheduled[q.global_keyprefix].get(queue, 0),
                    oldest_age_s=oldest.get((q.pool_id, queue)),
                    oldest_age_is_lower_bound=(q.pool_id, queue) in bounded,
                )
                for queue in q.queues
            ]
            out[q.pool_id] = PoolSignals(
                observed_at=now, queues=queues, workers=workers, workers_error=workers_error
            )
        return out

    def _oldest_age(
        self, plan: _Plan, key: str, tail: list[bytes], now: float
    ) -> tuple[float | None, bool]:
        """The oldest due message's age from its publish header; for a stock app's message
        (no header) from when it was first seen at the old end, a lower bound."""
        where = (plan.queries[0].server, key)
        found = celery_message.oldest_due(tail, now)
        task_id, age = found if found is not None else (None, None)
        if age is not None or task_id is None:
            self._sightings.forget(where)
            return age, False
        return self._sightings.age_s(where, task_id, now), True

    def _attribute_unacked(
        self, values: list[bytes], now: float, server: Server
    ) -> tuple[dict[str, int], dict[str, int]]:
        # Routing key == queue name under Celery's default direct exchanges; tasks routed
        # through topic/fanout exchanges with other keys are not attributed to a queue.
        due: dict[str, int] = defaultdict(int)
        later: dict[str, int] = defaultdict(int)
        for raw in values:
            entry = celery_message.unacked_entry(raw, now)
            if entry is None:
                continue
            routing_key, future_eta = entry
            (later if future_eta else due)[routing_key] += 1
        if len(values) > UNACKED_WARN and server not in self._warned_large:
            self._warned_large.add(server)
            log.warning(
                "broker %s holds %d unacked messages, all read every tick; "
                "worker_prefetch_multiplier=1 keeps this to the running tasks",
                server_label(server[0]),
                len(values),
            )
        return due, later

    def _workers(self, raw: dict[bytes, bytes], now: float) -> list[WorkerLoad]:
        workers = []
        for value in raw.values():
            try:
                load = WorkerLoad.model_validate_json(value)
            except ValidationError:
                log.debug("ignoring a malformed worker load report")
                continue
            if now - load.ts <= self.worker_stale_s:
                workers.append(load)
        return sorted(workers, key=lambda w: w.hostname)

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def _key_error(key: str, *replies: object) -> str:
    exc = next(r for r in replies if isinstance(r, Exception))
    return f"cannot read Redis key {key!r} ({exc}): is another application using this name?"
