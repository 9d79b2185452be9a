"""RabbitMQ conventions and the reader's rules, without a broker.

Pure parts (URLs, vhosts, the queue list) are called directly; the error paths of the
HTTP edge run against a loopback server that answers as a broken or hostile management
API would (the real broker's answers are in tests/integration/test_signals_rabbitmq*.py).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from celeriac.api.pool import CeleryWorkerPoolSpec
from celeriac.controller import gather
from celeriac.signals import rabbitmq_api, rabbitmq_wakeup
from celeriac.signals.rabbitmq import RabbitMQReader, parse_queue_list, pool_backlog
from celeriac.signals.rabbitmq_client import MAX_REPLY_BYTES, ManagementError
from celeriac.signals.reader import PoolQuery

NOW = 1_800_000_000.0


# --- URLs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "vhost"),
    [
        ("amqp://u:p@h:5672", "/"),
        ("amqp://u:p@h:5672/", "/"),
        ("amqp://u:p@h:5672//", "/"),
        ("amqp://u:p@h:5672/%2F", "/"),
        ("amqp://u:p@h/tenant-a", "tenant-a"),
        ("amqps://u:p@h/with%20space", "with space"),
    ],
)
def test_vhost_is_read_from_the_url_path_as_kombu_does(url: str, vhost: str) -> None:
    assert rabbitmq_api.vhost_of(url) == vhost


def test_the_default_endpoint_is_the_broker_host_with_the_broker_user() -> None:
    plain = rabbitmq_api.endpoint("amqp://celery:s%40cret@rabbit.ns.svc:5672//")
    assert (plain.base_url, plain.username, plain.password) == (
        "http://rabbit.ns.svc:15672",
        "celery",
        "s@cret",
    )
    tls = rabbitmq_api.endpoint("amqps://celery:x@rabbit:5671//")
    assert tls.base_url == "https://rabbit:15671"


def test_credentials_in_the_management_url_win_over_the_broker_user() -> None:
    where = rabbitmq_api.endpoint("amqp://app:a@rabbit//", "https://mon:m%3Ap@mgmt.example:8443/")
    assert (where.base_url, where.username, where.password) == (
        "https://mgmt.example:8443",
        "mon",
        "m:p",
    )
    assert "m:p" not in where.label
    assert "mon" not in where.label


def test_management_url_carries_secret_credentials_quoted_and_reparses_to_them() -> None:
    url = rabbitmq_api.management_url("amqp://app:a@rabbit//", None, "mon@x", "p/w:d")
    where = rabbitmq_api.endpoint("amqp://app:a@rabbit//", url)
    assert (where.base_url, where.username, where.password) == (
        "http://rabbit:15672",
        "mon@x",
        "p/w:d",
    )


def test_a_management_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        rabbitmq_api.endpoint("amqp://a:b@h//", "ftp://h:21")


def test_one_vhost_is_one_path_with_only_the_columns_read() -> None:
    path = rabbitmq_api.queues_path("/")
    assert path.startswith("/api/queues/%2F?columns=name,messages_ready,")
    assert "head_message_timestamp" in path
    assert rabbitmq_api.queues_path("a/b").startswith("/api/queues/a%2Fb?")


# --- the queue list ------------------------------------------------------------


def _row(name: str, ready: int | None = 0, unacked: int | None = 0, **extra: object) -> dict:
    return {"name": name, "messages_ready": ready, "messages_unacknowledged": unacked, **extra}


def _query(*queues: str) -> PoolQuery:
    return PoolQuery(pool_id="ns/p", broker_url="amqp://a:b@h//", queues=queues)


def test_backlog_is_ready_plus_unacknowledged_with_rates_and_consumers() -> None:
    raw = json.dumps(
        [
            _row(
                "celery",
                7,
                8,
                consumers=2,
                head_message_timestamp=NOW - 12,
                message_stats={
                    "publish_details": {"rate": 3.5},
                    "deliver_get_details": {"rate": 2.0},
                },
            ),
            _row("other", 100, 100),
        ]
    ).encode()
    rows, invalid = parse_queue_list(raw)
    queues, error = pool_backlog(_query("celery"), rows, invalid, NOW)
    assert error is None
    assert queues is not None
    (q,) = queues
    assert (q.waiting, q.reserved, q.total, q.consumers) == (7, 8, 15, 2)
    assert (q.publish_rate_per_s, q.deliver_rate_per_s) == (3.5, 2.0)
    assert q.oldest_age_s == 12.0


def test_a_queue_not_declared_yet_is_empty_but_one_without_stats_is_unknown() -> None:
    rows, invalid = parse_queue_list(json.dumps([{"name": "fresh"}]).encode())
    queues, error = pool_backlog(_query("never-used"), rows, invalid, NOW)
    assert error is None
    assert queues is not None
    assert (queues[0].total, queues[0].consumers) == (0, 0)
    queues, error = pool_backlog(_query("never-used", "fresh"), rows, invalid, NOW)
    assert queues is None
    assert error is not None
    assert "'fresh'" in error


def test_age_is_unknown_without_a_timestamp_and_absent_when_nothing_waits() -> None:
    rows, invalid = parse_queue_list(
        json.dumps(
            [
                _row("untimed", 5, 0, head_message_timestamp=None),
                _row("empty", 0, 3, head_message_timestamp=NOW - 50),
                _row("future", 1, 0, head_message_timestamp=NOW + 30),
                _row(
                    "urgent-first",
                    3,
                    0,
                    head_message_timestamp=NOW - 20,
                    arguments={"x-max-priority": 10},
                ),
            ]
        ).encode()
    )
    names = ("untimed", "empty", "future", "urgent-first")
    queues, _ = pool_backlog(_query(*names), rows, invalid, NOW)
    assert queues is not None
    # A priority queue's head is its most urgent message, maybe not its oldest: unknown.
    assert [q.oldest_age_s for q in queues] == [None, None, 0.0, None]
    assert queues[3].waiting == 3


@pytest.mark.parametrize(
    "bad",
    [
        _row("celery", -1, 0),
        _row("celery", "many", 0),
        {"name": "celery", "messages_ready": 1, "messages_unacknowledged": 2**70 * 1.5},
    ],
)
def test_a_row_that_does_not_validate_makes_its_pools_backlog_unknown(bad: dict) -> None:
    rows, invalid = parse_queue_list(json.dumps([bad, _row("fine", 1, 1)]).encode())
    queues, error = pool_backlog(_query("celery"), rows, invalid, NOW)
    assert queues is None
    assert error is not None
    assert "'celery'" in error
    others, _ = pool_backlog(_query("fine"), rows, invalid, NOW)
    assert others is not None
    assert others[0].total == 2


def test_a_queue_listed_twice_is_not_trusted() -> None:
    rows, invalid = parse_queue_list(json.dumps([_row("q", 1, 0), _row("q", 9, 0)]).encode())
    queues, error = pool_backlog(_query("q"), rows, invalid, NOW)
    assert queues is None
    assert error is not None


@pytest.mark.parametrize("raw", [b"<html>", b'{"error": "x"}', b""])
def test_a_reply_that_is_not_a_queue_list_is_an_error(raw: bytes) -> None:
    with pytest.raises(ManagementError):
        parse_queue_list(raw)


# --- the HTTP edge's error paths -------------------------------------------------


@dataclass
class FakeManagement:
    """Answers every GET with `status` and `body` after `delay_s`; records what it got."""

    status: int = 200
    body: bytes = b"[]"
    delay_s: float = 0.0
    seen: list[tuple[str, str | None]] = field(default_factory=list)
    port: int = 0


@pytest.fixture
def fake() -> Iterator[FakeManagement]:
    state = FakeManagement()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            state.seen.append((self.path, self.headers.get("Authorization")))
            time.sleep(state.delay_s)
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(state.body)  # the reader may have hung up first

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _queries(fake: FakeManagement, n: int, user: str = "guest:s3cret") -> list[PoolQuery]:
    return [
        PoolQuery(
            pool_id=f"ns/p{i}",
            broker_url=f"amqp://{user}@127.0.0.1:5672//",
            queues=(f"p{i}-a", f"p{i}-b", f"p{i}-c"),
            management_url=f"http://127.0.0.1:{fake.port}",
        )
        for i in range(n)
    ]


def test_many_pools_on_one_broker_cost_one_request_with_keep_alive(fake: FakeManagement) -> None:
    fake.body = json.dumps([_row("p3-b", 4, 2)]).encode()
    reader = RabbitMQReader(clock=lambda: NOW)
    queries = _queries(fake, 200)
    for _ in range(3):
        got = reader.read(queries)
    assert len(fake.seen) == 3
    assert reader.requests == 3
    assert {path for path, _ in fake.seen} == {rabbitmq_api.queues_path("/")}
    assert got["ns/p3"].backlog == 6
    assert got["ns/p4"].backlog == 0
    reader.close()


def test_refused_credentials_read_stale_with_a_fix_and_no_secret(fake: FakeManagement) -> None:
    fake.status, fake.body = 401, b'{"error":"not_authorised","reason":"guest:s3cret"}'
    got = RabbitMQReader().read(_queries(fake, 2))
    for signals in got.values():
        assert signals.queues is None
        assert signals.backlog is None
        assert signals.backlog_error is not None
        assert "monitoring" in signals.backlog_error
        assert "s3cret" not in signals.backlog_error


def test_a_broker_that_does_not_answer_costs_the_tick_its_timeout_once(
    fake: FakeManagement,
) -> None:
    fake.delay_s = 30.0
    reader = RabbitMQReader(timeout_s=0.5)
    started = time.monotonic()
    got = reader.read(_queries(fake, 50))
    elapsed = time.monotonic() - started
    # One 0.5 s timeout: not one per pool (25 s), nor the broker's 30 s.
    assert elapsed < 10
    assert all(
        s.queues is None and "timeout" in (s.backlog_error or "").lower() for s in got.values()
    )
    reader.close()


def test_an_oversized_reply_is_refused(fake: FakeManagement) -> None:
    fake.body = b"[" + b" " * MAX_REPLY_BYTES + b"]"
    got = RabbitMQReader(timeout_s=10).read(_queries(fake, 1))
    assert got["ns/p0"].queues is None
    assert "more than" in (got["ns/p0"].backlog_error or "")


def test_a_dead_endpoint_names_where_without_credentials() -> None:
    query = PoolQuery(
        pool_id="ns/p",
        broker_url="amqp://guest:s3cret@127.0.0.1:1//",
        queues=("q",),
        management_url="http://127.0.0.1:1",
    )
    got = RabbitMQReader(timeout_s=0.5).read([query])["ns/p"]
    assert got.backlog is None
    assert "http://127.0.0.1:1" in (got.backlog_error or "")
    assert "s3cret" not in (got.backlog_error or "")


# --- wiring --------------------------------------------------------------------


def _spec(management: dict | None) -> CeleryWorkerPoolSpec:
    broker: dict = {"urlSecretRef": {"name": "b"}}
    if management is not None:
        broker["management"] = management
    return CeleryWorkerPoolSpec.model_validate(
        {"queues": ["q"], "template": {"image": "i", "app": "a"}, "broker": broker}
    )


def test_make_query_puts_the_secrets_management_credentials_in_memory_only() -> None:
    spec = _spec({"url": "http://mgmt:15672", "credentialsSecretRef": {"name": "mon"}})
    query = gather.make_query("ns/p", "amqp://app:x@rabbit//", spec, ("monitor", "pw"))
    where = rabbitmq_api.endpoint(query.broker_url, query.management_url)
    assert (where.base_url, where.username, where.password) == (
        "http://mgmt:15672",
        "monitor",
        "pw",
    )
    assert "monitor" not in repr(query)


def test_make_query_leaves_redis_pools_and_plain_amqp_pools_alone() -> None:
    redis_query = gather.make_query("ns/r", "redis://h:6379/0", _spec({"url": "http://m:1"}))
    assert redis_query.management_url is None
    amqp_query = gather.make_query("ns/a", "amqp://u:p@h//", _spec(None))
    assert amqp_query.management_url is None


def test_read_many_sends_each_query_to_its_brokers_reader(fake: FakeManagement) -> None:
    fake.body = json.dumps([_row("p0-a", 2, 1)]).encode()
    amqp = _queries(fake, 1)[0]
    redis_query = PoolQuery(pool_id="ns/r", broker_url="redis://127.0.0.1:1/0", queues=("q",))
    got = gather.read_many([redis_query, amqp])
    assert got[1].backlog == 3
    assert got[0].backlog is None  # nothing listens on port 1: stale, from the Redis reader
    assert "127.0.0.1:1" in (got[0].backlog_error or "")


# --- wake-ups ------------------------------------------------------------------


def test_wakeup_counts_read_each_queues_publish_total_and_skip_bad_rows() -> None:
    raw = json.dumps(
        [
            {"name": "a", "message_stats": {"publish": 7}},
            {"name": "fresh"},  # no message yet: no stats
            {"name": "bad", "message_stats": {"publish": -3}},
            {"name": "worse", "message_stats": {"publish": True}},
            {"message_stats": {"publish": 1}},
            "junk",
        ]
    ).encode()
    assert rabbitmq_wakeup.publish_counts(raw) == {"a": 7, "fresh": 0}
    assert rabbitmq_wakeup.publish_path("/") == "/api/queues/%2F?columns=name,message_stats.publish"


def test_wakeup_fires_for_queues_that_grew_since_the_last_poll_only() -> None:
    assert rabbitmq_wakeup.grown(None, {"a": 5}) == set()  # a baseline, not news
    before = {"a": 5, "b": 2, "gone": 1}
    after = {"a": 5, "b": 3, "new": 1, "empty-new": 0}
    assert rabbitmq_wakeup.grown(before, after) == {"b", "new"}
    # Deleted and declared again: the count restarted, and what it holds now is new.
    assert rabbitmq_wakeup.grown({"a": 50}, {"a": 2}) == {"a"}
