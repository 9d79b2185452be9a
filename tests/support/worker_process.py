"""Reference workers and the API as processes, started the way the image starts them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Worker:
    hostname: str
    proc: subprocess.Popen[bytes]
    log: Path

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)


@dataclass
class WorkerFactory:
    broker_url: str
    log_dir: Path
    workers: list[Worker] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "CELERY_BROKER_URL": self.broker_url,
            "PYTHONPATH": str(ROOT),
            **extra,
        }

    def start(
        self,
        hostname: str,
        autoscale: str = "4,1",
        queues: str = "celery,emails,reports",
        app_module: str = "celeriac_worker.celery_app",
        **env: str,
    ) -> Worker:
        return self.spawn(
            hostname,
            [
                "-m",
                "celery",
                "-A",
                app_module,
                "worker",
                f"--autoscale={autoscale}",
                f"--hostname={hostname}",
                f"--queues={queues}",
                "--pool=prefork",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            env,
        )

    def spawn(self, hostname: str, python_args: list[str], env: dict[str, str]) -> Worker:
        """Run `python <python_args>` as a worker in its own session, logging to a file."""
        log = self.log_dir / f"{hostname.replace('@', '_')}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, *python_args],
                env=self.env(**env),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(hostname, proc, log)
        self.workers.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (a prefork worker's pool processes), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we listed
        # The command name is parenthesised and may hold spaces; the ppid follows it.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def control_app(broker_url: str) -> Celery:
    return Celery("test-control", broker=broker_url, backend=broker_url)


def autoscaler_info(app: Celery, hostname: str) -> dict[str, Any] | None:
    stats = app.control.inspect(destination=[hostname], timeout=1.0).stats() or {}
    doc = stats.get(hostname)
    return None if doc is None else doc.get("autoscaler")
