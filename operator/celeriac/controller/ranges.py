"""Celery control calls (live `--autoscale` ranges, stopping and resuming consumers), sent
off the reconcile path.

A control call goes to workers over the broker and waits for their answers; a worker that
never answers costs its reply timeout times the attempts. That wait must not hold up a tick
(or the thread pool every pool shares), so each pool has at most one job of each kind in
flight, and the next tick, which sees what the workers report, starts another only for
those still behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from celeriac.actuators import render
from celeriac.actuators.celery_control import CeleryControl, RangeResult
from celeriac.controller.drain import ConsumerChange
from celeriac.controller.observation import PoolRef
from celeriac.controller.plan import Event, RangeChange

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class BrokerAddress:
    """Where a pool's workers listen for control: URL, key prefix, Sentinel master."""

    url: str = field(repr=False)  # may carry a password
    keyprefix: str = ""
    master_name: str | None = None


def send_range(
    ref: PoolRef,
    change: RangeChange,
    broker: BrokerAddress,
    control: CeleryControl,
    kube: PodAnnotator,
) -> list[Event]:
    """Blocking: apply, confirm, then record the range on each confirmed pod, where the
    worker reads it back (downward API) after a restart."""
    result = control.apply_range(
        broker.url,
        list(change.workers),
        change.range_min,
        change.range_max,
        broker.keyprefix,
        master_name=broker.master_name,
    )
    value = f"{change.range_min}-{change.range_max}"
    for hostname in result.confirmed:
        pod = change.workers.get(hostname)
        if pod:
            kube.annotate_pod(ref.namespace, pod, {render.RANGE_ANNOTATION: value})
    return range_events(change, result)


def send_consumers(
    ref: PoolRef,
    change: ConsumerChange,
    broker: BrokerAddress,
    control: CeleryControl,
    kube: PodAnnotator,
) -> list[Event]:
    """Blocking: stop the leaving workers consuming (resume those no longer leaving), and
    mark each pod that answered, so the next plans know."""
    events: list[Event] = []
    for consume, workers in ((False, change.stop), (True, change.resume)):
        if not workers:
            continue
        answered = control.set_consuming(
            broker.url,
            list(workers),
            change.queues,
            consume,
            broker.keyprefix,
            master_name=broker.master_name,
        )
        for hostname in answered:
            pod = workers.get(hostname)
            if pod:
                mark = None if consume else "true"
                kube.annotate_pod(ref.namespace, pod, {render.DRAINING: mark})
        verb = "resume consuming" if consume else "stop consuming to drain before scale-in"
        events.append(Event("Normal", "Draining", f"{len(answered)}/{len(workers)} workers {verb}"))
    return events


Job = Callable[[], list[Event]]


class ControlJobs:
    """At most one job of each kind per pool; its events go to `emit` when it ends."""

    def __init__(self) -> None:
        self.running: dict[tuple[str, str], asyncio.Task[None]] = {}

    def busy(self, pool_id: str, kind: str) -> bool:
        task = self.running.get((pool_id, kind))
        return task is not None and not task.done()

    def start(self, pool_id: str, kind: str, job: Job, emit: Callable[[Event], None]) -> bool:
        if self.busy(pool_id, kind):
            return False

        async def run() -> None:
            try:
                events = await asyncio.to_thread(job)
            except Exception as exc:  # noqa: BLE001 - reported on the pool, retried next tick
                log.warning("%s for %s failed: %s", kind, pool_id, type(exc).__name__)
                # The class only: broker errors may quote the URL, and with it a password.
                failed = f"{kind} failed: {type(exc).__name__}"
                events = [Event("Warning", "ControlFailed", failed)]
            for event in events:
                emit(event)

        self.running[(pool_id, kind)] = asyncio.create_task(run())
        return True

    def forget(self, pool_id: str) -> None:
        for key in [k for k in self.running if k[0] == pool_id]:
            self.running.pop(key).cancel()

    async def close(self) -> None:
        for task in self.running.values():
            task.cancel()
        self.running.clear()
