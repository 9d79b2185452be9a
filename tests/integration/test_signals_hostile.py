"""Hostile brokers against a real redis-server (issue #14, 3 and 4).

Task bodies of 10 MB, a report hash flooded with 500,000 forged fields, reports with
out-of-bound values, a server whose ACL refuses scripts, a wrong password: each tick's
memory stays bounded, what the signal needs is still read, and no error carries a byte
of the broker URL beyond scheme, host and port.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis

from celeriac.signals import kombu_keys
from celeriac.signals.reader import BacklogReader, PoolQuery
from tests.support.memory import peak_rss_growth_mb
from tests.support.redis_server import RedisServer, running_redis

MB = 1024 * 1024
QUEUES = ("q1", "q2", "q3")
NOW = time.time()
TOKEN = "pw-S3cret-9f8e7d6c"


def envelope(body_bytes: int, queue: str, published_at: float, eta: str | None = None) -> bytes:
    """A kombu envelope as Celery's Redis transport writes it: body first, base64."""
    doc = {
        "body": "A" * body_bytes,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "task": "t",
            "id": "x",
            "eta": eta,
            kombu_keys.PUBLISHED_AT_HEADER: published_at,
        },
        "properties": {
            "delivery_info": {"exchange": "", "routing_key": queue},
            "body_encoding": "base64",
        },
    }
    return json.dumps(doc).encode()


def fill_large_payloads(client: redis.Redis) -> None:
    """One 10 MB task waiting in each of 3 queues, and one 10 MB task of each held unacked."""
    for i, queue in enumerate(QUEUES):
        client.lpush(queue, envelope(10 * MB, queue, NOW - 30 - i))
        unacked = [json.loads(envelope(10 * MB, queue, NOW)), "", queue]
        client.hset(kombu_keys.UNACKED, f"tag-{queue}", json.dumps(unacked))
    later = json.loads(envelope(10 * MB, "q1", NOW, eta="2100-01-01T00:00:00+00:00"))
    client.hset(kombu_keys.UNACKED, "tag-later", json.dumps([later, "", "q1"]))


def query(server_url: str, pool: str = "ns/big") -> PoolQuery:
    return PoolQuery(pool_id=pool, broker_url=server_url, queues=QUEUES)


def test_ten_mb_bodies_on_three_queues_leave_redis_as_headers_only(
    redis_server: RedisServer,
) -> None:
    fill_large_payloads(redis_server.client())
    reader = BacklogReader(clock=lambda: NOW)
    reader.read([query(redis_server.url)])  # connects and loads the script
    with peak_rss_growth_mb() as growth:
        got = reader.read([query(redis_server.url)])["ns/big"]
    assert got.queues is not None
    by_queue = {q.queue: q for q in got.queues}
    assert [by_queue[q].waiting for q in QUEUES] == [1, 1, 1]
    assert [by_queue[q].reserved for q in QUEUES] == [1, 1, 1]
    assert by_queue["q1"].scheduled == 1  # its ETA header was read without its body
    assert [round(by_queue[q].oldest_age_s or 0) for q in QUEUES] == [30, 31, 32]
    # 70 MB of messages on the server; the old whole reads cost hundreds of MB per tick.
    assert growth[0] < 20, f"peak RSS rose {growth[0]:.0f} MB"
    assert reader.plain_servers == set()


@pytest.fixture
def no_scripts_redis() -> Iterator[tuple[RedisServer, str]]:
    """A server whose ACL gives the operator's user everything but scripting."""
    with running_redis() as server:
        server.client().execute_command(
            "ACL", "SETUSER", "operator", "on", f">{TOKEN}", "~*", "&*", "+@all", "-@scripting"
        )
        yield server, f"redis://operator:{TOKEN}@127.0.0.1:{server.port}/0"


def test_where_scripts_are_refused_plain_reads_stay_within_the_byte_budget(
    no_scripts_redis: tuple[RedisServer, str],
) -> None:
    server, url = no_scripts_redis
    client = server.client()
    client.lpush("q1", envelope(100, "q1", NOW - 12))
    client.lpush("q2", envelope(10 * MB, "q2", NOW - 30))
    reader = BacklogReader(clock=lambda: NOW)
    reader.read([query(url)])
    assert len(reader.plain_servers) == 1
    before = reader.round_trips
    with peak_rss_growth_mb() as growth:
        got = reader.read([query(url)])["ns/big"]
    assert reader.round_trips - before == 2  # sizes, then the reads that fit
    assert got.queues is not None
    by_queue = {q.queue: q for q in got.queues}
    assert round(by_queue["q1"].oldest_age_s or 0) == 12
    assert [by_queue[q].waiting for q in QUEUES] == [1, 1, 0]
    assert by_queue["q2"].oldest_age_s is None  # too large to read: unknown, never zero
    assert growth[0] < 20, f"peak RSS rose {growth[0]:.0f} MB"

    fill_large_payloads(client)  # 40 MB of unacked entries: past the 32 MB budget
    with peak_rss_growth_mb() as growth:
        held = reader.read([query(url)])["ns/big"]
    assert held.queues is None
    assert "allow EVALSHA" in (held.backlog_error or "")
    assert growth[0] < 20, f"peak RSS rose {growth[0]:.0f} MB"


