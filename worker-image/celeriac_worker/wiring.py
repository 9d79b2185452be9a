"""What `celeriac_worker.install(app)` wires into a Celery app for the celeriac operator.

- the CPU- and memory-aware autoscaler (`worker_autoscaler`), active with `--autoscale`;
- the operator's range file (CELERIAC_RANGE_FILE) applied before the pool starts;
- the load report the operator reads (with CELERIAC_POOL set), published by the autoscaler;
- the publish-time header the operator ages the oldest waiting task by;
- the observing Request class (task outcomes, waits, run times, each task's CPU share);
- Prometheus metrics on CELERIAC_METRICS_PORT (0, the default, serves none).

Call it at import time of the app's module, before the worker starts; tasks defined before
or after the call are observed alike (they inherit the Request from `app.Task`), except
tasks that set a Request class of their own. The app's other settings are left alone:
the reference app (`celeriac_worker.celery_app`) shows the reliability settings the
operator assumes (acks_late, prefetch multiplier 1, reject on worker lost).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery
from celery.signals import before_task_publish

from celeriac_worker.autoscaler import RangeFromFile
from celeriac_worker.metrics import MetricsServer
from celeriac_worker.observe import PUBLISHED_AT_HEADER

log = logging.getLogger(__name__)
AUTOSCALER = "celeriac_worker.autoscaler:CeleriacAutoscaler"
REQUEST = "celeriac_worker.observe:CeleriacRequest"
DEFAULT_REQUEST = "celery.worker.request:Request"


def stamp_publish_time(
    headers: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    # The operator computes the oldest waiting task's age from this header (Redis), and on
    # RabbitMQ from the AMQP `timestamp` property, which the management API reports as a
    # queue's head_message_timestamp (whole seconds; headers are not exposed there).
    now = time.time()
    if headers is not None:
        headers.setdefault(PUBLISHED_AT_HEADER, now)
    if properties is not None:
        properties.setdefault("timestamp", int(now))


def install(app: Celery) -> Celery:
    """Makes `app`'s workers and publishers what the celeriac operator reads and steers."""
    app.conf.worker_autoscaler = AUTOSCALER
    steps = app.steps["worker"]
    steps.add(RangeFromFile)
    steps.add(MetricsServer)
    # One receiver however many apps install: the dispatch uid makes connect idempotent.
    before_task_publish.connect(
        stamp_publish_time, weak=False, dispatch_uid="celeriac-published-at"
    )
    task_base = app.Task
    if task_base.Request in (DEFAULT_REQUEST, REQUEST):
        task_base.Request = REQUEST
    else:
        log.warning(
            "%s has its own Request class %s: celeriac observes no task of it (queue wait,"
            " run time and the autoscaler's CPU share come from celeriac's Request)",
            app.main,
            task_base.Request,
        )
    return app
