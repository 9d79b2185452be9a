"""kopf handlers: thin. One daemon per pool ticks the reconcile; spec changes wake it.

Two indices, fed by kopf's watches of Deployments and pods with the pool label, are the
operator's caches: a tick reads them in memory instead of asking the apiserver.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from celeriac.actuators import render
from celeriac.api import pool as api
from celeriac.controller import metrics
from celeriac.controller.observation import DeploymentView, PodView, deployment_view, pod_view
from celeriac.controller.runtime import Runtime, tick_phase_s

log = logging.getLogger(__name__)
RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)
# A pool that keeps missing its interval says so at most this often (events are not free).
FALLING_BEHIND_EVENT_EVERY_S = 300.0


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    runtime = Runtime.from_env()
    memo["runtime"] = runtime
    settings.persistence.finalizer = f"{api.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=api.GROUP)
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.peering.lifetime = runtime.settings.peering_lifetime_s
    # On SIGTERM every daemon is told to stop at once; kopf's default wait for a "instant"
    # exit is 10 event-loop cycles, too few when hundreds wake together, so most were
    # cancelled with a warning each. A second is enough for all to leave their sleep.
    settings.background.instant_exit_timeout = 1.0
    await runtime.start()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.stop()


@kopf.index("apps", "v1", "deployments", labels={render.POOL_LABEL: kopf.PRESENT})
def pool_deployments(
    namespace: str | None, name: str, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], DeploymentView | None]:
    pool = labels[render.POOL_LABEL]
    # Only the pool's own Deployment: a label copied onto another one must not stand in.
    if name != render.deployment_name(pool):
        return {}
    return {(namespace, pool): deployment_view(dict(body))}


@kopf.index("", "v1", "pods", labels={render.POOL_LABEL: kopf.PRESENT})
def pool_pods(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str | None, str], PodView]:
    return {(namespace, labels[render.POOL_LABEL]): pod_view(dict(body))}


@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
def spec_changed(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    # The daemon owns the reconcile; a spec change only makes it run now.
    memo["runtime"].wake(f"{namespace}/{name}")


@kopf.on.delete(*RESOURCE, optional=True)
def deleted(namespace: str | None, name: str, **_: Any) -> None:
    # The Deployment goes with its ownerReference (garbage collector); only metrics stay behind.
    metrics.forget_pool(namespace or "", name)


@kopf.daemon(*RESOURCE, cancellation_timeout=10)
async def pool_loop(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    **indices: Any,
) -> None:
    runtime: Runtime = memo["runtime"]
    # kopf hands every handler its indices by the indexing function's name.
    deployments, pods = indices["pool_deployments"], indices["pool_pods"]
    pool_id = f"{namespace}/{name}"
    wake = runtime.wake_event(pool_id)
    due = time.time()
    warned_at = 0.0
    try:
        while not stopped:
            started = time.monotonic()
            interval = runtime.interval_s(pool_id)
            lateness = max(0.0, time.time() - due)
            metrics.TICK_LATENESS.observe(lateness)
            if lateness > interval:
                metrics.FALLING_BEHIND.labels(namespace or "", name).inc()
                log.warning("%s ticked %.1f s late (interval %.1f s)", pool_id, lateness, interval)
                if started - warned_at >= FALLING_BEHIND_EVENT_EVERY_S:
                    warned_at = started
                    kopf.event(
                        body,
                        type="Warning",
                        reason="FallingBehind",
                        message=f"ticked {lateness:.0f} s late (pollingIntervalSeconds "
                        f"{interval:g}): the operator is overloaded; see "
                        "celeriac_tick_lateness_seconds",
                    )
            wake.clear()
            tick_started = time.time()
            await runtime.tick(body, deployments, pods)
            # Each pool keeps its own slot in the interval (no thundering herd).
            phase = tick_phase_s(pool_id, interval)
            until_next = interval - ((time.time() - phase) % interval)
            # Due one interval after this tick started, not after it ended: a tick that takes
            # longer than the interval (an overloaded operator: 20 s at 1,000 pools on a busy
            # 2-core machine) then shows as lateness instead of passing for on time.
            due = tick_started + interval
            if await _woken(wake, stopped, until_next):
                # Woken by new work or a spec change: still no more often than the cap.
                floor = runtime.settings.min_reconcile_interval_s - (time.monotonic() - started)
                if floor > 0:
                    await stopped.wait(floor)
                due = time.time()
    finally:
        runtime.forget(pool_id)


async def _woken(wake: asyncio.Event, stopped: kopf.DaemonStopped, timeout_s: float) -> bool:
    """Sleep until the next tick; True when woken early. Returns at once when kopf stops us."""
    waiters = {
        asyncio.ensure_future(wake.wait()),
        asyncio.ensure_future(stopped.wait()),
    }
    done, pending = await asyncio.wait(
        waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
    )
    for task in pending:
        task.cancel()
    return bool(done) and wake.is_set()
