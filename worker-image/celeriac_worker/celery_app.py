"""The Celery app the reference workers run: `celery -A celeriac_worker.celery_app worker`.

One user of `celeriac_worker.install` like any other app, configured for reliability on
Redis: a task is acknowledged only after it ran (acks_late) and goes back to the queue if
its process dies; workers prefetch one task per process, so the backlog the operator
reads is the real one; soft shutdown fits inside the pod's grace period.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger

from celeriac_worker import install, logs
from celeriac_worker.settings import WorkerEnv

QUEUES = ("celery", "emails", "reports")

env = WorkerEnv()
app = Celery("celeriac_worker", broker=env.broker_url, include=["celeriac_worker.tasks"])

transport_options: dict[str, Any] = {
    # A task longer than this is handed to another worker while still running.
    "visibility_timeout": int(env.longest_task_s * 2) + 60,
    "socket_timeout": 10,
    "socket_connect_timeout": 10,
}
if env.global_keyprefix:
    transport_options["global_keyprefix"] = env.global_keyprefix

app.conf.update(
    # The broker doubles as the result store on Redis; an AMQP broker is no result store,
    # so results go back as messages (rpc://) unless CELERY_RESULT_BACKEND says otherwise.
    result_backend=env.result_backend
    or ("rpc://" if env.broker_url.startswith("amqp") else env.broker_url),
    result_backend_transport_options=dict(transport_options),
    result_backend_always_retry=True,
    result_expires=3600,
    broker_transport_options=transport_options,
    broker_connection_retry_on_startup=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_acks_on_failure_or_timeout=True,
    task_track_started=True,
    task_default_queue="celery",
    # Queues are created on demand with routing key = queue name, which is what the
    # operator uses to attribute reserved tasks in the unacked hash to their queue.
    task_create_missing_queues=True,
    task_routes={
        "celeriac_worker.tasks.send_email": {"queue": "emails"},
        "celeriac_worker.tasks.render_report": {"queue": "reports"},
        "celeriac_worker.tasks.long_job": {"queue": "celery"},
    },
    worker_prefetch_multiplier=1,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    worker_soft_shutdown_timeout=env.soft_shutdown_s,
    worker_enable_soft_shutdown_on_idle=env.soft_shutdown_s > 0,
    worker_hijack_root_logger=True,
    worker_send_task_events=False,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)

install(app)


@after_setup_logger.connect
@after_setup_task_logger.connect
def json_logs(logger: logging.Logger, **_: Any) -> None:
    logs.install(logger)
