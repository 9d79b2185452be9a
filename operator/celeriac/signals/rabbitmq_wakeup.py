"""Wakes RabbitMQ pools within about a second of new work, with one cheap poll per broker.

RabbitMQ has no keyspace notifications. One thread per management endpoint and vhost
polls the queue list every `poll_s` with two columns, `name` and
`message_stats.publish` (messages routed into the queue since it was declared), and
calls back with the pools of every queue whose count grew. Counts come from the
management statistics, so the delay is the poll plus the broker's statistics interval
(`collect_statistics_interval` and the management agent's sampling: 5 s each by default,
1 s where tuned as tests/support/rabbitmq_server.py does).

Rejected: a copy of every task through an operator queue bound beside each pool's queue
(wakes in milliseconds, but the operator would receive every task body and could not
bind to the default exchange at all); the firehose tracer (every message, broker-wide);
the event exchange plugin (queue and consumer events, not publishes).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from celeriac.signals import rabbitmq_api
from celeriac.signals.rabbitmq_api import Endpoint
from celeriac.signals.rabbitmq_client import ManagementClient, ManagementError
from celeriac.signals.reader import PoolQuery

log = logging.getLogger(__name__)

PUBLISH_COLUMNS = "columns=name,message_stats.publish"


def publish_path(vhost: str) -> str:
    return rabbitmq_api.queues_path(vhost).split("?", 1)[0] + "?" + PUBLISH_COLUMNS


def publish_counts(raw: bytes) -> dict[str, int]:
    """Queue name -> messages published into it, from a list; unreadable rows are skipped."""
    try:
        doc: Any = json.loads(raw)
    except ValueError as exc:
        raise ManagementError(f"RabbitMQ management API sent invalid JSON: {exc}") from exc
    counts: dict[str, int] = {}
    for row in doc if isinstance(doc, list) else []:
        if not isinstance(row, dict) or not isinstance(row.get("name"), str):
            continue
        stats = row.get("message_stats")
        published = stats.get("publish") if isinstance(stats, dict) else 0
        if isinstance(published, int) and not isinstance(published, bool) and published >= 0:
            counts[row["name"]] = published
    return counts


def grown(before: dict[str, int] | None, after: dict[str, int]) -> set[str]:
    """Queues that received messages between two polls (none on the first poll).

    A count that went down means the queue was deleted and declared again: anything in it
    now is new.
    """
    if before is None:
        return set()
    return {
        name
        for name, count in after.items()
        if count > before.get(name, 0) or (count and count < before.get(name, 0))
    }


class _Poller(threading.Thread):
    def __init__(
        self,
        where: Endpoint,
        vhost: str,
        on_work: Callable[[list[str]], None],
        poll_s: float,
        client: ManagementClient,
    ) -> None:
        super().__init__(name=f"celeriac-rabbitmq-wakeup-{where.label}", daemon=True)
        self.where = where
        self.vhost = vhost
        self.on_work = on_work
        self.poll_s = poll_s
        self.client = client
        self.pools_by_queue: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._last: dict[str, int] | None = None
        self._failing = False

    def watch(self, pools_by_queue: dict[str, set[str]]) -> None:
        with self._lock:
            self.pools_by_queue = pools_by_queue

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        while not self._halt.wait(self.poll_s):
            try:
                counts = publish_counts(self.client.get(self.where, publish_path(self.vhost)))
            except ManagementError as exc:
                if not self._failing:
                    log.info("wake-ups for RabbitMQ pools paused: %s", exc)
                # The last good counts stay the baseline: work published during the gap
                # still wakes its pools once the broker answers again.
                self._failing = True
                continue
            self._failing = False
            new = grown(self._last, counts)
            self._last = counts
            with self._lock:
                pools = {p for queue in new for p in self.pools_by_queue.get(queue, ())}
            if pools:
                self.on_work(sorted(pools))


class RabbitMQWakeup:
    """Calls `on_work(pool_ids)` when the pools' queues receive messages."""

    def __init__(
        self, on_work: Callable[[list[str]], None], poll_s: float = 1.0, timeout_s: float = 5.0
    ) -> None:
        self.on_work = on_work
        self.poll_s = poll_s
        self.client = ManagementClient(timeout_s)
        self._pollers: dict[tuple[Endpoint, str], _Poller] = {}
        self._lock = threading.Lock()

    def update(self, queries: Iterable[PoolQuery]) -> None:
        """Watch exactly these pools' queues (call again whenever the set changes)."""
        wanted: dict[tuple[Endpoint, str], dict[str, set[str]]] = defaultdict(
            lambda: defaultdict(set)
        )
        for q in queries:
            try:
                where = rabbitmq_api.endpoint(q.broker_url, q.management_url)
            except ValueError:
                continue  # the reader reports the unusable endpoint in the pool's status
            for queue in q.queues:
                wanted[(where, rabbitmq_api.vhost_of(q.broker_url))][queue].add(q.pool_id)
        with self._lock:
            for key, pools_by_queue in wanted.items():
                poller = self._pollers.get(key)
                if poller is None:
                    poller = _Poller(key[0], key[1], self.on_work, self.poll_s, self.client)
                    self._pollers[key] = poller
                    poller.watch(dict(pools_by_queue))
                    poller.start()
                else:
                    poller.watch(dict(pools_by_queue))
            for key in set(self._pollers) - set(wanted):
                self._pollers.pop(key).stop()

    def close(self) -> None:
        with self._lock:
            pollers = list(self._pollers.values())
            self._pollers.clear()
        for poller in pollers:
            poller.stop()
        for poller in pollers:
            poller.join(timeout=5)
        self.client.close()
