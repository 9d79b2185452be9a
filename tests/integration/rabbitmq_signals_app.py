"""A tiny Celery app on RabbitMQ for the signal tests: tasks that finish when the test says so.

The broker is RabbitMQ (CELERY_BROKER_URL); the gate is a Redis list (GATE_REDIS_URL),
so the test knows exactly how many tasks are unfinished at any moment. The queue is an
`x-max-priority` queue (a second one, `plain`, is not), workers prefetch 4 per process and
ack late.

`stamp_amqp_timestamp` is what the worker library is asked to do on RabbitMQ (connect it
to `before_task_publish` in the publishing process): set the AMQP `timestamp` property,
which RabbitMQ reports for the head message as `head_message_timestamp`.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery
from kombu import Exchange, Queue

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
GATE_REDIS_URL = os.environ.get("GATE_REDIS_URL", "redis://127.0.0.1:6379/0")
GATE_KEY = "rabbitmq-test:gate"
DONE_KEY = "rabbitmq-test:done"
QUEUE = "celery"
PLAIN_QUEUE = "plain"  # no x-max-priority: its head message is its oldest
MAX_PRIORITY = 10


def make_app(broker_url: str) -> Celery:
    """The workers' app, and a publisher's: both must declare the queue the same way."""
    celery_app = Celery("rabbitmq_signals_app", broker=broker_url, set_as_current=False)
    celery_app.conf.update(
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=4,
        task_acks_late=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_queues=[
            Queue(
                QUEUE,
                Exchange(QUEUE),
                routing_key=QUEUE,
                queue_arguments={"x-max-priority": MAX_PRIORITY},
            ),
            Queue(PLAIN_QUEUE, Exchange(PLAIN_QUEUE), routing_key=PLAIN_QUEUE),
        ],
        task_default_queue=QUEUE,
    )
    return celery_app


app = make_app(BROKER_URL)


def stamp_amqp_timestamp(properties: dict[str, Any] | None = None, **_: Any) -> None:
    if properties is not None:
        # Whole seconds (AMQP timestamp): ages read up to 1 s high, never low.
        properties.setdefault("timestamp", int(time.time()))


@app.task(name="rabbitmq.gate")
def gate() -> None:
    client = redis.Redis.from_url(GATE_REDIS_URL)
    # Bounded so a forgotten token cannot keep a worker process alive after the test.
    client.blpop([GATE_KEY], timeout=120)
    client.incr(DONE_KEY)
