"""The wake-up listener: a push wakes its pool within a second, also after a broker restart."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from celeriac.signals import kombu_keys
from celeriac.signals.reader import PoolQuery
from celeriac.signals.wakeup import WakeupListener
from tests.support.redis_server import RedisServer, running_redis
from tests.support.waiting import wait_for


class Wakes:
    def __init__(self) -> None:
        self.calls: list[tuple[float, list[str]]] = []
        self.lock = threading.Lock()

    def __call__(self, pool_ids: list[str]) -> None:
        with self.lock:
            self.calls.append((time.monotonic(), pool_ids))

    def since(self, t: float) -> list[tuple[float, list[str]]]:
        with self.lock:
            return [c for c in self.calls if c[0] >= t]


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


@pytest.fixture
def listener(wakes: Wakes) -> Iterator[WakeupListener]:
    wakeup = WakeupListener(wakes, min_interval_s=0.5, configure_server=True)
    yield wakeup
    wakeup.close()


def _subscribed(server: RedisServer, key: str) -> bool:
    channel = f"__keyspace@0__:{key}"
    return dict(server.client().pubsub_numsub(channel)).get(channel.encode(), 0) == 1


def _push_and_time(server: RedisServer, wakes: Wakes, key: str) -> tuple[float, list[str]]:
    pushed = time.monotonic()
    server.client().lpush(key, b"{}")
    woken = wait_for(f"a wake-up after LPUSH {key!r}", lambda: wakes.since(pushed), timeout_s=10)
    return woken[0][0] - pushed, woken[0][1]


def test_a_push_to_a_priority_list_wakes_only_its_pools(
    redis_server: RedisServer, wakes: Wakes, listener: WakeupListener
) -> None:
    key = f"reports{kombu_keys.DEFAULT_SEP}9"
    listener.update(
        [
            PoolQuery(pool_id="ns/a", broker_url=redis_server.url, queues=("reports",)),
            PoolQuery(pool_id="ns/b", broker_url=redis_server.url, queues=("reports", "x")),
            PoolQuery(pool_id="ns/c", broker_url=redis_server.url, queues=("emails",)),
        ]
    )
    wait_for("the listener to subscribe", lambda: _subscribed(redis_server, key), timeout_s=5)
    # How fast is bench/bench_reaction.py's business; here: woken, and only the right pools.
    _, pools = _push_and_time(redis_server, wakes, key)
    assert pools == ["ns/a", "ns/b"]


def test_the_listener_resubscribes_and_reenables_events_after_a_restart(
    redis_server: RedisServer, wakes: Wakes, listener: WakeupListener
) -> None:
    listener.update([PoolQuery(pool_id="ns/a", broker_url=redis_server.url, queues=("celery",))])
    wait_for("the listener to subscribe", lambda: _subscribed(redis_server, "celery"), timeout_s=5)
    redis_server.stop()
    time.sleep(1.5)  # the listener sees the connection drop and retries against nothing
    redis_server.start()  # a fresh server: notify-keyspace-events is off again
    wait_for("the listener to resubscribe", lambda: _subscribed(redis_server, "celery"), 10)
    events = redis_server.client().config_get("notify-keyspace-events")["notify-keyspace-events"]
    assert set(events) == {"K", "l"}
    _, pools = _push_and_time(redis_server, wakes, "celery")
    assert pools == ["ns/a"]


def test_pushes_faster_than_the_cap_wake_a_pool_once_per_interval(
    redis_server: RedisServer, wakes: Wakes, listener: WakeupListener
) -> None:
    listener.update([PoolQuery(pool_id="ns/a", broker_url=redis_server.url, queues=("celery",))])
    wait_for("the listener to subscribe", lambda: _subscribed(redis_server, "celery"), timeout_s=5)
    started = time.monotonic()
    client = redis_server.client()
    while time.monotonic() - started < 2.0:
        client.lpush("celery", b"{}")
        time.sleep(0.02)
    time.sleep(0.6)
    # The cap read from the wake-ups' own times, not from a count over a wall-clock loop.
    times = [t for t, pools in wakes.since(started) if pools == ["ns/a"]]
    assert len(times) >= 2
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.5 - 0.01, gaps  # min_interval_s=0.5


def test_without_config_set_events_enabled_by_the_operator_of_redis_still_wake(
    wakes: Wakes, listener: WakeupListener, caplog: pytest.LogCaptureFixture
) -> None:
    # Managed Redis: CONFIG is refused, events are set in the server's own configuration.
    args = ["--rename-command", "CONFIG", "", "--notify-keyspace-events", "Kl"]
    with caplog.at_level(logging.WARNING), running_redis(extra_args=args) as server:
        listener.update([PoolQuery(pool_id="ns/m", broker_url=server.url, queues=("celery",))])
        wait_for("the listener to subscribe", lambda: _subscribed(server, "celery"), timeout_s=5)
        _, pools = _push_and_time(server, wakes, "celery")
    assert pools == ["ns/m"]
    refused = [r for r in caplog.records if "cannot enable keyspace notifications" in r.message]
    assert len(refused) == 1


def test_a_shared_broker_is_not_reconfigured_unless_the_operator_may(
    redis_server: RedisServer, wakes: Wakes, caplog: pytest.LogCaptureFixture
) -> None:
    # CONFIG SET on a broker other applications share is opt-in (issue #14, 11).
    wakeup = WakeupListener(wakes, min_interval_s=0.5)
    try:
        with caplog.at_level(logging.WARNING):
            wakeup.update(
                [PoolQuery(pool_id="ns/s", broker_url=redis_server.url, queues=("celery",))]
            )
            wait_for("the listener to subscribe", lambda: _subscribed(redis_server, "celery"), 5)
        events = redis_server.client().config_get("notify-keyspace-events")
        assert events == {"notify-keyspace-events": ""}
        told = [r for r in caplog.records if "does not publish keyspace events" in r.message]
        assert len(told) == 1
    finally:
        wakeup.close()
