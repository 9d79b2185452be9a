"""RabbitMQ conventions, in one place: AMQP URLs as kombu reads them and the management API.

- A Celery queue is an AMQP queue of the same name in the URL's virtual host. kombu reads
  `amqp://user:pass@host:port/vhost`; an empty path or a single `/` is the default vhost
  `/`, and `amqp://host//` spells it too.
- AMQP itself reports only a queue's ready count (queue.declare passive), one queue per
  round trip. The management plugin's `GET /api/queues/<vhost>?columns=...` lists every
  queue of a vhost with the counts in one request; `columns` keeps the reply to the
  fields read here (nested ones by dotted path).
- `messages_ready` counts every priority of an `x-max-priority` queue; unacknowledged
  messages are those delivered to consumers and not acked: prefetched, running under
  acks_late, or held by a worker for a future ETA (the API cannot tell these apart).
- `head_message_timestamp` is the AMQP `timestamp` property (whole seconds) of the message
  at the head of a classic queue, or null. Celery does not set it: a publisher must. On an
  `x-max-priority` queue the head is the next message of the highest non-empty priority,
  not the oldest (measured on 3.10: messages 60 s/p0, 40 s/p5, 20 s/p9 report 20 s), so
  there the age of the oldest message is unknown.
- Queue statistics reach the API every `collect_statistics_interval` and are sampled at the
  management agent's smallest retention interval, 5 s by default each (set both to 1 s for
  a fresher backlog: see tests/support/rabbitmq_server.py).
- Default management ports: 15672 (http), 15671 (https), on the broker's host.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlparse

from pydantic import BaseModel, ConfigDict, Field

AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")
DEFAULT_VHOST = "/"
HTTP_PORT = 15672
HTTPS_PORT = 15671
QUEUE_COLUMNS = (
    "name",
    "messages_ready",
    "messages_unacknowledged",
    "consumers",
    "head_message_timestamp",
    "arguments",
    "message_stats.publish_details.rate",
    "message_stats.deliver_get_details.rate",
)


def is_amqp_url(url: str) -> bool:
    return urlparse(url).scheme in AMQP_SCHEMES


def vhost_of(amqp_url: str) -> str:
    path = urlparse(amqp_url).path
    if path in ("", "/"):
        return DEFAULT_VHOST
    return unquote(path[1:])  # kombu: the path minus its leading slash, %-decoded ("//" -> "/")


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to call the management API; `label` carries no credentials."""

    base_url: str  # scheme://host:port, no path, no credentials
    username: str
    password: str

    @property
    def label(self) -> str:
        return self.base_url

    def authorization(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


def endpoint(amqp_url: str, management_url: str | None = None) -> Endpoint:
    """The management endpoint for a pool: its own URL, else the broker host's default port.

    Credentials in `management_url` win; otherwise the AMQP URL's user (RabbitMQ users are
    shared by AMQP and HTTP; the user needs the `monitoring` or `management` tag).
    """
    amqp = urlparse(amqp_url)
    if management_url:
        parsed = urlparse(management_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("the management URL must be http(s)://host[:port]")
        scheme, host, port = parsed.scheme, parsed.hostname, parsed.port
        user, password = parsed.username, parsed.password
    else:
        scheme = "https" if amqp.scheme == "amqps" else "http"
        host, port, user, password = amqp.hostname or "localhost", None, None, None
    if port is None:
        port = HTTPS_PORT if scheme == "https" else HTTP_PORT
    if user is None:
        user, password = amqp.username or "guest", amqp.password or "guest"
    shown_host = f"[{host}]" if ":" in host else host
    return Endpoint(f"{scheme}://{shown_host}:{port}", unquote(user), unquote(password or ""))


def management_url(amqp_url: str, base_url: str | None, username: str, password: str) -> str:
    """The pool's management URL with credentials from its Secret (kept in memory only)."""
    base = base_url.rstrip("/") if base_url else endpoint(amqp_url).base_url
    scheme, rest = base.split("://", 1)
    return f"{scheme}://{quote(username, safe='')}:{quote(password, safe='')}@{rest}"


def queues_path(vhost: str) -> str:
    """Every queue of one vhost in one request.

    Per vhost, not `/api/queues` for all: that list silently omits vhosts the user may not
    read, and a missing queue would then read as empty instead of unknown.
    """
    return f"/api/queues/{quote(vhost, safe='')}?columns=" + ",".join(QUEUE_COLUMNS)


class _Rate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    rate: float | None = None


class _MessageStats(BaseModel):
    model_config = ConfigDict(extra="ignore")
    publish_details: _Rate | None = None
    deliver_get_details: _Rate | None = None


class QueueRow(BaseModel):
    """One row of `GET /api/queues`: validated, since the broker is not trusted."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(max_length=255)  # AMQP short string
    messages_ready: int | None = Field(default=None, ge=0)
    messages_unacknowledged: int | None = Field(default=None, ge=0)
    consumers: int | None = Field(default=None, ge=0)
    head_message_timestamp: float | None = None
    message_stats: _MessageStats | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)

    @property
    def has_priorities(self) -> bool:
        return bool(self.arguments.get("x-max-priority"))

    @property
    def publish_rate(self) -> float | None:
        stats = self.message_stats
        return stats.publish_details.rate if stats and stats.publish_details else None

    @property
    def deliver_rate(self) -> float | None:
        stats = self.message_stats
        return stats.deliver_get_details.rate if stats and stats.deliver_get_details else None
