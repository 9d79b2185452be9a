"""The CeleryWorkerPool spec and status: the single source of truth for the CRD.

`crds/` is generated from these models (`celeriac crd`), and a unit test fails when
the checked-in CRD drifts from them. Defaults live here and nowhere else.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from celeriac.api.base import Model
from celeriac.api.pod_template import EnvVar, PodTemplate

GROUP = "celeriac.dev"
VERSION = "v1alpha1"
KIND = "CeleryWorkerPool"
PLURAL = "celeryworkerpools"
SINGULAR = "celeryworkerpool"
SHORT_NAMES = ["cwp"]

# Celery queue names become Redis keys and pidbox routing keys: keep them printable
# and free of the transport's priority separator (\x06\x16).
QUEUE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"
CEL = "x-kubernetes-validations"
MAX_QUEUE_LISTS = 256  # queues x priority steps, each a Redis list read every tick


# A pool's name becomes a label value (at most 63 characters) and the prefix of its
# Deployment's pod names ("<name>-workers-<hash>-<suffix>"): 55 leaves room for both.
MAX_NAME_LENGTH = 55


class SecretKeyRef(Model):
    name: Annotated[
        str,
        Field(min_length=1, max_length=253, description="Secret name, same namespace as the pool."),
    ]
    key: Annotated[
        str, Field(min_length=1, max_length=253, description="Key inside the Secret.")
    ] = "url"


class BrokerTransport(Model):
    """Mirrors kombu's Redis transport options that change which keys hold a queue."""

    global_keyprefix: Annotated[
        str, Field(max_length=200, description="kombu `global_keyprefix`, prepended to every key.")
    ] = ""
    priority_steps: Annotated[
        list[Annotated[int, Field(ge=0, le=255)]],
        Field(
            min_length=1,
            max_length=256,
            description="kombu `priority_steps`; step 0 is the plain list.",
        ),
    ] = Field(default_factory=lambda: [0, 3, 6, 9])
    sep: Annotated[
        str, Field(min_length=1, max_length=8, description="kombu priority separator (`sep`).")
    ] = "\x06\x16"
    master_name: Annotated[
        str | None,
        Field(max_length=253, description="Sentinel master name, for sentinel:// broker URLs."),
    ] = None
    visibility_timeout_seconds: Annotated[
        int,
        Field(
            ge=1, le=604800, description="kombu `visibility_timeout`; must exceed the longest task."
        ),
    ] = 3600


class BasicAuthSecretRef(Model):
    """A Secret with a user name and password, like Kubernetes' `kubernetes.io/basic-auth`."""

    name: Annotated[
        str,
        Field(min_length=1, max_length=253, description="Secret name, same namespace as the pool."),
    ]
    username_key: Annotated[str, Field(min_length=1, max_length=253)] = "username"
    password_key: Annotated[str, Field(min_length=1, max_length=253)] = "password"  # noqa: S105 (a key name)


class ManagementAPI(Model):
    """RabbitMQ's management API: the unacknowledged counts and ages AMQP does not give."""

    url: Annotated[
        str | None,
        Field(
            max_length=1024,
            # No user info: credentials come from the Secret, never inline.
            pattern=r"^https?://[^/@\s]+/?$",
            description="e.g. http://rabbitmq.ns.svc:15672; default: the broker's host on "
            "15672 (15671 for amqps://).",
        ),
    ] = None
    credentials_secret_ref: Annotated[
        BasicAuthSecretRef | None,
        Field(
            description="User with the `monitoring` tag; default: the broker URL's user.",
        ),
    ] = None


class Broker(Model):
    url_secret_ref: Annotated[
        SecretKeyRef,
        Field(
            description="Secret key holding the broker URL "
            "(redis://, rediss://, sentinel://, amqp://, amqps://)."
        ),
    ]
    transport: BrokerTransport = Field(default_factory=BrokerTransport)
    management: Annotated[
        ManagementAPI | None,
        Field(description="amqp:// brokers only: where celeriac reads queue counts."),
    ] = None


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class WorkerPoolKind(StrEnum):
    # `threads` is absent on purpose: it has no grow() and --autoscale crashes it (celery#5333).
    PREFORK = "prefork"
    GEVENT = "gevent"
    EVENTLET = "eventlet"


class Concurrency(Model):
    """Bounds of each pod's in-process `--autoscale=max,min` range."""

    min: Annotated[int, Field(ge=0, le=1024, description="Fewest processes per pod.")] = 1
    max: Annotated[int, Field(ge=1, le=1024, description="Most processes per pod.")] = 4

    @model_validator(mode="after")
    def _min_le_max(self) -> Concurrency:
        _check_rules(self)
        return self


