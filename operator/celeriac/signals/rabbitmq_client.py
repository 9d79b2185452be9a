"""The HTTP edge to RabbitMQ's management API: keep-alive GETs with short timeouts.

A failed call raises ManagementError with a message fit for a pool's status: it names
the endpoint (scheme, host, port) and never the credentials, nor the reply's body (a
broker is not trusted to put only harmless text there).
"""

from __future__ import annotations

import http.client
import ssl
import threading

from celeriac.signals.rabbitmq_api import Endpoint

# A queue list row with the columns asked is ~170 bytes: 64 MiB is >300k queues. A broker
# that sends more is not answering the question asked.
MAX_REPLY_BYTES = 64 << 20


class ManagementError(Exception):
    """The management API could not answer; the message is safe to show (no credentials)."""


class ManagementClient:
    """One idle connection per endpoint, reused across ticks; dropped after any failure."""

    def __init__(self, timeout_s: float = 2.0, ssl_context: ssl.SSLContext | None = None):
        self.timeout_s = timeout_s
        self.ssl_context = ssl_context
        self.requests = 0
        self._idle: dict[Endpoint, http.client.HTTPConnection] = {}
        self._lock = threading.Lock()

    def _connection(self, where: Endpoint) -> http.client.HTTPConnection:
        with self._lock:
            conn = self._idle.pop(where, None)
        if conn is not None:
            return conn
        host_port = where.base_url.split("://", 1)[1]
        if where.base_url.startswith("https://"):
            context = self.ssl_context or ssl.create_default_context()
            return http.client.HTTPSConnection(host_port, timeout=self.timeout_s, context=context)
        return http.client.HTTPConnection(host_port, timeout=self.timeout_s)

    def get(self, where: Endpoint, path: str) -> bytes:
        conn = self._connection(where)
        with self._lock:
            self.requests += 1
        try:
            conn.request("GET", path, headers={"Authorization": where.authorization()})
            response = conn.getresponse()
            body = response.read(MAX_REPLY_BYTES + 1)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ManagementError(
                f"RabbitMQ management API {where.label} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status != 200 or len(body) > MAX_REPLY_BYTES:
            conn.close()
            raise ManagementError(_status_message(where, response.status, len(body)))
        with self._lock:
            self._idle.setdefault(where, conn)  # kept alive for the next call
        return body

    def close(self) -> None:
        with self._lock:
            conns = list(self._idle.values())
            self._idle.clear()
        for conn in conns:
            conn.close()


def _status_message(where: Endpoint, status: int, size: int) -> str:
    if status in (401, 403):
        return (
            f"RabbitMQ management API {where.label} refused the credentials ({status}): "
            "the user needs the `monitoring` tag and read access to the pool's vhost"
        )
    if status == 404:
        return f"RabbitMQ management API {where.label}: the broker URL's vhost does not exist (404)"
    if status == 200:
        return f"RabbitMQ management API {where.label} sent more than {MAX_REPLY_BYTES} bytes"
    return f"RabbitMQ management API {where.label} answered HTTP {status} ({size} bytes)"