def test_without_scripts_unacked_entries_too_large_are_skipped_and_counted_from_the_rest(
    no_scripts_redis: tuple[RedisServer, str],
) -> None:
    server, url = no_scripts_redis
    client = server.client()
    for i in range(3):
        small = [json.loads(envelope(100, "q1", NOW)), "", "q1"]
        client.hset(kombu_keys.UNACKED, f"small-{i}", json.dumps(small))
    big = [json.loads(envelope(10 * MB, "q2", NOW)), "", "q2"]
    client.hset(kombu_keys.UNACKED, "big", json.dumps(big))
    reader = BacklogReader(clock=lambda: NOW)
    reader.read([query(url)])
    with peak_rss_growth_mb() as growth:
        got = reader.read([query(url)])["ns/big"]
    assert got.queues is not None
    # 3 of 4 entries read; the 4th (never read) is counted in proportion to those read.
    assert sum(q.reserved for q in got.queues) == 4
    assert growth[0] < 20, f"peak RSS rose {growth[0]:.0f} MB"


def report(pod: str, **changes: object) -> bytes:
    doc: dict[str, object] = {
        "hostname": f"celery@{pod}",
        "pod": pod,
        "running": 1,
        "reserved": 1,
        "pool_size": 2,
        "range_min": 1,
        "range_max": 4,
        "ts": NOW,
    }
    doc.update(changes)
    return json.dumps(doc).encode()


def test_forged_reports_are_refused_field_by_field(redis_server: RedisServer) -> None:
    key = kombu_keys.worker_load_key("ns/p")
    redis_server.client().hset(
        key,
        mapping={
            "celery@real": report("real"),
            "inf": report("a", p99_task_seconds=float("inf")),
            "huge-running": report("b", running=1e9),
            "future": report("c", ts=NOW + 1e6),  # would never go stale
            "far-future": report("d", ts=1e18),
            "stale": report("e", ts=NOW - 3600),
            "nan-cpu": report("f", cpu_percent=float("nan")),
            "ten-mb": report("g", hostname="x" * 10 * MB),
            "not-json": b"{" * 1000,
        },
    )
    got = BacklogReader(clock=lambda: NOW).read(
        [PoolQuery(pool_id="ns/p", broker_url=redis_server.url, queues=("q",))]
    )["ns/p"]
    assert [w.hostname for w in got.workers or []] == ["celery@real"]
    assert got.worker_reports == 9
    assert got.worker_reports_refused == 8


def test_half_a_million_forged_reports_cost_a_bounded_read(redis_server: RedisServer) -> None:
    client = redis_server.client()
    key = kombu_keys.worker_load_key("ns/flooded")
    forged = report("forged")
    pipe = client.pipeline(transaction=False)
    for i in range(500_000):
        pipe.hset(key, f"celery@forged-{i}", forged)
        if i % 50_000 == 49_999:
            pipe.execute()
    pipe.execute()
    reader = BacklogReader(clock=lambda: NOW)
    queries = [PoolQuery(pool_id="ns/flooded", broker_url=redis_server.url, queues=("q",))]
    reader.read(queries)
    with peak_rss_growth_mb() as growth:
        got = reader.read(queries)["ns/flooded"]
    assert got.worker_reports == 500_000
    assert len(got.workers or []) == 1024  # the per-pool cap
    assert got.worker_reports_refused == 500_000 - 1024
    assert growth[0] < 20, f"peak RSS rose {growth[0]:.0f} MB"


def test_a_restarted_server_without_the_script_is_read_in_the_same_tick(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()
    client.lpush("q1", envelope(10, "q1", NOW - 5))
    reader = BacklogReader(clock=lambda: NOW)
    reader.read([query(redis_server.url)])
    client.script_flush()
    got = reader.read([query(redis_server.url)])["ns/big"]
    assert got.queues is not None
    assert got.backlog == 1


def test_a_wrong_password_is_reported_without_any_byte_of_it(redis_server: RedisServer) -> None:
    redis_server.client().config_set("requirepass", "the-right-one")
    server = redis_server
    url = f"redis://:{TOKEN}@127.0.0.1:{server.port}/0?client_name={TOKEN}"
    got = BacklogReader().read([query(url)])["ns/big"]
    message = got.backlog_error or ""
    assert message.startswith(f"broker redis://127.0.0.1:{server.port} unreadable:")
    for i in range(len(TOKEN) - 3):
        assert TOKEN[i : i + 4] not in message
