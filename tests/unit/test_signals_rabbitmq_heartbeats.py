"""The worker book: Celery's worker events folded into per-pool load, by pure rules.

Events are shaped as Celery's EventReceiver hands them over (type, hostname, clock, pid,
utcoffset, local_received next to the payload); the real transports are exercised in
tests/integration/test_signals_rabbitmq_heartbeats.py.
"""

from __future__ import annotations

from typing import Any

from celeriac.signals.heartbeats import (
    HEARTBEAT,
    LOAD_REPORT,
    OFFLINE,
    HeartbeatListener,
    WorkerBook,
)
from celeriac.signals.reader import PoolQuery

NOW = 1_800_000_000.0


def _heartbeat(hostname: str, active: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": HEARTBEAT,
        "hostname": hostname,
        "active": active,
        "processed": 40,
        "loadavg": [0.5, 0.4, 0.3],
        "freq": 2.0,
        "timestamp": NOW,
        "utcoffset": 0,
        "pid": 7,
        "clock": 12,
        "local_received": NOW,
        "sw_ident": "py-celery",
        **extra,
    }


def _report(hostname: str, pool: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": LOAD_REPORT,
        "hostname": hostname,
        "pool": pool,
        "pod": hostname.split("@", 1)[1],
        "running": 3,
        "reserved": 4,
        "pool_size": 4,
        "range_min": 1,
        "range_max": 6,
        "cpu_percent": 71.5,
        "processed_total": 900,
        "mean_task_seconds": 1.5,
        "ts": NOW,
        "utcoffset": 0,
        "pid": 7,
        "clock": 13,
        "timestamp": NOW,
        "local_received": NOW,
        **extra,
    }


def test_stock_heartbeats_answer_for_the_hostnames_asked_only() -> None:
    book = WorkerBook()
    book.apply(_heartbeat("celery@web-1", 2), NOW)
    book.apply(_heartbeat("celery@other-1", 5), NOW)
    (beat,) = book.heartbeats({"celery@web-1", "celery@web-2"}, NOW + 1)
    assert (beat.hostname, beat.active, beat.processed, beat.loadavg) == (
        "celery@web-1",
        2,
        40,
        (0.5, 0.4, 0.3),
    )


def test_the_latest_heartbeat_wins_and_offline_removes_at_once() -> None:
    book = WorkerBook()
    book.apply(_heartbeat("celery@web-1", 2), NOW)
    book.apply(_heartbeat("celery@web-1", 0), NOW + 2)
    assert [b.active for b in book.heartbeats({"celery@web-1"}, NOW + 3)] == [0]
    book.apply({"type": OFFLINE, "hostname": "celery@web-1", "timestamp": NOW + 4}, NOW + 4)
    assert book.heartbeats({"celery@web-1"}, NOW + 4) == []


def test_a_silent_worker_expires_after_the_stale_window() -> None:
    book = WorkerBook(stale_s=30)
    book.apply(_heartbeat("celery@web-1", 1), NOW)
    assert len(book.heartbeats({"celery@web-1"}, NOW + 30)) == 1
    assert book.heartbeats({"celery@web-1"}, NOW + 30.5) == []


def test_load_reports_belong_to_the_pool_they_name() -> None:
    book = WorkerBook()
    book.apply(_report("celery@a-1", "ns/a"), NOW)
    book.apply(_report("celery@a-2", "ns/a", running=0), NOW)
    book.apply(_report("celery@b-1", "other/b"), NOW)
    loads = book.loads("ns/a", NOW + 1)
    assert [(w.hostname, w.pod, w.running, w.pool_size, w.range_max) for w in loads] == [
        ("celery@a-1", "a-1", 3, 4, 6),
        ("celery@a-2", "a-2", 0, 4, 6),
    ]
    assert book.loads("ns/missing", NOW + 1) == []


def test_hostile_or_malformed_events_are_ignored() -> None:
    book = WorkerBook()
    # A worker reporting for another pod, a negative count, no pool, no hostname at all.
    book.apply(_report("celery@a-1", "ns/a"), NOW)
    book.apply(_report("celery@evil", "ns/a", pod="a-1", running=1000), NOW)
    book.apply(_report("celery@a-2", "ns/a", running=-5), NOW)
    book.apply({k: v for k, v in _report("celery@a-3", "ns/a").items() if k != "pool"}, NOW)
    book.apply({"type": HEARTBEAT, "active": 9}, NOW)
    book.apply(_heartbeat("celery@a-4", "lots"), NOW)
    assert [w.hostname for w in book.loads("ns/a", NOW)] == ["celery@a-1"]
    assert book.heartbeats({"celery@a-4", "celery@evil"}, NOW) == []


def test_workers_are_unknown_not_empty_while_the_broker_is_unreachable() -> None:
    listener = HeartbeatListener(warm_up_s=0)
    query = PoolQuery(pool_id="ns/p", broker_url="amqp://guest:s3cret@127.0.0.1:1//", queues=("q",))
    try:
        workers, error = listener.worker_source(query, NOW)
        assert workers is None
        assert error is not None
        assert "127.0.0.1:1" in error
        assert "s3cret" not in error
    finally:
        listener.close()