class WorkerSettings(Model):
    concurrency: Concurrency = Field(default_factory=Concurrency)
    prefetch_multiplier: Annotated[
        int,
        Field(
            ge=1,
            le=1024,
            description="`--prefetch-multiplier`; above 1, workers hoard tasks the backlog cannot see.",
        ),
    ] = 1
    max_tasks_per_child: Annotated[int | None, Field(ge=1, le=10_000_000)] = None
    max_memory_per_child_kib: Annotated[int | None, Field(ge=1024, le=1 << 30)] = None
    log_level: LogLevel = LogLevel.INFO
    pool: WorkerPoolKind = WorkerPoolKind.PREFORK
    extra_args: Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=64)] = (
        Field(default_factory=list)
    )


class ResourceList(Model):
    cpu: Annotated[str | None, Field(pattern=r"^[0-9]+(\.[0-9]+)?m?$", max_length=32)] = None
    memory: Annotated[
        str | None, Field(pattern=r"^[0-9]+(\.[0-9]+)?([EPTGMK]i?|[eE][0-9]+|m)?$", max_length=32)
    ] = None


class Resources(Model):
    requests: ResourceList = Field(default_factory=ResourceList)
    limits: ResourceList = Field(default_factory=ResourceList)


class WorkerTemplate(Model):
    image: Annotated[
        str, Field(min_length=1, max_length=1024, description="Worker container image.")
    ]
    app: Annotated[
        str,
        Field(
            min_length=1,
            max_length=512,
            pattern=r"^[A-Za-z_][A-Za-z0-9_.:]*$",
            description="Celery app module, as passed to `celery -A`.",
        ),
    ]
    command: Annotated[
        list[Annotated[str, Field(max_length=1024)]] | None,
        Field(max_length=64, description="Replaces the container command; the celery args follow."),
    ] = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    resources: Resources = Field(default_factory=Resources)
    env: Annotated[list[EnvVar], Field(max_length=256)] = Field(default_factory=list)
    node_selector: Annotated[dict[str, str], Field(max_length=64)] = Field(default_factory=dict)
    tolerations: Annotated[
        list[dict[str, Any]],
        Field(
            max_length=64,
            json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
        ),
    ] = Field(default_factory=list)
    service_account_name: Annotated[str | None, Field(max_length=253)] = None
    pod_template: Annotated[
        PodTemplate | None,
        Field(
            description=(
                "Merged over the rendered pod template (containers and volumes by name); "
                "restricted to what a worker needs (celeriac.api.pod_template)."
            ),
        ),
    ] = None


class HPAScalingPolicy(Model):
    """Same shape and meaning as the HPA's `behavior.*.policies[]`."""

    type: Literal["Pods", "Percent"]
    value: Annotated[int, Field(ge=1, le=100_000)]
    period_seconds: Annotated[int, Field(ge=1, le=1800)]


class ScalingRules(Model):
    stabilization_window_seconds: Annotated[int, Field(ge=0, le=3600)]
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"
    policies: Annotated[list[HPAScalingPolicy], Field(max_length=10)] = Field(default_factory=list)


def _default_scale_up() -> ScalingRules:
    # Burst-friendly: like the HPA's default, at least double or +4 pods every 15 s.
    return ScalingRules(
        stabilization_window_seconds=0,
        policies=[
            HPAScalingPolicy(type="Percent", value=100, period_seconds=15),
            HPAScalingPolicy(type="Pods", value=4, period_seconds=15),
        ],
    )


def _default_scale_down() -> ScalingRules:
    # Release smoothly: hold the highest recommendation for 1 min, then shed at most half per
    # 30 s. Longer holds cost more pod-seconds than the start-ups they save (bench/results).
    return ScalingRules(
        stabilization_window_seconds=60,
        policies=[HPAScalingPolicy(type="Percent", value=50, period_seconds=30)],
    )


class Behavior(Model):
    scale_up: ScalingRules = Field(default_factory=_default_scale_up)
    scale_down: ScalingRules = Field(default_factory=_default_scale_down)


class ScalingMode(StrEnum):
    # Recommend computes and publishes everything and writes nothing but status and events,
    # so a team can run celeriac beside its KEDA ScaledObject or HPA and compare.
    AUTO = "Auto"
    RECOMMEND = "Recommend"


# A cron field set: digits, names (JAN, MON), and * / , - only; croniter checks the rest.
CRON_PATTERN = r"^[0-9A-Za-z*/,\- ]{9,100}$"
TIME_ZONE_PATTERN = r"^[A-Za-z0-9_+\-/]{1,64}$"


