"""Redis clients for broker URLs as Celery spells them: redis://, rediss:// and sentinel://.

Credentials come from the URL (the operator reads it from the pool's Secret). Timeouts are
short on purpose: a dead or unreachable broker must cost a tick at most `timeout_s`, after
which the pool is reported stale and the next tick reconnects.

The URL is a Secret's value, and whoever may create a pool may name any Secret of the
namespace (issue #14): nothing that leaves this module as text (labels, error messages)
carries more of it than the scheme, host and port of a URL that parsed as a broker URL.
Anything else is "not a broker URL".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlparse, urlunparse

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "sentinel://"
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_REDIS_PORT = 6379
BROKER_SCHEMES = ("redis", "rediss", "sentinel")
# Labels only: RabbitMQ URLs are read by `rabbitmq_api`, never connected to here.
_LABEL_PORTS = {"amqp": 5672, "amqps": 5671, "pyamqp": 5672}
NOT_A_BROKER_URL = "not a broker URL (expected redis://, rediss:// or sentinel://host:port)"
# RFC 1123 names and IPv4/IPv6 literals: a host that is neither is not echoed back.
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$|^[0-9A-Fa-f:.]{2,45}$")
_MAX_SENTINELS = 16
REDACTED = "***"


# kombu (kombu/utils/url.py parse_ssl_cert_reqs) accepts both spellings; redis-py only the
# lower-case one, and Celery's docs show `?ssl_cert_reqs=CERT_REQUIRED`.
_CERT_REQS = {"CERT_REQUIRED": "required", "CERT_OPTIONAL": "optional", "CERT_NONE": "none"}


class BrokerURLError(ValueError):
    """A broker URL that cannot be used. The message holds no byte of the URL."""


@dataclass(frozen=True)
class BrokerAddress:
    """The parts of a broker URL that may be shown: scheme, hosts and ports, database."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    db: int

    @property
    def label(self) -> str:
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.hosts)
        return f"{self.scheme}://{hosts}"


def _parse_part(part: str) -> tuple[str, str, int, int]:
    """(scheme, host, port, db) of one `scheme://[user:pass@]host[:port][/db]`."""
    try:
        parsed = urlparse(part.strip())
        port = parsed.port
    except ValueError:  # urlparse's messages quote the offending text
        raise BrokerURLError(NOT_A_BROKER_URL) from None
    scheme = parsed.scheme.lower()
    host = parsed.hostname or ""
    if scheme not in (*BROKER_SCHEMES, *_LABEL_PORTS) or not _HOST.match(host):
        raise BrokerURLError(NOT_A_BROKER_URL)
    if scheme in _LABEL_PORTS:  # the path is a vhost, not a database
        return scheme, host, port or _LABEL_PORTS[scheme], 0
    db_text = parsed.path.strip("/")
    if db_text and not (db_text.isdecimal() and len(db_text) <= 5):
        raise BrokerURLError(f"{scheme}://{host}: the database is not a number")
    default_port = DEFAULT_SENTINEL_PORT if scheme == "sentinel" else DEFAULT_REDIS_PORT
    return scheme, host, port or default_port, int(db_text or 0)


def parse_broker_url(url: str) -> BrokerAddress:
    """Checks `url` is a broker URL Celery's Redis transport accepts; raises BrokerURLError."""
    parts = [p for p in url.split(";") if p.strip()]
    if not parts or len(parts) > _MAX_SENTINELS:
        raise BrokerURLError(NOT_A_BROKER_URL)
    parsed = [_parse_part(p) for p in parts]
    schemes = {p[0] for p in parsed}
    if len(parsed) > 1 and schemes != {"sentinel"}:
        raise BrokerURLError(NOT_A_BROKER_URL)
    return BrokerAddress(parsed[0][0], tuple((h, p) for _, h, p, _ in parsed), parsed[0][3])


def server_label(url: str) -> str:
    """scheme://host:port of a broker URL, for logs, errors and thread names; never more."""
    try:
        return parse_broker_url(url).label
    except BrokerURLError:
        return "<not a broker URL>"


def redact(text: str, url: str) -> str:
    """`text` with every piece of `url` that is not scheme, host or port replaced.

    For messages of errors raised below this module (redis-py, sockets), which may quote
    a password, a user name, a path or a query value they could not use.
    """
    secrets = {url, url.strip()}
    for part in url.split(";"):
        try:
            parsed = urlparse(part.strip())
        except ValueError:
            secrets.add(part)
            continue
        secrets.update({part, parsed.netloc, parsed.path, parsed.query, parsed.params})
        secrets.update({parsed.username or "", parsed.password or "", parsed.fragment})
        secrets.update({unquote(parsed.username or ""), unquote(parsed.password or "")})
        secrets.update(v for _, v in parse_qsl(parsed.query, keep_blank_values=True))
    for secret in sorted((s for s in secrets if len(s) >= 2), key=len, reverse=True):
        if secret.strip("/") and secret not in BROKER_SCHEMES:
            text = text.replace(secret, REDACTED)
    return text


def _redis_py_url(url: str) -> str:
    parsed = urlparse(url)
    query = parse_qsl(parsed.query, keep_blank_values=True)
    if not any(k == "ssl_cert_reqs" and v in _CERT_REQS for k, v in query):
        return url
    fixed = [(k, _CERT_REQS.get(v, v) if k == "ssl_cert_reqs" else v) for k, v in query]
    return urlunparse(parsed._replace(query=urlencode(fixed, safe="/", quote_via=quote)))


def _sentinel(
    url: str,
    address: BrokerAddress,
    master_name: str | None,
    timeout_s: float,
    extra: dict[str, Any],
) -> redis.Redis[bytes]:
    # kombu: `sentinel://[:password@]host:port[/db];sentinel://...`, the master's name in
    # transport options; the URL's password is the master's, not the sentinels'.
    if not master_name:
        raise BrokerURLError("a sentinel:// broker URL needs spec.broker.transport.masterName")
    username = password = None
    for part in url.split(";"):
        parsed = urlparse(part.strip())
        username = unquote(parsed.username) if parsed.username else username
        password = unquote(parsed.password) if parsed.password else password
    timeouts = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    sentinel = Sentinel(
        list(address.hosts),
        sentinel_kwargs=dict(timeouts),
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    return sentinel.master_for(
        master_name, db=address.db, username=username, password=password, **timeouts, **extra
    )


def connect(
    url: str,
    master_name: str | None = None,
    timeout_s: float = 2.0,
    health_check_interval_s: float = 0,
) -> redis.Redis[bytes]:
    """A client for `url`; nothing is sent until the first command.

    Raises BrokerURLError (naming at most scheme, host and port) for a URL that is not a
    broker URL. `health_check_interval_s` makes an idle connection PING before use, which
    is how a long-lived subscriber notices a peer that vanished without closing the socket.
    """
    address = parse_broker_url(url)
    if address.scheme in _LABEL_PORTS:
        raise BrokerURLError(f"{address.label}: not a Redis broker URL")
    # One attempt per call: the caller's next tick is the retry, so a dead broker costs a
    # tick `timeout_s`, not redis-py's default retries with backoff.
    extra: dict[str, Any] = {"retry": Retry(NoBackoff(), 0)}
    if health_check_interval_s:
        extra["health_check_interval"] = health_check_interval_s
    if address.scheme == "sentinel":
        return _sentinel(url, address, master_name, timeout_s, extra)
    try:
        return redis.Redis.from_url(
            _redis_py_url(url), socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **extra
        )
    except (ValueError, TypeError):
        # redis-py quotes the query value it could not use.
        raise BrokerURLError(f"{address.label}: a query option is not valid") from None
