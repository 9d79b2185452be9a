"""What the image runs: `python -m celeriac_worker.entry {worker,api,ping} [args...]`.

`worker` and `api` replace this process (exec) with celery or uvicorn, so in a
container the real server is PID 1 and gets the kubelet's SIGTERM itself
(celery#4795). Tests start workers with this same command.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping, Sequence

APP = "celeriac_worker.celery_app"
DEFAULT_AUTOSCALE = "4,1"
DEFAULT_QUEUES = "celery,emails,reports"


def _has(args: Sequence[str], *flags: str) -> bool:
    return any(a == f or a.startswith(f + "=") for a in args for f in flags)


def worker_command(args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """celery's argv for a worker: the image's defaults, then whatever the caller passed."""
    argv = [sys.executable, "-m", "celery", "-A", APP, "worker"]
    if not _has(args, "--autoscale", "-c", "--concurrency"):
        argv.append(f"--autoscale={env.get('CELERIAC_AUTOSCALE', DEFAULT_AUTOSCALE)}")
    if not _has(args, "-P", "--pool"):
        # The threads pool cannot grow, so --autoscale would crash it (celery#5333).
        argv.append("--pool=prefork")
    if not _has(args, "-Q", "--queues"):
        argv.append(f"--queues={env.get('CELERIAC_QUEUES', DEFAULT_QUEUES)}")
    if not _has(args, "-l", "--loglevel"):
        argv.append(f"--loglevel={env.get('CELERIAC_LOG_LEVEL', 'INFO')}")
    return argv + list(args)


def worker_env(env: Mapping[str, str], soft_shutdown_s: float) -> dict[str, str]:
    out = dict(env)
    if soft_shutdown_s > 0:
        # Celery's soft shutdown (bounded wait for running tasks, then a cold shutdown
        # that requeues unfinished acks_late tasks) starts on SIGQUIT; Kubernetes sends SIGTERM.
        out.setdefault("REMAP_SIGTERM", "SIGQUIT")
    return out


def api_command(args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    argv = [sys.executable, "-m", "uvicorn", "celeriac_worker.api:app"]
    if not _has(args, "--host"):
        argv.append(f"--host={env.get('CELERIAC_API_HOST', '0.0.0.0')}")  # noqa: S104
    if not _has(args, "--port"):
        argv.append(f"--port={env.get('CELERIAC_API_PORT', '8000')}")
    return argv + list(args)


def ping(hostname: str | None = None) -> int:
    """Exit status for a HEALTHCHECK: 0 if this worker answers a ping over the broker."""
    from celeriac_worker.celery_app import app

    name = hostname or os.environ.get("CELERIAC_HOSTNAME") or f"celery@{socket.gethostname()}"
    replies = app.control.ping(destination=[name], timeout=5.0) or []
    return 0 if any(name in reply for reply in replies) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command, rest = (args[0], args[1:]) if args else ("worker", [])
    if command == "worker":
        from celeriac_worker.settings import WorkerEnv

        env = worker_env(os.environ, WorkerEnv().soft_shutdown_s)
        full = worker_command(rest, env)
        os.execve(full[0], full, env)  # noqa: S606 (argv is ours; exec keeps the PID)
    if command == "api":
        full = api_command(rest, os.environ)
        os.execv(full[0], full)  # noqa: S606
    if command == "ping":
        return ping(rest[0] if rest else None)
    print(f"usage: python -m celeriac_worker.entry {{worker,api,ping}} [args...]; got {command!r}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
