"""Worker-side settings, from the environment the operator (or compose) sets."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def _optional_float(name: str) -> float | None:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else None


def soft_shutdown_budget_s(grace_s: float) -> float:
    """Time running tasks get after SIGTERM, out of the pod's terminationGracePeriodSeconds.

    The rest (10 %, at least 3 s) is left for the cold shutdown that hands unfinished
    acks_late tasks back to the broker before the kubelet's SIGKILL.
    """
    if grace_s <= 0:
        return 0.0
    return max(0.0, min(grace_s * 0.9, grace_s - 3.0))


@dataclass(frozen=True)
class WorkerEnv:
    broker_url: str = field(
        default_factory=lambda: os.environ.get(
            "CELERY_BROKER_URL", os.environ.get("CELERIAC_BROKER_URL", "redis://127.0.0.1:6379/0")
        )
    )
    result_backend: str | None = field(
        default_factory=lambda: os.environ.get("CELERY_RESULT_BACKEND")
    )
    pool_id: str | None = field(default_factory=lambda: os.environ.get("CELERIAC_POOL"))
    pod_name: str | None = field(
        default_factory=lambda: os.environ.get("POD_NAME") or os.environ.get("HOSTNAME")
    )
    global_keyprefix: str = field(
        default_factory=lambda: os.environ.get("CELERIAC_GLOBAL_KEYPREFIX", "")
    )
    range_file: str | None = field(default_factory=lambda: os.environ.get("CELERIAC_RANGE_FILE"))
    target_cpu: float = field(
        default_factory=lambda: _float("CELERIAC_TARGET_CPU_PERCENT", 80.0) / 100.0
    )
    # Unset (the default): read from the pod's cgroup (see pod_limits); set: overrides it.
    cpu_limit_cores: float | None = field(
        default_factory=lambda: _optional_float("CELERIAC_CPU_LIMIT_CORES")
    )
    memory_limit_bytes: float | None = field(
        default_factory=lambda: _optional_float("CELERIAC_MEMORY_LIMIT_BYTES")
    )
    # Growth stops while the processes would need more than this share of the memory limit.
    target_memory: float = field(
        default_factory=lambda: _float("CELERIAC_TARGET_MEMORY_PERCENT", 90.0) / 100.0
    )
    # The operator sets the soft-shutdown timeout itself; elsewhere (compose, a plain
    # Deployment) it follows from the pod's grace period.
    soft_shutdown_s: float = field(
        default_factory=lambda: _float(
            "CELERIAC_SOFT_SHUTDOWN_TIMEOUT",
            soft_shutdown_budget_s(_float("CELERIAC_TERMINATION_GRACE_SECONDS", 0.0)),
        )
    )
    # Longest task the pool runs; the visibility timeout must exceed it or tasks run twice.
    longest_task_s: float = field(
        default_factory=lambda: _float("CELERIAC_LONGEST_TASK_SECONDS", 3600.0)
    )
    report_interval_s: float = field(
        default_factory=lambda: _float("CELERIAC_REPORT_INTERVAL", 2.0)
    )
    metrics_port: int = field(default_factory=lambda: int(_float("CELERIAC_METRICS_PORT", 0)))
    smtp_host: str = field(default_factory=lambda: os.environ.get("SMTP_HOST", "127.0.0.1"))
    smtp_port: int = field(default_factory=lambda: int(_float("SMTP_PORT", 25)))
    smtp_sender: str = field(
        default_factory=lambda: os.environ.get("SMTP_SENDER", "celeriac@localhost")
    )
