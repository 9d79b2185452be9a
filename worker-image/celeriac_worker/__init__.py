"""celeriac's worker side: `celeriac_worker.install(app)` for any Celery app, and the reference worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["install"]


def install(app: Celery) -> Celery:
    """Wires the autoscaler, range file, load report, publish-time header and metrics into `app`.

    See celeriac_worker.wiring; imported here on first use so that `import celeriac_worker`
    (the image's entry execs celery at once) stays light.
    """
    from celeriac_worker.wiring import install as wire

    return wire(app)
