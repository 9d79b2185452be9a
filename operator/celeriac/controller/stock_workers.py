"""Plan rules for workers without the celeriac library (stock Celery, attached pools).

They publish no load report, so before a scale-in the plan asks them (`inspect active`,
off the tick, see controller.busy_probe) and ranks pods by the answers. Until every
ready pod has a fresh answer the scale-in waits: a pod whose load is unknown must not
rank as idle, or a busy stock worker could be removed first.
"""

from __future__ import annotations

from collections.abc import Mapping

from celeriac.api.pool import CeleryWorkerPoolSpec
from celeriac.controller.observation import Observation, PodView

# An answer is trusted for two ticks (ask, then rank) and at least this long.
MIN_ANSWER_FRESH_S = 10.0


def answer_fresh_s(spec: CeleryWorkerPoolSpec) -> float:
    return max(MIN_ANSWER_FRESH_S, 2.5 * spec.scaling.polling_interval_seconds)


def known_loads(
    obs: Observation,
    spec: CeleryWorkerPoolSpec,
    reported: Mapping[str, int],
    live: list[PodView],
) -> tuple[dict[str, int], tuple[str, ...]]:
    """Running counts from reports, else from fresh answers; and the ready pods whose load
    is still unknown (to ask). Only attached pools ask: a rendered pool's workers report."""
    running = dict(reported)
    if not spec.attached:
        return running, ()
    fresh_s = answer_fresh_s(spec)
    unknown: list[str] = []
    for pod in live:
        if pod.name in running or not pod.ready:
            continue
        answer = obs.probed.get(pod.name)
        if answer is not None and obs.now - answer.at <= fresh_s:
            running[pod.name] = answer.running
        else:
            unknown.append(pod.name)
    return running, tuple(unknown)
