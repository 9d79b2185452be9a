"""Which worker reports to believe: only those of pods that exist in the pool (issue #14, 3).

Anyone who can write to the broker can add a report to a pool's hash. The reader bounds
each report; the controller, which lists the pool's pods anyway, keeps only reports of
those pods with this function. The rendered pod names its worker `celery@$(POD_NAME)`
(`actuators.render.celery_args`), so the report's hostname must be that pod's too: a
forged hostname would otherwise steer Celery control calls at a worker that never answers.
"""

from __future__ import annotations

from collections.abc import Collection

from celeriac.signals.model import WorkerLoad


def from_pool_pods(workers: list[WorkerLoad], pod_names: Collection[str]) -> list[WorkerLoad]:
    """One report per pod of the pool (its newest), whose hostname names that pod."""
    newest: dict[str, WorkerLoad] = {}
    for load in workers:
        pod = load.pod
        if pod is None or pod not in pod_names or load.hostname != f"celery@{pod}":
            continue
        if pod not in newest or load.ts > newest[pod].ts:
            newest[pod] = load
    return sorted(newest.values(), key=lambda w: w.hostname)
