"""A tiny Celery app for the signal tests: tasks that finish only when the test says so.

`gate` blocks on a Redis list until the test pushes a token, then counts itself done, so a
test knows exactly how many tasks are unfinished at any moment. Publishing stamps the
header the worker image stamps (connect `stamp_publish_time` to `before_task_publish` in
the publishing process), so ages are measured the way production measures them.
Broker from CELERY_BROKER_URL; prefetch multiplier 4 and acks_late as in the tests' brief.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery

from celeriac.signals.kombu_keys import PUBLISHED_AT_HEADER

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
GATE_KEY = "signals-test:gate"
DONE_KEY = "signals-test:done"

app = Celery("signals_app", broker=BROKER_URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=4,
    task_acks_late=True,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
)
if os.environ.get("SIGNALS_APP_KEYPREFIX"):
    app.conf.broker_transport_options = {"global_keyprefix": os.environ["SIGNALS_APP_KEYPREFIX"]}


def stamp_publish_time(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        headers.setdefault(PUBLISHED_AT_HEADER, time.time())


@app.task(name="signals.gate")
def gate() -> None:
    client = redis.Redis.from_url(BROKER_URL)
    # Bounded so a forgotten token cannot keep a worker process alive after the test.
    client.blpop([GATE_KEY], timeout=120)
    client.incr(DONE_KEY)
