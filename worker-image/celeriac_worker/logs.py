"""Structured JSON logs; every line logged from a task carries its id and name."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from celery._state import get_current_task


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        task = get_current_task()
        if task is not None and task.request.id:
            doc["task_id"] = task.request.id
            doc["task_name"] = task.name
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def install(logger: logging.Logger) -> None:
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())
