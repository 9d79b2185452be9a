"""The reference worker app plus the benchmark's tasks; BENCH_STOCK_AUTOSCALER=1 swaps in Celery's own.

Every task returns when it started and ended in its pool process, so the benchmark reads
queue waits without any worker-side metrics (the stock autoscaler has none).
"""

from __future__ import annotations

import os
import time
from typing import Any

from celeriac_worker.celery_app import app

if os.environ.get("BENCH_STOCK_AUTOSCALER"):
    app.conf.worker_autoscaler = "celery.worker.autoscale:Autoscaler"


def _span(started: float) -> dict[str, Any]:
    return {"started": started, "ended": time.time(), "pid": os.getpid()}


@app.task(name="bench.sleep")
def sleep(seconds: float) -> dict[str, Any]:
    started = time.time()
    time.sleep(seconds)
    return _span(started)


@app.task(name="bench.spin")
def spin(cpu_seconds: float) -> dict[str, Any]:
    """Burns `cpu_seconds` of this process's CPU time (longer in wall time when cores are shared)."""
    started = time.time()
    end = time.process_time() + cpu_seconds
    n = 0
    while time.process_time() < end:
        n += sum(i * i for i in range(500))
    return _span(started)


@app.task(name="bench.hold")
def hold(megabytes: int, seconds: float) -> dict[str, Any]:
    """Holds `megabytes` of touched memory for `seconds`, like a task loading a large file."""
    started = time.time()
    block = bytearray(megabytes << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1  # touch every page so it is resident, not just reserved
    time.sleep(seconds)
    del block
    return _span(started)
