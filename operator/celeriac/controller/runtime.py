"""What lives for the operator's lifetime: clients, the signal batcher, wake-up events."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from celeriac.actuators import render
from celeriac.actuators.celery_control import CeleryControl
from celeriac.actuators.kube import Kube, SecretError, load_config
from celeriac.controller import gather, metrics
from celeriac.controller.batching import Batcher
from celeriac.controller.reconcile import PoolReconciler, PoolRef, parse_spec
from celeriac.controller.settings import OperatorSettings
from celeriac.policy import decide
from celeriac.signals.model import PoolSignals
from celeriac.signals.pod_metrics import PodMetricsReader
from celeriac.signals.reader import PoolQuery
from celeriac.signals.wakeup import WakeupListener

log = logging.getLogger(__name__)

SECRET_TTL_S = 15.0


@dataclass
class Runtime:
    settings: OperatorSettings
    kube: Kube
    batcher: Batcher[PoolQuery, PoolSignals]
    wakes: dict[str, asyncio.Event] = field(default_factory=dict)
    secrets: dict[tuple[str, str, str], tuple[float, str]] = field(default_factory=dict)
    watcher: WakeupListener | None = None
    loop: asyncio.AbstractEventLoop | None = None
    queries: dict[str, PoolQuery] = field(default_factory=dict)
    control: CeleryControl = field(default_factory=CeleryControl)
    pod_metrics: PodMetricsReader | None = None

    @classmethod
    def from_env(cls) -> Runtime:
        settings = OperatorSettings()
        kube = Kube(load_config(settings.kubeconfig))
        return cls(
            settings=settings,
            kube=kube,
            batcher=Batcher(gather.read_many, settings.batch_window_s),
            pod_metrics=PodMetricsReader(kube.custom) if settings.pod_metrics else None,
        )

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.settings.wakeup:
            self.watcher = WakeupListener(
                self._wake_threadsafe, min_interval_s=self.settings.min_reconcile_interval_s
            )

    async def stop(self) -> None:
        if self.watcher is not None:
            await asyncio.to_thread(self.watcher.close)
        await asyncio.to_thread(self.control.close)

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

    def forget(self, pool_id: str) -> None:
        self.wakes.pop(pool_id, None)
        self.queries.pop(pool_id, None)
        if self.watcher is not None:
            self.watcher.update(list(self.queries.values()))

    # --- one tick --------------------------------------------------------------

    async def tick(self, body: kopf.Body) -> None:
        meta = body.get("metadata", {})
        ref = PoolRef(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=meta.get("generation"),
        )
        raw_spec: dict[str, Any] = dict(body.get("spec", {}))
        raw_status: dict[str, Any] = dict(body.get("status", {}) or {})
        started = time.monotonic()
        try:
            signals, broker_url = await self._signals(ref, raw_spec)
            events: list[tuple[str, str, str]] = []
            reconciler = PoolReconciler(
                self.kube, decide, lambda t, r, m: events.append((t, r, m)), self.control
            )
            await asyncio.to_thread(
                reconciler.reconcile, ref, raw_spec, raw_status, signals, time.time(), broker_url
            )
            for type_, reason, message in events:
                kopf.event(body, type=type_, reason=reason, message=message)
        except Exception as exc:  # one pool's failure must not stop its loop
            reason = type(exc).__name__
            metrics.RECONCILE_ERRORS.labels(ref.namespace, ref.name, reason).inc()
            log.warning("reconcile of %s failed: %s", ref.pool_id, exc, exc_info=True)
            kopf.event(
                body, type="Warning", reason="ReconcileFailed", message=f"{reason}: {exc}"[:1000]
            )
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)

    async def _signals(
        self, ref: PoolRef, raw_spec: dict[str, Any]
    ) -> tuple[PoolSignals | None, str | None]:
        try:
            spec = parse_spec(raw_spec)
        except ValidationError:
            return None, None  # the reconcile reports the invalid spec
        now = time.time()
        secret_ref = spec.broker.url_secret_ref
        try:
            url = await asyncio.to_thread(
                self._broker_url, ref.namespace, secret_ref.name, secret_ref.key
            )
        except SecretError as exc:
            return PoolSignals(
                observed_at=now, backlog_error=str(exc), workers_error=str(exc)
            ), None
        query = gather.make_query(ref.pool_id, url, spec)
        if self.queries.get(ref.pool_id) != query:
            self.queries[ref.pool_id] = query
            if self.watcher is not None:
                self.watcher.update(list(self.queries.values()))
        signals = await self.batcher.read(query)
        if self.pod_metrics is not None:
            pods, error = await asyncio.to_thread(
                self.pod_metrics.read, ref.namespace, render.selector_string(ref.name)
            )
            signals = signals.model_copy(update={"pod_cpu": pods, "pod_cpu_error": error})
        return signals, url

    def _broker_url(self, namespace: str, name: str, key: str) -> str:
        cache_key = (namespace, name, key)
        cached = self.secrets.get(cache_key)
        now = time.monotonic()
        if cached is not None and now - cached[0] < SECRET_TTL_S:
            return cached[1]
        value = self.kube.read_secret_value(namespace, name, key)
        self.secrets[cache_key] = (now, value)
        return value
