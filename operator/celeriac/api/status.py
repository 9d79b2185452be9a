"""The pool's status: what `kubectl get cwp` shows, and the policy's memory.

One model for the whole status subresource, so the CRD's status schema is generated from
it like the spec's, and the operator builds and reads the status through it alone.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field

from celeriac.api.base import Model
from celeriac.policy.model import PolicyMemory


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(Model):
    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class QueueStatus(Model):
    name: str
    waiting: int | None = None
    reserved: int | None = None
    oldest_age_seconds: float | None = None
    oldest_age_is_lower_bound: bool | None = Field(
        default=None,
        description="True when the age counts from when the operator first saw the task "
        "(stock Celery apps send no publish time): the task is at least this old.",
    )


class PodRange(Model):
    min: int
    max: int

    def __str__(self) -> str:
        return f"{self.min}-{self.max}"


class CeleryWorkerPoolStatus(Model):
    model_config = ConfigDict(extra="ignore")

    observed_generation: int | None = None
    replicas: int | None = None
    ready_replicas: int | None = None
    desired_replicas: int | None = None
    selector: str | None = None
    backlog: int | None = None
    queues: list[QueueStatus] = Field(default_factory=list)
    cpu_percent: int | None = None
    pod_range: str | None = None
    desired_range: PodRange | None = None
    last_scale_time: str | None = None
    reason: str | None = None
    applied_spec_replicas: int | None = None
    ranges_applied: int | None = Field(
        default=None, description="Worker pods that confirmed the desired range."
    )
    ranges_reporting: int | None = Field(default=None, description="Worker pods reporting load.")
    drain_hold_since: float | None = Field(
        default=None, description="Unix time scale-in started waiting for busy pods."
    )
    warnings: list[str] = Field(default_factory=list)
    scale_target_edits: list[float] = Field(
        default_factory=list,
        description="Unix times another field manager changed the scale target's replicas.",
    )
    conditions: list[Condition] = Field(default_factory=list)
    # Recent recommendations and smoothed rates, so an operator restart keeps the
    # stabilization window (written at a bounded rate, see controller.plan).
    policy_memory: PolicyMemory | None = None
