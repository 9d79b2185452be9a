"""Wakes a pool's reconcile within a second of new work, between periodic ticks.

Redis: keyspace notifications (`notify-keyspace-events` with K and l) publish an event on
`__keyspace@<db>__:<key>` for every LPUSH to a queue list. One listener thread per
broker subscribes to the exact channels of the watched pools' queue keys, and calls
back with the pool ids, at most once per `min_interval_s` per pool. RabbitMQ pools
(amqp://) are handed to `rabbitmq_wakeup`, which polls each broker once a second, under the
same per-pool cap.

The listener changes the server's `notify-keyspace-events` only when asked to
(`configure_server`): on a broker other applications share, CONFIG SET is the broker
owner's decision (issue #14, 11). Otherwise, and when the server refuses CONFIG (managed
Redis often does), events must be set in the server's own configuration; the listener
says so once, and the pools fall back to their polling interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

import redis

from celeriac.signals import kombu_keys, rabbitmq_api
from celeriac.signals.connection import connect, redact, server_label
from celeriac.signals.rabbitmq_wakeup import RabbitMQWakeup
from celeriac.signals.reader import PoolQuery

log = logging.getLogger(__name__)

HEALTH_CHECK_S = 5.0
PUSH_EVENTS = {b"lpush", b"rpush", b"lpushx", b"rpushx"}


def notifications_on(client: redis.Redis[bytes]) -> bool | None:
    """Whether the server publishes list pushes (K and l, or A); None if CONFIG is refused."""
    try:
        current = str(client.config_get("notify-keyspace-events").get("notify-keyspace-events", ""))
    except redis.ResponseError:
        return None
    return "K" in current and ("l" in current or "A" in current)


def enable_notifications(client: redis.Redis[bytes]) -> bool:
    try:
        current = str(client.config_get("notify-keyspace-events").get("notify-keyspace-events", ""))
        wanted = set(current) | {"K", "l"}
        if "A" in current:
            wanted.discard("l")  # A is an alias that already includes l
        if set(current) != wanted:
            client.config_set("notify-keyspace-events", "".join(sorted(wanted)))
        return True
    except redis.ResponseError as exc:
        log.warning(
            "cannot enable keyspace notifications (%s): unless the server's own "
            "notify-keyspace-events includes K and l, pools wake on their polling interval",
            exc,
        )
        return False


class _ServerListener(threading.Thread):
    def __init__(
        self,
        url: str,
        master_name: str | None,
        on_push: Callable[[list[str]], None],
        configure_server: bool = False,
    ) -> None:
        super().__init__(name=f"celeriac-wakeup-{server_label(url)}", daemon=True)
        self.configure_server = configure_server
        self._told_off = False
        self.url = url
        self.master_name = master_name
        self.on_push = on_push
        self.channels: dict[str, set[str]] = {}
        self._wanted: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def set_channels(self, channels: dict[str, set[str]]) -> None:
        with self._lock:
            self._wanted = channels

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._listen()
            except (redis.RedisError, OSError) as exc:
                log.info(
                    "wake-up listener for %s lost its connection (%s); reconnecting",
                    server_label(self.url),
                    redact(str(exc), self.url),
                )
                self.channels = {}
                self._halt.wait(1.0)
            except ValueError as exc:
                # A URL redis-py cannot use: the pool's status already says so (the reader fails
                # the same way); wake-ups for it stop until the operator restarts.
                log.warning(
                    "no wake-ups for %s: %s", server_label(self.url), redact(str(exc), self.url)
                )
                return

    def _listen(self) -> None:
        # The PING health check is how a subscriber notices a broker that vanished without
        # closing the socket; otherwise it would wait for events forever.
        client = connect(
            self.url, self.master_name, timeout_s=5.0, health_check_interval_s=HEALTH_CHECK_S
        )
        if self.configure_server:
            enable_notifications(client)
        elif notifications_on(client) is False and not self._told_off:
            self._told_off = True
            log.warning(
                "broker %s does not publish keyspace events (notify-keyspace-events K and l): "
                "pools wake on their polling interval until it is set on the server",
                server_label(self.url),
            )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            while not self._halt.is_set():
                self._sync(pubsub)
                if not pubsub.subscribed:
                    self._halt.wait(0.2)
                    continue
                message = pubsub.get_message(timeout=0.5)
                if message and message.get("data") in PUSH_EVENTS:
                    channel = message["channel"].decode()
                    pools = self.channels.get(channel)
                    if pools:
                        self.on_push(sorted(pools))
        finally:
            pubsub.close()
            client.close()

    def _sync(self, pubsub: redis.client.PubSub) -> None:
        with self._lock:
            wanted = dict(self._wanted)
        added = set(wanted) - set(self.channels)
        removed = set(self.channels) - set(wanted)
        if added:
            pubsub.subscribe(*sorted(added))
        if removed:
            pubsub.unsubscribe(*sorted(removed))
        self.channels = wanted


class WakeupListener:
    def __init__(
        self,
        callback: Callable[[list[str]], None],
        min_interval_s: float = 1.0,
        configure_server: bool = False,
    ) -> None:
        self.callback = callback
        self.min_interval_s = min_interval_s
        self.configure_server = configure_server
        self._last: dict[str, float] = {}
        self._listeners: dict[tuple[str, str | None], _ServerListener] = {}
        self._rabbitmq: RabbitMQWakeup | None = None
        self._lock = threading.Lock()

    def _on_push(self, pool_ids: list[str]) -> None:
        now = time.monotonic()
        due = []
        with self._lock:
            for pool_id in pool_ids:
                if now - self._last.get(pool_id, float("-inf")) >= self.min_interval_s:
                    self._last[pool_id] = now
                    due.append(pool_id)
        if due:
            self.callback(due)

    def update(self, queries: Iterable[PoolQuery]) -> None:
        """Watch exactly these pools' queue keys (call again whenever the set changes)."""
        per_server: dict[tuple[str, str | None], dict[str, set[str]]] = defaultdict(
            lambda: defaultdict(set)
        )
        queries = list(queries)
        amqp = [q for q in queries if rabbitmq_api.is_amqp_url(q.broker_url)]
        if amqp or self._rabbitmq is not None:
            # No keyspace notifications there: one cheap poll per broker instead.
            if self._rabbitmq is None:
                self._rabbitmq = RabbitMQWakeup(self._on_push)
            self._rabbitmq.update(amqp)
        for q in queries:
            if rabbitmq_api.is_amqp_url(q.broker_url):
                continue
            db = _db_from_url(q.broker_url)
            for queue in q.queues:
                for _step, key in kombu_keys.queue_keys(
                    queue, q.priority_steps, q.sep, q.global_keyprefix
                ):
                    per_server[(q.broker_url, q.master_name)][f"__keyspace@{db}__:{key}"].add(
                        q.pool_id
                    )
        with self._lock:
            for server, channels in per_server.items():
                listener = self._listeners.get(server)
                if listener is None:
                    listener = _ServerListener(
                        server[0], server[1], self._on_push, self.configure_server
                    )
                    self._listeners[server] = listener
                    listener.set_channels(dict(channels))
                    listener.start()
                else:
                    listener.set_channels(dict(channels))
            for server in set(self._listeners) - set(per_server):
                self._listeners.pop(server).stop()

    def close(self) -> None:
        with self._lock:
            listeners = list(self._listeners.values())
            self._listeners.clear()
        for listener in listeners:
            listener.stop()
        for listener in listeners:
            listener.join(timeout=2)
        if self._rabbitmq is not None:
            self._rabbitmq.close()


def _db_from_url(url: str) -> int:
    tail = url.split(";")[0].rsplit("/", 1)
    if len(tail) == 2 and tail[1].split("?")[0].isdigit():
        return int(tail[1].split("?")[0])
    return 0
