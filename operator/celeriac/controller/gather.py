"""Turns a pool's spec into a signal query, and reads many queries at once.

The Redis conventions (key names, priority separator, unacked hash) are kombu's and
live in `celeriac.signals.kombu_keys`, RabbitMQ's in `celeriac.signals.rabbitmq_api`;
this module only sends each query to the reader of its broker's URL scheme, which
gives each server one request per tick.
"""

from __future__ import annotations

from collections.abc import Sequence

from celeriac.api.pool import CeleryWorkerPoolSpec
from celeriac.signals import rabbitmq_api
from celeriac.signals.heartbeats import HeartbeatListener
from celeriac.signals.model import PoolSignals
from celeriac.signals.rabbitmq import RabbitMQReader
from celeriac.signals.reader import BacklogReader, PoolQuery

_reader = BacklogReader()
# Worker load on RabbitMQ arrives as worker events; consumers start with the first pool.
_heartbeats = HeartbeatListener()
_rabbitmq = RabbitMQReader(workers=_heartbeats.worker_source)


def make_query(
    pool_id: str,
    broker_url: str,
    spec: CeleryWorkerPoolSpec,
    management_credentials: tuple[str, str] | None = None,
) -> PoolQuery:
    """`management_credentials`: (user, password) from the pool's management Secret."""
    transport = spec.broker.transport
    return PoolQuery(
        pool_id=pool_id,
        broker_url=broker_url,
        queues=tuple(spec.queues),
        global_keyprefix=transport.global_keyprefix,
        priority_steps=tuple(transport.priority_steps),
        sep=transport.sep,
        master_name=transport.master_name,
        management_url=_management_url(broker_url, spec, management_credentials),
    )


def _management_url(
    broker_url: str, spec: CeleryWorkerPoolSpec, credentials: tuple[str, str] | None
) -> str | None:
    management = spec.broker.management
    if management is None or not rabbitmq_api.is_amqp_url(broker_url):
        return None
    if credentials is None:
        return management.url  # the broker URL's user, on this endpoint (or the default)
    return rabbitmq_api.management_url(broker_url, management.url, *credentials)


def read_many(queries: Sequence[PoolQuery]) -> list[PoolSignals]:
    amqp = [q for q in queries if rabbitmq_api.is_amqp_url(q.broker_url)]
    redis = [q for q in queries if not rabbitmq_api.is_amqp_url(q.broker_url)]
    results = _reader.read(redis) if redis else {}
    if amqp:
        results.update(_rabbitmq.read(amqp))
    return [results[q.pool_id] for q in queries]


def close() -> None:
    """Drops the readers' broker connections (the operator is stopping)."""
    _reader.close()
    _rabbitmq.close()
    _heartbeats.close()
