"""The reference API and compose file bound what a caller can ask for (issue #14, 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from celeriac_worker.api import LongJobRequest
from celeriac_worker.celery_app import app as celery_app
from celeriac_worker.celery_app import env

COMPOSE = Path(__file__).resolve().parents[2] / "worker-image" / "docker-compose.yml"


def test_a_long_job_must_end_before_the_visibility_timeout_redelivers_it() -> None:
    visibility_s = celery_app.conf.broker_transport_options["visibility_timeout"]
    assert env.longest_task_s < visibility_s
    with pytest.raises(ValidationError, match="steps x step_seconds must be <="):
        LongJobRequest(steps=10_000, step_seconds=600)  # 6,000,000 s: ran twice every 2 h
    with pytest.raises(ValidationError):
        LongJobRequest(steps=int(env.longest_task_s) + 1, step_seconds=1)
    assert LongJobRequest(steps=int(env.longest_task_s), step_seconds=1).steps == int(
        env.longest_task_s
    )


def test_compose_publishes_only_on_localhost_and_redis_needs_a_password() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    published = [p for svc in doc["services"].values() for p in svc.get("ports", [])]
    assert published
    assert all(str(p).startswith("127.0.0.1:") for p in published), published
    redis = doc["services"]["redis"]
    assert "--requirepass" in redis["command"]
    assert doc["x-broker"]["CELERY_BROKER_URL"].startswith("redis://:${REDIS_PASSWORD")
