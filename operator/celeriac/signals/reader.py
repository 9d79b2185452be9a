"""Reads a Celery-correct backlog and worker load for many pools, one round trip per server.

One pipeline per Redis server (per URL and sentinel master) and tick carries, for every
pool on it:

- each queue's lists, the plain one and every priority sub-list: LLEN, and the oldest
  message (kombu publishes with LPUSH and consumes with BRPOP, so the oldest is at index
  -1) for the age of the oldest task that is due;
- the `unacked` hash (once per key prefix), attributed to queues by routing key, so
  prefetched tasks and tasks running under acks_late count;
- the worker load hash `celeriac.workers.<pool>`, at most MAX_REPORTS_PER_POOL reports of
  bounded size, each checked against the model's bounds and a clock-skew window.

Why a server-side script (`server_script`, EVALSHA in the same pipeline): task bodies can
be any size (with 10 MB bodies, reading the oldest message of each list whole and every
`unacked` value cost +611 MB RSS per tick, issue #14), and anyone who can write to the
broker can add worker reports. The script cuts each message's body out inside Redis,
counts `unacked` entries by routing key and ETA there, and returns at most
`MAX_REPORTS_PER_POOL` small reports. Where ACLs refuse scripts, `server_read.fetch_plain`
asks sizes first and reads only what fits a per-tick byte budget. HSCAN was rejected: a
cursor loop of round trips per tick over a hash that changes between pages. A large
`unacked` hash is logged once per server, since it means workers hoard tasks (prefetch).

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

import redis
from pydantic import ValidationError

from celeriac.signals import celery_message, kombu_keys, server_read
from celeriac.signals.connection import BrokerURLError, connect, redact, server_label
from celeriac.signals.head_sightings import HeadSightings
from celeriac.signals.model import PoolSignals, QueueBacklog, WorkerLoad
from celeriac.signals.server_script import UnackedCounts

log = logging.getLogger(__name__)

# Messages read from the old end of a list whose oldest message had a future ETA on the
# previous tick (left there when no worker consumes), to find the oldest due one behind it.
# Other lists send one message per tick: with every queue backlogged, reading 8 would move
# 8x the bytes (500 pools x 3 queues of 1.3 KB messages: 16 MB per tick instead of 2).
OLDEST_SCAN = 8
# Workers report every ~2 s; a report this old is from a pod that is gone or wedged.
WORKER_STALE_S = 30.0
# A report stamped further ahead than this is not believed: a forged `ts` must not keep a
# report fresh forever (issue #14, 3); NTP keeps honest clocks well within it.
WORKER_CLOCK_SKEW_S = 10.0
# Above this many unacked entries on one server the read gets costly: say so once.
UNACKED_WARN = 20_000
MAX_PARALLEL_SERVERS = 8

Server = tuple[str, str | None]


@dataclass(frozen=True)
class PoolQuery:
    """What to read for one pool: its id "namespace/name", broker URL and transport options."""

    pool_id: str
    broker_url: str = field(repr=False)  # a Secret's value: never in a log line
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
class _Lists:
    """What the queue lists said, by (pool id, queue)."""

    waiting: dict[tuple[str, str], dict[int, int]]
    oldest: dict[tuple[str, str], float]
    bounded: set[tuple[str, str]]  # oldest ages that are lower bounds (no publish header)


class BacklogReader:
    """Reads PoolSignals for many pools: one pipelined round trip per server per call.

    Clients are kept between calls; a failed server's client is dropped so the next call
    reconnects (a restarted server, a failed-over sentinel master). Each server is read
    through the server-side script until it refuses scripts, then with plain reads.
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
        self._script_loaded: set[Server] = set()
        self.plain_servers: set[Server] = set()  # servers that refused the script

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
            self._script_loaded.discard(server)
        if client is not None:
            client.close()

    def _fetch(self, server: Server, queries: list[PoolQuery]) -> server_read.Readings:
        with self._lock:
            deep = frozenset(self._deep_scan.get(server, ()))
            plain = server in self.plain_servers
            loaded = server in self._script_loaded
        client = self._client(server)
        for _ in range(2):
            if plain:
                return server_read.fetch_plain(client, queries, deep, OLDEST_SCAN)
            try:
                got = server_read.fetch_scripted(client, queries, deep, OLDEST_SCAN, not loaded)
            except server_read.ScriptMissingError:
                loaded = False
                continue
            except server_read.ScriptRefusedError as exc:
                log.warning(
                    "broker %s refuses server-side scripts (%s): plain reads within a "
                    "per-tick byte budget from now on",
                    server_label(server[0]),
                    redact(str(exc), server[0]),
                )
                plain = True
                with self._lock:
                    self.plain_servers.add(server)
                continue
            with self._lock:
                self._script_loaded.add(server)
            return got
        raise redis.ResponseError("the server-side script was not loaded twice in a row")

    def _read_server(self, queries: list[PoolQuery]) -> dict[str, PoolSignals]:
        server = queries[0].server
        now = self.clock()
        try:
            readings = self._fetch(server, queries)
        except BrokerURLError as exc:
            return _all_failed(queries, now, f"broker URL unusable: {exc}")
        except (redis.RedisError, OSError, ValueError) as exc:
            with self._lock:
                self.round_trips += 1
            self._drop_client(server)
            # The URL is a Secret's value: only scheme, host and port may reach a status.
            detail = redact(str(exc), server[0])
            label = server_label(server[0])
            return _all_failed(
                queries, now, f"broker {label} unreadable: {type(exc).__name__}: {detail}"
            )
        with self._lock:
            self.round_trips += readings.round_trips
        return self._assemble(server, queries, readings, now)

    def _assemble(
        self, server: Server, queries: list[PoolQuery], got: server_read.Readings, now: float
    ) -> dict[str, PoolSignals]:
        waiting: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
        oldest: dict[tuple[str, str], float] = {}
        bounded: set[tuple[str, str]] = set()  # ages that are lower bounds (no header)
        failed: dict[str, str] = {}  # pool id -> why its backlog is unknown
        not_due_oldest: set[str] = set()
        for pool_id, queue, step, key in server_read.list_slots(queries):
            length, tail = got.lengths[key], got.tails[key]
            if isinstance(length, Exception) or isinstance(tail, Exception):
                failed.setdefault(pool_id, _key_error(key, length, tail))
                continue
            waiting[(pool_id, queue)][step] = int(length)
            if tail and not celery_message.due_age_s(tail[-1], now)[0]:
                not_due_oldest.add(key)
            age, bound = self._oldest_age(server, key, tail or [], now)
            if age is not None:
                oldest[(pool_id, queue)] = max(age, oldest.get((pool_id, queue), 0.0))
                if bound:
                    bounded.add((pool_id, queue))
        with self._lock:
            self._deep_scan[server] = not_due_oldest
        reserved: dict[str, dict[str, int]] = {}
        scheduled: dict[str, dict[str, int]] = {}
        for prefix, counts in got.unacked.items():
            if isinstance(counts, Exception):
                failed_prefix = _key_error(kombu_keys.unacked_key(prefix), counts)
                for q in queries:
                    if q.global_keyprefix == prefix:
                        failed.setdefault(q.pool_id, failed_prefix)
                continue
            reserved[prefix], scheduled[prefix] = self._attribute_unacked(counts, now, server)
        lists = _Lists(waiting, oldest, bounded)
        return {
            q.pool_id: self._pool_signals(q, got, now, failed, lists, reserved, scheduled)
            for q in queries
        }

    def _oldest_age(
        self, server: Server, key: str, tail: list[bytes], now: float
    ) -> tuple[float | None, bool]:
        """The oldest due message's age from its publish header; for a stock app's message
        (no header) from when it was first seen at the old end, a lower bound."""
        where = (server, key)
        found = celery_message.oldest_due(tail, now)
        task_id, age = found if found is not None else (None, None)
        if age is not None or task_id is None:
            self._sightings.forget(where)
            return age, False
        return self._sightings.age_s(where, task_id, now), True

    def _pool_signals(
        self,
        q: PoolQuery,
        got: server_read.Readings,
        now: float,
        failed: dict[str, str],
        lists: _Lists,
        reserved: dict[str, dict[str, int]],
        scheduled: dict[str, dict[str, int]],
    ) -> PoolSignals:
        reports = got.reports[q.pool_id]
        workers: list[WorkerLoad] | None = None
        workers_error: str | None = None
        refused = total = 0
        if isinstance(reports, Exception):
            key = kombu_keys.worker_load_key(q.pool_id, q.global_keyprefix)
            workers_error = _key_error(key, reports)
        else:
            total, values = reports
            workers = self._workers(values, now)
            refused = total - len(workers)
        base = PoolSignals(
            observed_at=now,
            workers=workers,
            workers_error=workers_error,
            worker_reports=total,
            worker_reports_refused=refused,
        )
        if q.pool_id in failed:
            return base.model_copy(update={"backlog_error": failed[q.pool_id]})
        queues = [
            QueueBacklog(
                queue=queue,
                waiting=sum(lists.waiting[(q.pool_id, queue)].values()),
                waiting_by_priority=dict(lists.waiting[(q.pool_id, queue)]),
                reserved=reserved[q.global_keyprefix].get(queue, 0),
                scheduled=scheduled[q.global_keyprefix].get(queue, 0),
                oldest_age_s=lists.oldest.get((q.pool_id, queue)),
                oldest_age_is_lower_bound=(q.pool_id, queue) in lists.bounded,
            )
            for queue in q.queues
        ]
        return base.model_copy(update={"queues": queues})

    def _attribute_unacked(
        self, counts: UnackedCounts, now: float, server: Server
    ) -> tuple[dict[str, int], dict[str, int]]:
        # Routing key == queue name under Celery's default direct exchanges; tasks routed
        # through topic/fanout exchanges with other keys are not attributed to a queue. When
        # the hash was sampled (more entries than read), counts scale up to its size.
        due: dict[str, float] = defaultdict(float)
        later: dict[str, float] = defaultdict(float)
        for (routing_key, eta), n in counts.by_key_eta.items():
            if routing_key:
                future = celery_message.eta_is_future(eta, now)
                (later if future else due)[routing_key] += n * counts.scale
        if counts.total > UNACKED_WARN and server not in self._warned_large:
            self._warned_large.add(server)
            log.warning(
                "broker %s holds %d unacked messages, %d read per tick; "
                "worker_prefetch_multiplier=1 keeps this to the running tasks",
                server_label(server[0]),
                counts.total,
                counts.read,
            )
        return (
            {k: round(v) for k, v in due.items()},
            {k: round(v) for k, v in later.items()},
        )

    def _workers(self, raw: dict[bytes, bytes], now: float) -> list[WorkerLoad]:
        """Reports within bounds (model), fresh, and not from the future (clock skew)."""
        workers = []
        for value in raw.values():
            if len(value) > server_read.MAX_REPORT_BYTES:
                continue
            try:
                load = WorkerLoad.model_validate_json(value)
            except ValidationError:
                log.debug("ignoring a malformed worker load report")
                continue
            fresh = now - self.worker_stale_s <= load.ts <= now + WORKER_CLOCK_SKEW_S
            if fresh and load.consistent:
                workers.append(load)
        return sorted(workers, key=lambda w: w.hostname)

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
            self._script_loaded.clear()
        for client in clients:
            client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def _all_failed(queries: list[PoolQuery], now: float, message: str) -> dict[str, PoolSignals]:
    return {
        q.pool_id: PoolSignals(observed_at=now, backlog_error=message, workers_error=message)
        for q in queries
    }


def _key_error(key: str, *replies: object) -> str:
    exc = next(r for r in replies if isinstance(r, Exception))
    return f"cannot read Redis key {key!r} ({exc}): is another application using this name?"
