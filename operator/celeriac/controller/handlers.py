"""kopf handlers: thin. One daemon per pool ticks the reconcile; spec changes wake it."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from celeriac.api import pool as api
from celeriac.controller import metrics
from celeriac.controller.runtime import Runtime

log = logging.getLogger(__name__)
RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)


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
    await runtime.start()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime | None = memo.get("runtime")
    if runtime is not None:
        await runtime.stop()


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
    **_: Any,
) -> None:
    runtime: Runtime = memo["runtime"]
    pool_id = f"{namespace}/{name}"
    wake = runtime.wake_event(pool_id)
    try:
        while not stopped:
            started = time.monotonic()
            wake.clear()
            await runtime.tick(body)
            interval = _interval(body)
            # Align ticks to the wall clock so pools with one interval share a signal batch.
            until_next = interval - (time.time() % interval)
            if await _woken(wake, stopped, until_next):
                # Woken by new work or a spec change: still no more often than the cap.
                floor = runtime.settings.min_reconcile_interval_s - (time.monotonic() - started)
                if floor > 0:
                    await stopped.wait(floor)
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


def _interval(body: kopf.Body) -> float:
    try:
        value = float(body.get("spec", {}).get("scaling", {}).get("pollingIntervalSeconds", 5.0))
    except (TypeError, ValueError):
        return 5.0
    return min(max(value, 0.5), 3600.0)
