"""Live `--autoscale` ranges, sent off the reconcile path.

A range change goes to workers over the broker and waits for their confirmation; a
worker that never answers costs its reply timeout times the attempts. That wait must not
hold up a tick (or the thread pool every pool shares), so each pool has at most one
range job in flight, and the next tick, which sees the ranges the workers report, starts
another only for those still behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from celeriac.actuators import render
from celeriac.actuators.celery_control import RangeResult
from celeriac.controller.observation import PoolRef
from celeriac.controller.plan import Event, RangeChange

log = logging.getLogger(__name__)


class ControlEdge(Protocol):
    def apply_range(
        self,
        broker_url: str,
        hostnames: Iterable[str],
        range_min: int,
        range_max: int,
        global_keyprefix: str = "",
    ) -> RangeResult: ...


class PodAnnotator(Protocol):
    def annotate_pod(
        self, namespace: str, name: str, annotations: dict[str, str | None]
    ) -> None: ...


def range_events(change: RangeChange, result: RangeResult) -> list[Event]:
    value = f"{change.range_min}-{change.range_max}"
    if result.unconfirmed:
        return [
            Event(
                "Warning",
                "RangeNotConfirmed",
                f"--autoscale {value} not confirmed by {', '.join(result.unconfirmed)} "
                f"after {result.attempts} attempts",
            )
        ]
    return [
        Event(
            "Normal",
            "RangeApplied",
            f"--autoscale {value} applied to {len(result.confirmed)} workers "
            f"in {result.elapsed_s:.2f} s",
        )
    ]


def send_range(
    ref: PoolRef,
    change: RangeChange,
    broker_url: str,
    keyprefix: str,
    control: ControlEdge,
    kube: PodAnnotator,
) -> list[Event]:
    """Blocking: apply, confirm, then record the range on each confirmed pod, where the
    worker reads it back (downward API) after a restart."""
    result = control.apply_range(
        broker_url, list(change.workers), change.range_min, change.range_max, keyprefix
    )
    value = f"{change.range_min}-{change.range_max}"
    for hostname in result.confirmed:
        pod = change.workers.get(hostname)
        if pod:
            kube.annotate_pod(ref.namespace, pod, {render.RANGE_ANNOTATION: value})
    return range_events(change, result)


class RangeJobs:
    """At most one range job per pool; its events go to `emit` when it ends."""

    def __init__(self, control: ControlEdge, kube: PodAnnotator) -> None:
        self.control = control
        self.kube = kube
        self.running: dict[str, asyncio.Task[None]] = {}

    def busy(self, pool_id: str) -> bool:
        task = self.running.get(pool_id)
        return task is not None and not task.done()

    def start(
        self,
        ref: PoolRef,
        change: RangeChange,
        broker_url: str,
        keyprefix: str,
        emit: Callable[[Event], None],
    ) -> bool:
        if self.busy(ref.pool_id):
            return False

        async def job() -> None:
            try:
                events = await asyncio.to_thread(
                    send_range, ref, change, broker_url, keyprefix, self.control, self.kube
                )
            except Exception as exc:  # noqa: BLE001 - reported on the pool, retried next tick
                log.warning("range change for %s failed: %s", ref.pool_id, type(exc).__name__)
                # The class only: broker errors may quote the URL, and with it a password.
                failed = f"range change failed: {type(exc).__name__}"
                events = [Event("Warning", "RangeNotConfirmed", failed)]
            for event in events:
                emit(event)

        self.running[ref.pool_id] = asyncio.create_task(job())
        return True

    def forget(self, pool_id: str) -> None:
        task = self.running.pop(pool_id, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        for task in self.running.values():
            task.cancel()
        self.running.clear()
