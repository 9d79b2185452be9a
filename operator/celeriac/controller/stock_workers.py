"""Plan rules for workers without the celeriac library (stock Celery, attached pools).

They publish no load report, so while a scale-in is wanted the plan asks them (`inspect
active`, off the tick, see controller.busy_probe) on every tick and ranks pods by the
newest answers. Until every ready pod has a fresh answer the scale-in waits: a pod whose
load is unknown must not rank as idle, or a busy stock worker could be removed first.
An answer left from an earlier scale-in is too old to trust (tasks may have started
since), and a pod that turned busy since the ranking changes its cost, which holds the
scale-in one more tick.
"""

from __future__ import annotations

from collections.abc import Mapping

from celeriac.api.pool import CeleryWorkerPoolSpec
from celeriac.controller.observation import Observation, PodView

# An answer is trusted for two ticks and a half (asked, ranked, scaled) and at least this
# long (a reply may take its whole 1 s timeout).
MIN_ANSWER_FRESH_S = 3.0


def answer_fresh_s(spec: CeleryWorkerPoolSpec) -> float:
    return max(MIN_ANSWER_FRESH_S, 2.5 * spec.scaling.polling_interval_seconds)


def known_loads(
    obs: Observation,
    spec: CeleryWorkerPoolSpec,
    reported: Mapping[str, int],
    live: list[PodView],
) -> tuple[dict[str, int], tuple[str, ...], tuple[str, ...]]:
    """Running counts from reports, else from fresh answers; the ready pods whose load is
    unknown; and every ready pod without a report (to ask again while scaling in). Only
    attached pools ask: a rendered pool's workers report."""
    running = dict(reported)
    if not spec.attached:
        return running, (), ()
    fresh_s = answer_fresh_s(spec)
    unknown: list[str] = []
    unreported: list[str] = []
    for pod in live:
        if pod.name in running or not pod.ready:
            continue
        unreported.append(pod.name)
        answer = obs.probed.get(pod.name)
        if answer is not None and obs.now - answer.at <= fresh_s:
            running[pod.name] = answer.running
        else:
            unknown.append(pod.name)
    return running, tuple(unknown), tuple(unreported)
