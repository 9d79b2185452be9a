"""A tick costs one pipelined round trip per Redis server, whatever the number of pools.

Counted on the wire (every packet batch the client sends, per server port) and by the
servers themselves (INFO commandstats), against two real redis-servers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from celeriac.signals.reader import BacklogReader, PoolQuery
from tests.support.redis_server import RedisServer, running_redis


@pytest.fixture
def two_servers() -> Iterator[tuple[RedisServer, RedisServer]]:
    with running_redis() as a, running_redis() as b:
        yield a, b


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """Batches of commands written to each server port (a pipeline is one batch)."""
    counts: Counter[int] = Counter()
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        counts[self.port] += 1
        original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return counts


def _commandstats(admin: redis.Redis) -> dict[str, int]:
    stats = admin.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(doc["calls"]) for name, doc in stats.items()}


def test_many_pools_on_two_servers_cost_one_round_trip_each_per_tick(
    two_servers: tuple[RedisServer, RedisServer], sends: Counter[int]
) -> None:
    a, b = two_servers
    queries = [
        PoolQuery(
            pool_id=f"ns/p{i}",
            broker_url=(a if i % 2 else b).url,
            queues=("q1", "q2", "q3"),
            global_keyprefix="x:" if i % 3 == 0 else "",
        )
        for i in range(300)
    ]
    a.client().lpush("q2", b"{}")
    reader = BacklogReader()
    reader.read(queries)  # connects: handshakes are not part of a tick
    admins = [a.client(), b.client()]
    for admin in admins:
        admin.config_resetstat()
    sends.clear()

    got = reader.read(queries)

    assert sends == {a.port: 1, b.port: 1}
    assert reader.round_trips == 4
    for admin in admins:
        # 150 pools x 3 queues x 4 priority lists; one unacked hash per key prefix in use.
        # Each list, unacked hash and report hash is one EVALSHA of the server-side script
        # (the commands it runs inside Redis are counted too).
        assert _commandstats(admin) == {
            "llen": 1800,
            "evalsha": 1800 + 2 + 150,
            "lindex": 1800,
            "hlen": 2 + 150,
            "hkeys": 2 + 150,
            "config|resetstat": 1,
        }
    assert len(got) == 300
    assert sum(s.backlog or 0 for s in got.values()) == 100  # the 100 plain pools on a


class _SilentServer:
    """Accepts TCP connections and never answers: a broker that hangs, not one that is down."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


def test_a_hung_broker_costs_its_timeout_once_and_spares_the_others(
    two_servers: tuple[RedisServer, RedisServer],
) -> None:
    good, _ = two_servers
    good.client().lpush("q", b"{}", b"{}")
    hung = _SilentServer()
    try:
        reader = BacklogReader(timeout_s=2.0)
        queries = [
            PoolQuery(pool_id="ns/good", broker_url=good.url, queues=("q",)),
            *[
                PoolQuery(
                    pool_id=f"ns/hung{i}",
                    broker_url=f"redis://127.0.0.1:{hung.port}/{i}",
                    queues=("q",),
                )
                for i in range(4)
            ],
        ]
        started = time.monotonic()
        got = reader.read(queries)
        elapsed = time.monotonic() - started
    finally:
        hung.close()
    # Four hung databases read in parallel: one 2 s timeout, not four (8 s).
    assert elapsed < 6.0
    assert got["ns/good"].backlog == 2
    for i in range(4):
        assert got[f"ns/hung{i}"].queues is None
        assert "Timeout" in (got[f"ns/hung{i}"].backlog_error or "")


def test_a_key_of_the_wrong_type_fails_only_its_pool(
    two_servers: tuple[RedisServer, RedisServer],
) -> None:
    server, _ = two_servers
    client = server.client()
    client.lpush("good", b"{}")
    client.set("clash", b"someone else's string")
    client.set("celeriac.workers.ns/c", b"not a hash")
    queries = [
        PoolQuery(pool_id="ns/a", broker_url=server.url, queues=("good",)),
        PoolQuery(pool_id="ns/b", broker_url=server.url, queues=("good", "clash")),
        PoolQuery(pool_id="ns/c", broker_url=server.url, queues=("good",)),
    ]
    got = BacklogReader().read(queries)
    assert got["ns/a"].backlog == 1
    assert got["ns/b"].queues is None
    assert got["ns/b"].backlog_error is not None
    assert got["ns/b"].backlog_error.startswith("cannot read Redis key 'clash' (WRONGTYPE")
    assert got["ns/b"].workers == []
    assert got["ns/c"].backlog == 1
    assert got["ns/c"].workers is None
    assert "'celeriac.workers.ns/c'" in (got["ns/c"].workers_error or "")
