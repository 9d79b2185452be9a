"""The reference worker app plus a task that holds memory, for the memory-aware growth test."""

from __future__ import annotations

import time

from celeriac_worker.celery_app import app

HOLD_MEMORY = "tests.hold_memory"


@app.task(name=HOLD_MEMORY)
def hold_memory(megabytes: int, seconds: float) -> int:
    block = bytearray(megabytes << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1  # resident, not just reserved
    time.sleep(seconds)
    return len(block) >> 20