class ScheduleWindow(Model):
    """A capacity floor over a recurring window, in the shape of KEDA's cron scaler: from each
    `start` until the next `end`, in `timeZone`, the pool keeps at least `minReplicas`. The
    operator asks for the pods a learned start-up time before `start`, so they are ready then."""

    name: Annotated[str, Field(min_length=1, max_length=63, description="Shown in the reason.")]
    start: Annotated[
        str, Field(pattern=CRON_PATTERN, description="5-field cron: when the window opens.")
    ]
    end: Annotated[
        str, Field(pattern=CRON_PATTERN, description="5-field cron: when the window closes.")
    ]
    time_zone: Annotated[
        str, Field(pattern=TIME_ZONE_PATTERN, description="IANA time zone of start and end.")
    ] = "UTC"
    min_replicas: Annotated[
        int, Field(ge=0, le=10_000, description="Fewest replicas while the window is open.")
    ]

    @model_validator(mode="after")
    def _parses(self) -> ScheduleWindow:
        # Imported here: the CRD generator and the models need no cron parser otherwise.
        from celeriac.policy.schedules import check_window

        check_window(self.start, self.end, self.time_zone)
        return self


class Predictive(Model):
    """Capacity ahead of recurring load, learned from the pool's own arrivals."""

    enabled: Annotated[
        bool,
        Field(
            description="Learn arrivals per minute of the day and of the week (kept in the "
            "status) and start pods a start-up ahead of a rise seen on the previous two days "
            "or the same minute last week; never below what the reactive policy wants."
        ),
    ] = False


class Scaling(Model):
    mode: Annotated[
        ScalingMode,
        Field(description="Auto scales; Recommend only publishes what it would do."),
    ] = ScalingMode.AUTO
    min_replicas: Annotated[int, Field(ge=0, le=10_000, description="0 enables scale to zero.")] = 1
    max_replicas: Annotated[int, Field(ge=1, le=10_000)] = 10
    paused: Annotated[bool, Field(description="Leave replicas and ranges as they are.")] = False
    target_queue_wait_seconds: Annotated[
        float, Field(gt=0, le=86400, description="Latency target: how long a task may wait.")
    ] = 30.0
    target_cpu_utilization_percent: Annotated[
        int,
        Field(
            ge=1, le=100, description="Above this a pod gets no more processes; more pods instead."
        ),
    ] = 80
    activation_backlog: Annotated[
        int, Field(ge=0, le=1_000_000, description="Tasks that wake a pool from zero.")
    ] = 0
    idle_seconds_before_zero: Annotated[
        int,
        Field(ge=0, le=86400, description="Idle time before the last pod goes (minReplicas 0)."),
    ] = 300
    polling_interval_seconds: Annotated[float, Field(ge=0.5, le=3600)] = 5.0
    stale_after_seconds: Annotated[
        float, Field(ge=1, le=3600, description="Signals older than this hold replicas.")
    ] = 30.0
    panic_threshold: Annotated[
        float, Field(ge=1.1, le=100, description="Demand/capacity ratio that enters panic mode.")
    ] = 2.0
    panic_window_seconds: Annotated[int, Field(ge=1, le=600)] = 6
    drain_deadline_seconds: Annotated[
        int,
        Field(
            ge=0, le=86400, description="Longest wait for busy pods before scale-in removes them."
        ),
    ] = 3600
    behavior: Behavior = Field(default_factory=Behavior)
    schedules: Annotated[
        list[ScheduleWindow],
        Field(
            max_length=20,
            description="Recurring windows that raise the replica floor ahead of known load; "
            "never below what the reactive policy wants. maxReplicas still bounds them.",
        ),
    ] = Field(default_factory=list)
    predictive: Predictive = Field(default_factory=Predictive)

    @model_validator(mode="after")
    def _min_le_max(self) -> Scaling:
        _check_rules(self)
        return self


class ScaleTargetRef(Model):
    """An existing workload celeriac scales through its /scale subresource (like the HPA's
    scaleTargetRef); its template stays the owner's."""

    api_version: Annotated[
        str,
        Field(
            min_length=1,
            max_length=253,
            pattern=r"^[a-z0-9.-]+/v[0-9]+[a-z0-9]*$",
            description="group/version of the target, e.g. apps/v1 (core kinds have no /scale to use).",
        ),
    ] = "apps/v1"
    kind: Annotated[
        str,
        Field(
            min_length=1,
            max_length=63,
            pattern=r"^[A-Z][A-Za-z0-9]*$",
            description="Deployment, StatefulSet, or any kind with a /scale subresource.",
        ),
    ] = "Deployment"
    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=253,
            pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
            description="Name of the target, in the pool's namespace.",
        ),
    ]

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


