"""What lives for the operator's lifetime, and one tick of one pool: observe, plan, act, report.

- observe: the spec parsed once, the Deployment and pods from kopf's watch-fed indices
  (no request per tick), the signals from the shared batch.
- plan: `controller.plan.plan`, pure.
- act: only the writes the plan asks for, on a worker thread; range changes as a job of
  their own (`controller.ranges`), off the tick.
- report: events, metrics, and the in-process memory of what was planned and written.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import kopf
from pydantic import ValidationError

from celeriac.actuators.celery_control import CeleryControl
from celeriac.actuators.celery_inspect import ActiveInspector
from celeriac.actuators.kube import Kube, SecretError, load_config
from celeriac.api.pool import CeleryWorkerPoolSpec, Scaling
from celeriac.api.status import CeleryWorkerPoolStatus
from celeriac.controller import busy_probe, gather, metrics
from celeriac.controller.act import ActResult, act
from celeriac.controller.batching import Batcher
from celeriac.controller.busy_probe import ProbeAnswers
from celeriac.controller.observation import (
    DeploymentView,
    Observation,
    PodView,
    PoolRef,
    parse_status,
)
from celeriac.controller.plan import Event, Plan, plan
from celeriac.controller.pod_cpu import NamespaceCPU
from celeriac.controller.ranges import BrokerAddress, ControlJobs, send_consumers, send_range
from celeriac.controller.scale_target import TargetRead, read_target
from celeriac.controller.settings import OperatorSettings
from celeriac.signals.model import PoolSignals
from celeriac.signals.pod_metrics import PodMetricsReader
from celeriac.signals.reader import PoolQuery
from celeriac.signals.wakeup import WakeupListener

log = logging.getLogger(__name__)

SECRET_TTL_S = 15.0
# Ticks of pools with one interval are spread over it in slots this wide; pools in one
# slot still share a signal batch.
TICK_SLOT_S = 0.25
# New or changed queues reach the wake-up listener within this long, in one update.
WATCH_DEBOUNCE_S = 0.5
# A pool whose spec does not parse still ticks (to report it), at the model's default.
DEFAULT_INTERVAL_S = float(Scaling.model_fields["polling_interval_seconds"].default)


def pool_ref(body: Mapping[str, Any]) -> PoolRef:
    meta = body.get("metadata", {})
    return PoolRef(meta["namespace"], meta["name"], meta["uid"], meta.get("generation"))


def parse_spec(raw: Mapping[str, Any]) -> tuple[CeleryWorkerPoolSpec | None, str | None]:
    try:
        return CeleryWorkerPoolSpec.model_validate(dict(raw)), None
    except ValidationError as exc:
        parts = []
        for err in exc.errors()[:5]:
            where = "spec." + ".".join(str(p) for p in err["loc"])
            parts.append(f"{where}: {err['msg']}")
        return None, "; ".join(parts)


def tick_phase_s(pool_id: str, interval_s: float) -> float:
    """A stable offset within the interval, so 1,000 pools do not all tick at once."""
    slots = max(1, int(interval_s / TICK_SLOT_S))
    return (zlib.crc32(pool_id.encode()) % slots) * TICK_SLOT_S


@dataclass
class PoolMemo:
    """The newest status planned for a pool and the last one written (with when)."""

    planned: CeleryWorkerPoolStatus | None = None
    written: CeleryWorkerPoolStatus | None = None
    written_at: float | None = None
    interval_s: float = DEFAULT_INTERVAL_S
    reverted_generation: int | None = None


@dataclass
class Runtime:
    settings: OperatorSettings
    kube: Kube
    batcher: Batcher[PoolQuery, PoolSignals]
    wakes: dict[str, asyncio.Event] = field(default_factory=dict)
    secrets: dict[tuple[str, str, str], tuple[float, str]] = field(default_factory=dict)
    secret_reads: dict[tuple[str, str, str], asyncio.Lock] = field(default_factory=dict)
    watcher: WakeupListener | None = None
    loop: asyncio.AbstractEventLoop | None = None
    queries: dict[str, PoolQuery] = field(default_factory=dict)
    control: CeleryControl = field(default_factory=CeleryControl)
    pod_cpu: NamespaceCPU | None = None
    pools: dict[str, PoolMemo] = field(default_factory=dict)
    jobs: ControlJobs = field(default_factory=ControlJobs)
    probe_answers: ProbeAnswers = field(default_factory=ProbeAnswers)
    _watch_pending: bool = False

    @classmethod
    def from_env(cls) -> Runtime:
        settings = OperatorSettings()
        kube = Kube(load_config(settings.kubeconfig, connections=settings.io_threads))
        return cls(
            settings=settings,
            kube=kube,
            batcher=Batcher(gather.read_many, settings.batch_window_s),
            pod_cpu=NamespaceCPU(PodMetricsReader(kube.custom)) if settings.pod_metrics else None,
        )

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        # asyncio's default executor has cpu+4 threads (6 on 2 cores): at hundreds of pools
        # writes and Secret reads queued behind each other for seconds (issue #16).
        self.loop.set_default_executor(
            ThreadPoolExecutor(self.settings.io_threads, thread_name_prefix="celeriac-io")
        )
        if self.settings.wakeup:
            self.watcher = WakeupListener(
                self._wake_threadsafe,
                min_interval_s=self.settings.min_reconcile_interval_s,
                configure_server=self.settings.configure_broker_events,
            )

    async def stop(self) -> None:
        await self.jobs.close()
        if self.watcher is not None:
            await asyncio.to_thread(self.watcher.close)
        await asyncio.to_thread(self.control.close)
        gather.close()

    # --- wake-ups ------------------------------------------------------------

    def wake_event(self, pool_id: str) -> asyncio.Event:
        return self.wakes.setdefault(pool_id, asyncio.Event())

    def wake(self, pool_id: str) -> None:
        event = self.wakes.get(pool_id)
        if event is not None:
            event.set()

    def _wake_threadsafe(self, pool_ids: list[str]) -> None:
        if self.loop is None:
            return
        for pool_id in pool_ids:
            self.loop.call_soon_threadsafe(self.wake, pool_id)

    def _watch_soon(self) -> None:
        """Hands the wake-up listener the pools' queues once per WATCH_DEBOUNCE_S: each call
        walks every pool's keys, so one per pool at start-up and shutdown was O(N^2) (seconds
        of CPU at 1,000 pools)."""
        if self.watcher is None or self.loop is None or self._watch_pending:
            return
        self._watch_pending = True

        def update() -> None:
            self._watch_pending = False
            if self.watcher is not None:
                self.watcher.update(list(self.queries.values()))

        self.loop.call_later(WATCH_DEBOUNCE_S, update)

    def interval_s(self, pool_id: str) -> float:
        memo = self.pools.get(pool_id)
        return memo.interval_s if memo is not None else DEFAULT_INTERVAL_S

    def forget(self, pool_id: str) -> None:
        self.wakes.pop(pool_id, None)
        self.queries.pop(pool_id, None)
        self.pools.pop(pool_id, None)
        self.jobs.forget(pool_id)
        self.probe_answers.forget(pool_id)
        self._watch_soon()

    # --- one tick ------------------------------------------------------------

    async def tick(
        self,
        body: kopf.Body,
        deployments: Mapping[Any, Iterable[DeploymentView]],
        pods: Mapping[Any, Iterable[PodView]],
    ) -> None:
        ref = pool_ref(body)
        started = time.monotonic()
        try:
            obs, broker_url = await self.observe(ref, body, deployments, pods)
            the_plan = plan(obs)
            result = await self.act(ref, the_plan, obs.now)
            self.report(body, ref, obs, the_plan, result, broker_url)
        except Exception as exc:  # one pool's failure must not stop its loop
            reason = type(exc).__name__
            metrics.RECONCILE_ERRORS.labels(ref.namespace, ref.name, reason).inc()
            log.warning("reconcile of %s failed: %s", ref.pool_id, reason, exc_info=True)
            kopf.event(body, type="Warning", reason="ReconcileFailed", message=reason)
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)

    async def observe(
        self,
        ref: PoolRef,
        body: kopf.Body,
        deployments: Mapping[Any, Iterable[DeploymentView]],
        pods: Mapping[Any, Iterable[PodView]],
    ) -> tuple[Observation, str | None]:
        spec, spec_error = parse_spec(body.get("spec", {}))
        memo = self.pools.setdefault(ref.pool_id, PoolMemo())
        if spec is not None:
            memo.interval_s = spec.scaling.polling_interval_seconds
        previous = memo.planned or parse_status(dict(body.get("status", {}) or {}))
        workload = await self._workload(ref, spec, deployments, pods)
        signals, broker_url = (
            (None, None) if spec is None else await self._signals(ref, spec, workload.pods)
        )
        probed = self.probe_answers.loads(ref.pool_id, (p.name for p in workload.pods))
        obs = Observation(
            ref=ref,
            now=time.time(),
            spec=spec,
            spec_error=spec_error,
            previous=previous,
            deployment=workload.view,
            pods=workload.pods,
            signals=signals,
            written=memo.written,
            written_at=memo.written_at,
            reverted_generation=memo.reverted_generation,
            target_error=workload.error,
            target_selector=workload.selector,
            probed=probed,
        )
        return obs, broker_url

    async def _workload(
        self,
        ref: PoolRef,
        spec: CeleryWorkerPoolSpec | None,
        deployments: Mapping[Any, Iterable[DeploymentView]],
        pods: Mapping[Any, Iterable[PodView]],
    ) -> TargetRead:
        """The rendered Deployment and its pods from the watch caches; an attached pool's
        own workload and pods read from the apiserver."""
        if spec is not None and spec.scale_target_ref is not None:
            return await asyncio.to_thread(
                read_target, self.kube, ref.namespace, spec.scale_target_ref
            )
        key = (ref.namespace, ref.name)
        pod_views = tuple(sorted(pods.get(key, ()), key=lambda p: p.name))
        return TargetRead(next(iter(deployments.get(key, ())), None), pod_views)

    async def act(self, ref: PoolRef, the_plan: Plan, now: float) -> ActResult:
        idle = (
            the_plan.deployment is None
            and the_plan.scale_to is None
            and not the_plan.deletion_costs
            and not the_plan.write_status
        )
        if idle:
            return ActResult(the_plan.status, status_written=False)
        return await asyncio.to_thread(act, the_plan, ref, self.kube, now)

    def report(
        self,
        body: kopf.Body,
        ref: PoolRef,
        obs: Observation,
        the_plan: Plan,
        result: ActResult,
        broker_url: str | None,
    ) -> None:
        memo = self.pools.setdefault(ref.pool_id, PoolMemo())
        memo.planned = result.status
        if the_plan.reverted_generation is not None:
            memo.reverted_generation = the_plan.reverted_generation
        if result.status_written:
            memo.written, memo.written_at = result.status, obs.now
        for event in the_plan.events:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        if the_plan.decision is not None:
            if the_plan.scaled_from is not None:
                direction = (
                    "up" if the_plan.decision.desired_replicas > the_plan.scaled_from else "down"
                )
                metrics.SCALING_ACTIONS.labels(ref.namespace, ref.name, direction).inc()
            current = obs.deployment.replicas if obs.deployment else None
            mode = obs.spec.scaling.mode.value if obs.spec else "Auto"
            metrics.observe_decision(
                ref.namespace, ref.name, the_plan.decision, current, obs.signals, mode
            )
        metrics.API_WRITES.labels(ref.namespace, ref.name).inc(result.writes)
        if broker_url is not None and obs.spec is not None:
            self._control(body, ref, the_plan, broker_url, obs.spec)

    def _control(
        self,
        body: kopf.Body,
        ref: PoolRef,
        the_plan: Plan,
        broker_url: str,
        spec: CeleryWorkerPoolSpec,
    ) -> None:
        """Range and consumer changes, and questions to stock workers, each as a job off
        the tick."""

        def emit(event: Event) -> None:
            kopf.event(body, type=event.type, reason=event.reason, message=event.message)

        transport = spec.broker.transport
        broker = BrokerAddress(broker_url, transport.global_keyprefix, transport.master_name)
        prefix = transport.global_keyprefix
        ranges, consumers = the_plan.ranges, the_plan.consumers
        if ranges is not None:
            job = partial(send_range, ref, ranges, broker, self.control, self.kube)
            self.jobs.start(ref.pool_id, "ranges", job, emit)
        if consumers is not None:
            job = partial(send_consumers, ref, consumers, broker, self.control, self.kube)
            self.jobs.start(ref.pool_id, "consumers", job, emit)
        if the_plan.probe:
            inspector = ActiveInspector(self.control)
            job = partial(
                busy_probe.ask_active,
                inspector,
                self.probe_answers,
                ref.pool_id,
                the_plan.probe,
                broker_url,
                prefix,
            )
            self.jobs.start(ref.pool_id, busy_probe.JOB_KIND, job, emit)

    async def _signals(
        self, ref: PoolRef, spec: CeleryWorkerPoolSpec, pods: tuple[PodView, ...]
    ) -> tuple[PoolSignals, str | None]:
        now = time.time()
        secret_ref = spec.broker.url_secret_ref
        try:
            url = await self._broker_url(ref.namespace, secret_ref.name, secret_ref.key)
            management = await self._management_credentials(ref.namespace, spec)
        except SecretError as exc:
            return PoolSignals(
                observed_at=now, backlog_error=str(exc), workers_error=str(exc)
            ), None
        query = gather.make_query(ref.pool_id, url, spec, management)
        if self.queries.get(ref.pool_id) != query:
            self.queries[ref.pool_id] = query
            self._watch_soon()
        signals = await self.batcher.read(query)
        if self.pod_cpu is not None:
            cpu, error = await self.pod_cpu.for_pods(ref.namespace, (p.name for p in pods))
            signals = signals.model_copy(update={"pod_cpu": cpu, "pod_cpu_error": error})
        return signals, url

    async def _management_credentials(
        self, namespace: str, spec: CeleryWorkerPoolSpec
    ) -> tuple[str, str] | None:
        """RabbitMQ management API user and password, when the pool names their Secret."""
        management = spec.broker.management
        ref = management.credentials_secret_ref if management is not None else None
        if ref is None:
            return None
        return (
            await self._broker_url(namespace, ref.name, ref.username_key),
            await self._broker_url(namespace, ref.name, ref.password_key),
        )

    async def _broker_url(self, namespace: str, name: str, key: str) -> str:
        cache_key = (namespace, name, key)
        # One GET in flight per Secret: the pools sharing it wait for its answer instead of
        # each sending their own when the cached value expires (56 GETs a minute at 100 pools).
        async with self.secret_reads.setdefault(cache_key, asyncio.Lock()):
            cached = self.secrets.get(cache_key)
            now = time.monotonic()
            if cached is not None and now - cached[0] < SECRET_TTL_S:
                return cached[1]
            value = await asyncio.to_thread(self.kube.read_secret_value, namespace, name, key)
            # Expired entries go too: a rotated password must not stay in memory for good.
            for stale in [k for k, (t, _) in self.secrets.items() if now - t >= SECRET_TTL_S]:
                del self.secrets[stale]
            self.secrets[cache_key] = (now, value)
            return value
