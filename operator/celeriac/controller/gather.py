"""Turns a pool's spec into a signal query, and reads many queries at once.

The Redis conventions (key names, priority separator, unacked hash) are kombu's and
live in `celeriac.signals.kombu_keys`; this module only groups queries by server so
each server gets one pipelined round trip per tick.
"""

from __future__ import annotations

from collections.abc import Sequence

from celeriac.api.pool import CeleryWorkerPoolSpec
from celeriac.signals.model import PoolSignals
from celeriac.signals.reader import BacklogReader, PoolQuery

_reader = BacklogReader()


def make_query(pool_id: str, broker_url: str, spec: CeleryWorkerPoolSpec) -> PoolQuery:
    transport = spec.broker.transport
    return PoolQuery(
        pool_id=pool_id,
        broker_url=broker_url,
        queues=tuple(spec.queues),
        global_keyprefix=transport.global_keyprefix,
        priority_steps=tuple(transport.priority_steps),
        sep=transport.sep,
        master_name=transport.master_name,
    )


def read_many(queries: Sequence[PoolQuery]) -> list[PoolSignals]:
    results = _reader.read(list(queries))
    return [results[q.pool_id] for q in queries]


def close() -> None:
    """Drops the reader's Redis connections (the operator is stopping)."""
    _reader.close()
