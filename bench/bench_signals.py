"""How long one tick's signal read takes for many pools: 500 pools x 3 queues by default.

Starts its own redis-server on loopback, fills it with queued messages, unacked entries and
worker load reports, then reads every pool with BacklogReader and prints round trips and
wall time per tick (median and p95 over the ticks). Results: bench/results/signals.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import redis
from redis.utils import HIREDIS_AVAILABLE

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.redis_server import running_redis  # noqa: E402

from celeriac.signals.reader import BacklogReader, PoolQuery  # noqa: E402


def message(queue: str, published_at: float) -> bytes:
    """A task message as Celery 5 (protocol 2) and kombu put it on a Redis list (~1 KB)."""
    task_id = "d3b07384-d9a0-4c9b-8f1e-6b2a3f1c9e10"
    return json.dumps(
        {
            "body": "W1siaW52b2ljZS0xMjM0NSJdLCB7InVzZXJfaWQiOiA0MiwgImZvcm1hdCI6ICJwZGYifSwgeyJjYWxsYmFja3MiOiBudWxsLCAiZXJyYmFja3MiOiBudWxsLCAiY2hhaW4iOiBudWxsLCAiY2hvcmQiOiBudWxsfV0=",
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py",
                "task": "billing.tasks.render_invoice",
                "id": task_id,
                "shadow": None,
                "eta": None,
                "expires": None,
                "group": None,
                "group_index": None,
                "retries": 0,
                "timelimit": [None, None],
                "root_id": task_id,
                "parent_id": None,
                "argsrepr": "('invoice-12345',)",
                "kwargsrepr": "{'user_id': 42, 'format': 'pdf'}",
                "origin": "gen1@api-7d9f8b6c5-x2k4z",
                "ignore_result": False,
                "replaced_task_nesting": 0,
                "stamped_headers": None,
                "stamps": {},
                "celeriac_published_at": published_at,
            },
            "properties": {
                "correlation_id": task_id,
                "reply_to": "5f1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8",
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": "0f4c2a1e-8b7d-4e3f-9a6b-1c2d3e4f5a6b",
            },
        }
    ).encode()


def populate(
    client: redis.Redis, pools: int, queues: int, per_queue: int, unacked: int, workers: int
) -> None:
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for p in range(pools):
        for q in range(queues):
            name = f"p{p}-q{q}"
            pipe.lpush(name, *[message(name, now - i) for i in range(per_queue)])
            if q == 0:
                pipe.lpush(f"{name}\x06\x166", message(name, now))
        for w in range(workers):
            doc = {
                "hostname": f"celery@p{p}-w{w}",
                "pod": f"p{p}-w{w}",
                "running": 1,
                "reserved": 1,
                "pool_size": 2,
                "range_min": 1,
                "range_max": 4,
                "cpu_percent": 50.0,
                "ts": now + 3600,
            }
            pipe.hset(f"celeriac.workers.ns/p{p}", f"celery@p{p}-w{w}", json.dumps(doc))
    for i in range(unacked):
        queue = f"p{i % pools}-q{i % queues}"
        pipe.hset("unacked", f"tag-{i}", json.dumps([json.loads(message(queue, now)), "", queue]))
    pipe.execute()


class WireCounter:
    """Counts command batches written to Redis: a pipeline is one, so this is round trips."""

    def __init__(self) -> None:
        self.sends = 0
        original = redis.connection.AbstractConnection.send_packed_command

        def counting(conn: object, command: object, check_health: bool = True) -> None:
            self.sends += 1
            original(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counting


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pools", type=int, default=500)
    parser.add_argument("--queues", type=int, default=3)
    parser.add_argument("--per-queue", type=int, default=20, help="waiting messages per queue")
    parser.add_argument("--unacked", type=int, default=2000, help="reserved messages in total")
    parser.add_argument("--workers", type=int, default=2, help="load reports per pool")
    parser.add_argument("--ticks", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "signals.md")
    args = parser.parse_args()

    with running_redis() as server:
        client = server.client()
        populate(client, args.pools, args.queues, args.per_queue, args.unacked, args.workers)
        queries = [
            PoolQuery(
                pool_id=f"ns/p{p}",
                broker_url=server.url,
                queues=tuple(f"p{p}-q{q}" for q in range(args.queues)),
            )
            for p in range(args.pools)
        ]
        reader = BacklogReader(timeout_s=10)
        reader.read(queries)  # connect once, as the operator does
        stats_before = client.info("stats")
        wire = WireCounter()
        times = []
        for _ in range(args.ticks):
            started = time.perf_counter()
            got = reader.read(queries)
            times.append(time.perf_counter() - started)
        trips = wire.sends / args.ticks
        stats_after = client.info("stats")
        commands = (
            stats_after["total_commands_processed"] - stats_before["total_commands_processed"] - 1
        ) / args.ticks
        sent_mb = (
            (stats_after["total_net_output_bytes"] - stats_before["total_net_output_bytes"])
            / args.ticks
            / 1e6
        )
        sample = got["ns/p0"]
        assert sample.queues is not None
        assert sample.backlog == args.per_queue * args.queues + 1 + sum(
            1 for i in range(args.unacked) if i % args.pools == 0
        )

    parser_name = "hiredis" if HIREDIS_AVAILABLE else "pure Python (hiredis not installed)"
    times.sort()
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    lines = [
        f"# Signal read: {args.pools} pools x {args.queues} queues on one Redis",
        "",
        f"{args.per_queue} waiting messages per queue, one priority sub-list each, {args.unacked} unacked entries, "
        f"{args.workers} worker load reports per pool; {args.ticks} ticks; on the 2-core development machine; `python bench/bench_signals.py`.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| round trips per tick (command batches sent, counted on the wire) | {trips:g} |",
        f"| Redis commands per tick | {commands:.0f} |",
        f"| bytes from Redis per tick | {sent_mb:.1f} MB |",
        f"| wall time per tick, median | {statistics.median(times) * 1000:.0f} ms |",
        f"| wall time per tick, p95 | {p95 * 1000:.0f} ms |",
        f"| per pool, median | {statistics.median(times) / args.pools * 1e6:.0f} us |",
        "",
        f"redis-py {redis.__version__}, reply parser: {parser_name}; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at the end.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
