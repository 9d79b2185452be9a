"""A minimal Celery app for the operator's control-channel tests (broker from CELERY_BROKER_URL)."""

import os
import time

from celery import Celery

app = Celery("control_app", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.broker_connection_retry_on_startup = True
app.conf.worker_prefetch_multiplier = 1
app.conf.task_acks_late = True


@app.task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
