"""Reading Celery protocol 2 messages and worker reports: ages, ETAs, routing keys, staleness."""

from __future__ import annotations

import json
from typing import Any

from celeriac.signals.celery_message import (
    due_age_s,
    eta_is_future,
    eta_timestamp,
    oldest_due_age,
    unacked_key_eta,
)
from celeriac.signals.model import WorkerLoad
from celeriac.signals.reader import BacklogReader, PoolQuery
from tests.support.redis_server import running_redis

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def envelope(eta: str | None = None, published_at: float | None = None) -> dict[str, Any]:
    headers: dict[str, Any] = {"lang": "py", "task": "t", "id": "1", "eta": eta, "expires": None}
    if published_at is not None:
        headers["celeriac_published_at"] = published_at
    return {"body": "W1tdLCB7fSwge31d", "headers": headers, "properties": {"priority": 0}}


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_eta_is_read_with_or_without_a_zone() -> None:
    assert eta_timestamp({"eta": "2023-11-14T22:13:30+00:00"}) == NOW + 10
    assert eta_timestamp({"eta": "2023-11-15T00:13:30+02:00"}) == NOW + 10
    assert eta_timestamp({"eta": "2023-11-14T22:13:30"}) == NOW + 10
    assert eta_timestamp({"eta": None}) is None
    assert eta_timestamp({"eta": "soon"}) is None


def test_a_due_message_is_aged_by_its_publish_header() -> None:
    assert due_age_s(raw(envelope(published_at=NOW - 42.5)), NOW) == (True, 42.5)
    assert due_age_s(
        raw(envelope(eta="2023-11-14T22:13:10+00:00", published_at=NOW - 60)), NOW
    ) == (
        True,
        60.0,
    )


def test_a_future_eta_is_not_due_and_no_header_is_unknown_not_zero() -> None:
    assert due_age_s(
        raw(envelope(eta="2023-11-14T22:13:30+00:00", published_at=NOW - 60)), NOW
    ) == (
        False,
        None,
    )
    assert due_age_s(raw(envelope()), NOW) == (True, None)
    assert due_age_s(b"not json", NOW) == (True, None)


def test_the_oldest_due_message_decides_even_without_a_header() -> None:
    # LRANGE order: newest first, oldest last.
    future = raw(envelope(eta="2023-11-14T23:00:00+00:00", published_at=NOW - 900))
    young = raw(envelope(published_at=NOW - 3))
    old = raw(envelope(published_at=NOW - 30))
    assert oldest_due_age([young, old, future], NOW) == 30.0
    # A due message without the header is older than `young`: its age is unknown.
    assert oldest_due_age([young, raw(envelope()), future], NOW) is None
    assert oldest_due_age([future], NOW) is None


def test_unacked_values_give_routing_key_and_whether_held_for_later() -> None:
    due = raw([envelope(published_at=NOW), "", "reports"])
    later = raw([envelope(eta="2023-11-14T22:20:00+00:00"), "", "emails"])
    assert unacked_key_eta(due) == ("reports", "")
    assert unacked_key_eta(later) == ("emails", "2023-11-14T22:20:00+00:00")
    assert eta_is_future("2023-11-14T22:20:00+00:00", NOW)
    assert not eta_is_future("", NOW)
    assert unacked_key_eta(raw(envelope())) == ("", "")
    assert unacked_key_eta(b"\xff") == ("", "")


def test_stale_and_malformed_worker_reports_are_dropped() -> None:
    def report(host: str, ts: float) -> str:
        doc = WorkerLoad(hostname=host, running=1, pool_size=2, range_min=1, range_max=4, ts=ts)
        return doc.model_dump_json()

    with running_redis() as server:
        server.client().hset(
            "celeriac.workers.ns/p",
            mapping={
                "celery@fresh": report("celery@fresh", NOW - 2),
                "celery@edge": report("celery@edge", NOW - 30),
                "celery@gone": report("celery@gone", NOW - 31),
                "celery@broken": '{"hostname": "celery@broken"}',
            },
        )
        reader = BacklogReader(clock=lambda: NOW, worker_stale_s=30)
        got = reader.read([PoolQuery(pool_id="ns/p", broker_url=server.url, queues=("q",))])
        reader.close()
    signals = got["ns/p"]
    assert signals.observed_at == NOW
    assert signals.workers is not None
    assert [w.hostname for w in signals.workers] == ["celery@edge", "celery@fresh"]
    assert [w.ts for w in signals.workers] == [NOW - 30, NOW - 2]


def test_a_future_eta_at_the_old_end_is_looked_past_from_the_next_read_on() -> None:
    with running_redis() as server:
        client = server.client()
        # LPUSH order: the ETA task is the oldest (rightmost), then two due tasks.
        client.lpush(
            "q",
            raw(envelope(eta="2023-11-14T23:00:00+00:00", published_at=NOW - 900)),
            raw(envelope(published_at=NOW - 50)),
            raw(envelope(published_at=NOW - 10)),
        )
        reader = BacklogReader(clock=lambda: NOW)
        query = PoolQuery(pool_id="ns/p", broker_url=server.url, queues=("q",))

        def age() -> float | None:
            queues = reader.read([query])["ns/p"].queues
            assert queues is not None
            return queues[0].oldest_age_s

        assert age() is None  # one message read: a future ETA, so unknown, not late
        assert age() == 50.0  # the next read scans past it
        assert age() == 50.0
        client.rpop("q")  # a worker took the ETA task
        assert age() == 50.0
        client.rpop("q")
        assert age() == 10.0
        reader.close()


def stock_envelope(task_id: str) -> dict[str, Any]:
    """A stock Celery app's message: protocol 2 headers, no publish time."""
    doc = envelope()
    doc["headers"]["id"] = task_id
    return doc


def test_a_stock_apps_oldest_task_is_aged_from_when_it_was_first_seen_as_a_lower_bound() -> None:
    with running_redis() as server:
        client = server.client()
        client.lpush("q", raw(stock_envelope("a")), raw(stock_envelope("b")))
        now = [NOW]
        reader = BacklogReader(clock=lambda: now[0])
        query = PoolQuery(pool_id="ns/p", broker_url=server.url, queues=("q",))

        def oldest() -> tuple[float | None, bool]:
            queues = reader.read([query])["ns/p"].queues
            assert queues is not None
            return queues[0].oldest_age_s, queues[0].oldest_age_is_lower_bound

        assert oldest() == (0.0, True)  # first seen now: at least 0 s old
        now[0] = NOW + 7
        assert oldest() == (7.0, True)
        client.rpop("q")  # "a" taken: "b" is the new head, first seen now
        now[0] = NOW + 9
        assert oldest() == (0.0, True)
        now[0] = NOW + 12
        assert oldest() == (3.0, True)
        client.rpop("q")
        assert oldest() == (None, False)
        client.lpush("q", raw(envelope(published_at=NOW)))  # the library's header wins
        assert oldest() == (12.0, False)
        reader.close()
