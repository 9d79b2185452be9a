"""Reference workers and the API started with the image's own entry (`celeriac_worker.entry`)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery

import celeriac_worker.celery_app  # noqa: F401  (connects the publish-time header signal)
from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import wait_for
from tests.support.worker_process import ROOT, Worker, WorkerFactory, autoscaler_info, control_app

LONG_JOB = "celeriac_worker.tasks.long_job"
REPORT = "celeriac_worker.tasks.render_report"


class EntryWorkers(WorkerFactory):
    """Starts `python -m celeriac_worker.entry worker ...`, the image's CMD."""

    def start(
        self,
        hostname: str,
        autoscale: str = "4,1",
        queues: str = "celery,emails,reports",
        concurrency: int | None = None,
        **env: str,
    ) -> Worker:
        """`concurrency` starts a fixed pool without any autoscaler instead of `autoscale`."""
        size = f"--autoscale={autoscale}" if concurrency is None else f"--concurrency={concurrency}"
        return self.spawn(
            hostname,
            [
                "-m",
                "celeriac_worker.entry",
                "worker",
                size,
                f"--hostname={hostname}",
                f"--queues={queues}",
                "--without-gossip",
                "--without-mingle",
            ],
            env,
        )

    def start_app(self, hostname: str, app_module: str, autoscale: str, **env: str) -> Worker:
        """A worker of another app (`celery -A app_module worker`), not the image's entry."""
        return super().start(hostname, autoscale=autoscale, app_module=app_module, **env)

    def started(self, app: Celery, hostname: str, **kwargs: Any) -> Worker:
        """Start a worker and wait (bounded) until it answers remote control."""
        worker = self.start(hostname, **kwargs)
        wait_for(
            f"{hostname} to answer inspect stats",
            lambda: worker.proc.poll() is None and autoscaler_info(app, hostname),
            30,
            context=lambda: f"exit code {worker.proc.poll()}; log tail:\n{tail(worker.log)}",
        )
        return worker


def tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def task_log(workers: list[Worker], task_id: str) -> list[dict[str, Any]]:
    """Every JSON log line any of these workers wrote for one task."""
    found = []
    for worker in workers:
        for line in worker.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                doc = json.loads(line)
                if doc.get("task_id") == task_id:
                    found.append(doc)
    return found


def runs_of(workers: list[Worker], task_id: str) -> int:
    """How many times a long_job started (it logs once per execution)."""
    return sum(
        1 for doc in task_log(workers, task_id) if doc["message"].startswith("long job starting")
    )


@dataclass
class Api:
    url: str
    proc: subprocess.Popen[bytes]


@pytest.fixture(name="workers")
def workers_fixture(redis_server: RedisServer, tmp_path: Path) -> Iterator[EntryWorkers]:
    factory = EntryWorkers(redis_server.url, tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture(name="app")
def app_fixture(redis_server: RedisServer) -> Celery:
    return control_app(redis_server.url)


def start_api(workers: WorkerFactory, log: Path, **env: str) -> Api:
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celeriac_worker.entry",
                "api",
                "--host=127.0.0.1",
                f"--port={port}",
            ],
            env=workers.env(**env),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            "the API to answer /healthz",
            lambda: proc.poll() is None and _up(url),
            20,
            context=lambda: tail(log),
        )
    except BaseException:
        proc.terminate()
        proc.wait(timeout=10)
        raise
    return Api(url, proc)


@pytest.fixture(name="api")
def api_fixture(workers: EntryWorkers, tmp_path: Path) -> Iterator[str]:
    server = start_api(workers, tmp_path / "api.log")
    try:
        yield server.url
    finally:
        server.proc.terminate()
        server.proc.wait(timeout=10)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