class CeleryWorkerPoolSpec(Model):
    replicas: Annotated[
        int | None,
        Field(
            ge=0,
            le=10_000,
            description="Set by `kubectl scale`: a manual jump the autoscaler continues from.",
        ),
    ] = None
    queues: Annotated[
        list[Annotated[str, Field(pattern=QUEUE_NAME_PATTERN)]],
        Field(
            min_length=1,
            max_length=32,
            description="Queues the workers consume (-Q).",
            # A set-typed list makes the apiserver refuse duplicate queue names.
            json_schema_extra={"x-kubernetes-list-type": "set"},
        ),
    ]
    template: Annotated[
        WorkerTemplate | None,
        Field(description="The worker Deployment celeriac renders; or use scaleTargetRef."),
    ] = None
    scale_target_ref: Annotated[
        ScaleTargetRef | None,
        Field(description="Attach to an existing workload instead of rendering one."),
    ] = None
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    broker: Broker
    scaling: Scaling = Field(default_factory=Scaling)
    termination_grace_period_seconds: Annotated[
        int, Field(ge=1, le=86400, description="Upper bound for warm shutdown of a worker pod.")
    ] = 300

    @property
    def attached(self) -> bool:
        """True when celeriac scales the user's own workload instead of rendering one."""
        return self.scale_target_ref is not None

    def require_template(self) -> WorkerTemplate:
        """The template, for the code that renders the Deployment (never called attached)."""
        if self.template is None:
            raise ValueError("this pool attaches to scaleTargetRef: it has no template to render")
        return self.template

    @model_validator(mode="after")
    def _cross_field(self) -> CeleryWorkerPoolSpec:
        if len(set(self.queues)) != len(self.queues):
            raise ValueError("queues must not repeat")
        _check_rules(self)
        return self


# CEL rules for cross-field constraints, attached to the object that holds both fields.
# The has() guards are for the apiserver's check of `default: {}` itself, before defaulting.
CEL_RULES: dict[str, list[dict[str, str]]] = {
    "Scaling": [
        {
            "rule": "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            "message": "scaling.minReplicas must be <= scaling.maxReplicas",
        },
    ],
    "Concurrency": [
        {
            "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
            "message": "worker.concurrency.min must be <= worker.concurrency.max",
        },
    ],
    "CeleryWorkerPoolSpec": [
        {
            "rule": "!has(self.replicas) || !has(self.scaling.maxReplicas) || self.replicas <= self.scaling.maxReplicas",
            "message": "replicas must be <= scaling.maxReplicas",
        },
        {
            "rule": "has(self.template) != has(self.scaleTargetRef)",
            "message": "set exactly one of template (celeriac renders the Deployment) "
            "and scaleTargetRef (attach to your own)",
        },
        {
            # Each list is read every tick (issue #14, 11): 32 queues x 256 steps was 16k.
            "rule": "!has(self.broker.transport) || !has(self.broker.transport.prioritySteps) || size(self.queues) * size(self.broker.transport.prioritySteps) <= 256",
            "message": "queues x broker.transport.prioritySteps must be <= 256 Redis lists",
        },
    ],
}


# The same rules for the operator's own validation, as Python predicates keyed by message,
# so a spec that slipped past an older CRD is still reported, not acted on.
_PY_RULES: dict[str, list[tuple[str, Any]]] = {
    "Scaling": [
        (CEL_RULES["Scaling"][0]["message"], lambda s: s.min_replicas <= s.max_replicas),
    ],
    "Concurrency": [
        (CEL_RULES["Concurrency"][0]["message"], lambda c: c.min <= c.max),
    ],
    "CeleryWorkerPoolSpec": [
        (
            CEL_RULES["CeleryWorkerPoolSpec"][0]["message"],
            lambda p: p.replicas is None or p.replicas <= p.scaling.max_replicas,
        ),
        (
            CEL_RULES["CeleryWorkerPoolSpec"][1]["message"],
            lambda p: (p.template is None) != (p.scale_target_ref is None),
        ),
        (
            CEL_RULES["CeleryWorkerPoolSpec"][2]["message"],
            lambda p: len(p.queues) * len(p.broker.transport.priority_steps) <= MAX_QUEUE_LISTS,
        ),
    ],
}


def _check_rules(model: BaseModel) -> None:
    for message, holds in _PY_RULES.get(type(model).__name__, []):
        if not holds(model):
            raise ValueError(message)
