"""What the operator observes about a pool, each reading with its age.

A missing reading is `None` and carries an `error`; it is never reported as zero,
so the policy can hold replicas through a broker outage instead of scaling in.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

# The worker image publishes one JSON document per worker into this Redis hash
# (field = Celery hostname), prefixed by the transport's global_keyprefix:
#   HSET {prefix}celeriac.workers.{namespace}/{pool} celery@pod-1 '{"hostname": ..., "ts": ...}'
WORKER_LOAD_KEY = "celeriac.workers.{pool_id}"


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class QueueBacklog(Frozen):
    queue: str
    waiting: int = Field(ge=0, description="Messages in the list and its priority sub-lists.")
    waiting_by_priority: dict[int, int] = Field(default_factory=dict)
    reserved: int = Field(
        ge=0, description="Delivered, not acked: prefetched, or running under acks_late."
    )
    scheduled: int = Field(
        default=0, ge=0, description="Held by workers with a future ETA: not load until due."
    )
    oldest_age_s: float | None = Field(
        default=None,
        description="Age of the oldest waiting task that is due now (ETA tasks skipped).",
    )
    # Read where the broker reports them (RabbitMQ's management API); None elsewhere.
    consumers: int | None = Field(default=None, ge=0, description="Consumers of the queue.")
    publish_rate_per_s: float | None = Field(default=None, ge=0)
    deliver_rate_per_s: float | None = Field(default=None, ge=0)
    oldest_age_is_lower_bound: bool = Field(
        default=False,
        description="The age counts from when the operator first saw the task (no publish header).",
    )

    @property
    def total(self) -> int:
        return self.waiting + self.reserved


# Bounds of a worker report (issue #14, 3): anyone who can write to the broker can write
# one, so every number is finite and within what a real pod can report. A pod runs at most
# 1024 processes (the CRD's concurrency.max); prefetch holds at most 1024 x 1024 tasks;
# durations beyond the longest visibility timeout (7 days) are not task durations.
MAX_PROCESSES = 1024
MAX_RESERVED = 1024 * 1024
MAX_TASK_SECONDS = 604_800.0
MAX_CPU_PERCENT = 100.0 * 4096  # 4096 cores
MAX_TOTAL = 2**53  # exact in a JSON double
MAX_NAME = 253


class WorkerLoad(Frozen):
    """One Celery worker (one pod) as it reports itself: untrusted input, bounded here."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    hostname: str = Field(min_length=1, max_length=MAX_NAME + 64)
    pod: str | None = Field(default=None, max_length=MAX_NAME)
    running: int = Field(ge=0, le=MAX_PROCESSES, description="Tasks executing now.")
    reserved: int = Field(
        default=0,
        ge=0,
        le=MAX_RESERVED,
        description="Tasks received and not finished (running included).",
    )
    pool_size: int = Field(ge=0, le=MAX_PROCESSES, description="Live pool processes.")
    range_min: int = Field(ge=0, le=MAX_PROCESSES)
    range_max: int = Field(ge=0, le=MAX_PROCESSES)
    cpu_percent: float | None = Field(
        default=None, ge=0, le=MAX_CPU_PERCENT, description="Pod CPU, 100 = one core."
    )
    cpu_limit_cores: float | None = Field(default=None, ge=0, le=MAX_CPU_PERCENT / 100)
    processed_total: int = Field(default=0, ge=0, le=MAX_TOTAL)
    mean_task_seconds: float | None = Field(default=None, ge=0, le=MAX_TASK_SECONDS)
    p99_task_seconds: float | None = Field(
        default=None,
        ge=0,
        le=MAX_TASK_SECONDS,
        description="99th percentile of recent task durations.",
    )
    ts: float = Field(
        ge=0, le=MAX_TOTAL, description="Unix time the worker published this (window: reader)."
    )

    @property
    def consistent(self) -> bool:
        """What a real worker reports: a range with min <= max, no more running than processes.

        A property, not a validator: the policy's own tests build loads freely; the reader
        drops inconsistent reports from the broker.
        """
        return self.range_min <= self.range_max and self.running <= max(
            self.pool_size, self.range_max
        )


class PodCPU(Frozen):
    pod: str
    cpu_millicores: float = Field(ge=0)
    window_s: float | None = None
    ts: float


class PoolSignals(Frozen):
    """Everything gathered for one pool on one tick."""

    observed_at: float = Field(description="Unix time the readings were taken.")
    queues: list[QueueBacklog] | None = Field(
        default=None, description="None when the broker could not be read."
    )
    backlog_error: str | None = None
    workers: list[WorkerLoad] | None = None
    workers_error: str | None = None
    worker_reports: int = Field(default=0, ge=0, description="Fields in the report hash.")
    worker_reports_refused: int = Field(
        default=0,
        ge=0,
        description="Reports not believed: unread past the cap, oversized, out of bounds, stale.",
    )
    pod_cpu: list[PodCPU] | None = None
    pod_cpu_error: str | None = None

    @property
    def backlog(self) -> int | None:
        if self.queues is None:
            return None
        return sum(q.total for q in self.queues)

    @property
    def waiting(self) -> int | None:
        if self.queues is None:
            return None
        return sum(q.waiting for q in self.queues)

    @property
    def oldest_age_s(self) -> float | None:
        if not self.queues:
            return None
        ages = [q.oldest_age_s for q in self.queues if q.oldest_age_s is not None]
        return max(ages) if ages else None
