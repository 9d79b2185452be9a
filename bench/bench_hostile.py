"""Operator memory under hostile brokers (issue #14): the signal read's peak RSS while 100 pools tick.

Two scenarios on one redis-server started on loopback, 100 pools of 3 queues each:

- payloads: every pool's 3 queues hold small tasks, and 3 of the queues also hold a 10 MB
  task at their old end, with 3 more 10 MB tasks delivered and unacked (and one with a
  future ETA);
- forged: one pool's report hash holds 500,000 forged reports, each pool 2 real ones.

Each scenario runs in a fresh child process that ticks every pool `--ticks` times through
BacklogReader (as the operator's batcher does) and reports its peak RSS (VmHWM), the
RSS after imports, and the tick time. `--python` runs the same child with another
interpreter (e.g. the main branch's venv) for a before/after table.
Results: bench/results/hostile.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MB = 1024 * 1024
POOLS = 100
QUEUES = 3
FORGED = 500_000


def envelope(queue: str, body_bytes: int, published_at: float, eta: str | None = None) -> bytes:
    return json.dumps(
        {
            "body": "A" * body_bytes,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"task": "t", "id": "x", "eta": eta, "celeriac_published_at": published_at},
            "properties": {
                "delivery_info": {"exchange": "", "routing_key": queue},
                "body_encoding": "base64",
            },
        }
    ).encode()


def report(pod: str, now: float) -> bytes:
    doc = {
        "hostname": f"celery@{pod}",
        "pod": pod,
        "running": 1,
        "reserved": 1,
        "pool_size": 2,
        "range_min": 1,
        "range_max": 4,
        "ts": now,
    }
    return json.dumps(doc).encode()


def queue_name(pool: int, q: int) -> str:
    return f"p{pool}-q{q}"


def fill(url: str, scenario: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushall()
    now = time.time()
    pipe = client.pipeline(transaction=False)
    for pool in range(POOLS):
        for q in range(QUEUES):
            pipe.lpush(queue_name(pool, q), *[envelope(queue_name(pool, q), 700, now)] * 20)
        for w in range(2):
            pipe.hset(
                f"celeriac.workers.ns/p{pool}", f"celery@p{pool}-w{w}", report(f"p{pool}-w{w}", now)
            )
    pipe.execute()
    if scenario == "payloads":
        for q in range(QUEUES):
            name = queue_name(0, q)
            client.rpush(name, envelope(name, 10 * MB, now - 60))  # the oldest: read every tick
            unacked = [json.loads(envelope(name, 10 * MB, now)), "", name]
            client.hset("unacked", f"tag-{q}", json.dumps(unacked))
        later = json.loads(envelope(queue_name(0, 0), 10 * MB, now, eta="2100-01-01T00:00:00"))
        client.hset("unacked", "tag-later", json.dumps([later, "", queue_name(0, 0)]))
    else:
        forged = report("forged", now)
        for start in range(0, FORGED, 50_000):
            pipe = client.pipeline(transaction=False)
            for i in range(start, start + 50_000):
                pipe.hset("celeriac.workers.ns/p0", f"celery@forged-{i}", forged)
            pipe.execute()


def status_mb(field: str) -> float:
    """VmRSS or VmHWM of this process: unlike ru_maxrss, not floored by the parent's at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(field)


def child(url: str, ticks: int) -> None:
    """Runs in the measured process: imports, then ticks every pool."""
    from celeriac.signals.reader import BacklogReader, PoolQuery

    queries = [
        PoolQuery(
            pool_id=f"ns/p{pool}",
            broker_url=url,
            queues=tuple(queue_name(pool, q) for q in range(QUEUES)),
        )
        for pool in range(POOLS)
    ]
    base_mb = status_mb("VmRSS")
    reader = BacklogReader(timeout_s=30)
    seconds = []
    workers = backlog = 0
    for _ in range(ticks):
        started = time.perf_counter()
        got = reader.read(queries)
        seconds.append(time.perf_counter() - started)
        workers = sum(len(s.workers or []) for s in got.values())
        backlog = sum(s.backlog or 0 for s in got.values())
    peak_mb = status_mb("VmHWM")
    print(
        json.dumps(
            {
                "base_mb": base_mb,
                "peak_mb": peak_mb,
                "tick_median_s": statistics.median(seconds),
                "tick_max_s": max(seconds),
                "workers": workers,
                "backlog": backlog,
                "round_trips": reader.round_trips,
            }
        )
    )


def measure(python: str, url: str, ticks: int) -> dict[str, float]:
    out = subprocess.run(
        [python, __file__, "--child", url, "--ticks", str(ticks)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    from tests.support.redis_server import running_redis

    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--python", action="append", default=[], help="label=interpreter")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.ticks)
        return
    interpreters = [("this branch", sys.executable)] + [tuple(p.split("=", 1)) for p in args.python]
    rows = []
    with running_redis() as server:
        # The same reads where an ACL refuses scripts: the plain path and its byte budget.
        server.client().execute_command(
            "ACL", "SETUSER", "noscripts", "on", ">pw", "~*", "&*", "+@all", "-@scripting"
        )
        plain_url = f"redis://noscripts:pw@127.0.0.1:{server.port}/0"
        runs = [(label, python, server.url) for label, python in interpreters]
        runs.insert(1, ("this branch, scripts refused", sys.executable, plain_url))
        for scenario in ("payloads", "forged"):
            for label, python, url in runs:
                fill(server.url, scenario)  # fresh report times for each run
                got = measure(python, url, args.ticks)
                rows.append((scenario, label, got))
                print(scenario, label, json.dumps(got), flush=True)
    lines = [
        "| scenario | code | peak RSS MB | RSS after imports MB | tick median s | tick max s "
        "| workers believed | backlog | round trips |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for scenario, label, got in rows:
        lines.append(
            f"| {scenario} | {label} | {got['peak_mb']:.0f} | {got['base_mb']:.0f} | "
            f"{got['tick_median_s']:.2f} | {got['tick_max_s']:.2f} | {got['workers']:.0f} | "
            f"{got['backlog']:.0f} | {got['round_trips']:.0f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
