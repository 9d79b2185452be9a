"""The base class of every task in the app: it only swaps in the observing Request."""

from __future__ import annotations

from celery import Task


class ObservedTask(Task):
    Request = "celeriac_worker.observe:CeleriacRequest"
