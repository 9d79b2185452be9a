"""Redis clients for broker URLs as Celery spells them: redis://, rediss:// and sentinel://.

Credentials come from the URL (the operator reads it from the pool's Secret). Timeouts are
short on purpose: a dead or unreachable broker must cost a tick at most `timeout_s`, after
which the pool is reported stale and the next tick reconnects.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlparse, urlunparse

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "sentinel://"
DEFAULT_SENTINEL_PORT = 26379


# kombu (kombu/utils/url.py parse_ssl_cert_reqs) accepts both spellings; redis-py only the
# lower-case one, and Celery's docs show `?ssl_cert_reqs=CERT_REQUIRED`.
_CERT_REQS = {"CERT_REQUIRED": "required", "CERT_OPTIONAL": "optional", "CERT_NONE": "none"}


def _redis_py_url(url: str) -> str:
    parsed = urlparse(url)
    query = parse_qsl(parsed.query, keep_blank_values=True)
    if not any(k == "ssl_cert_reqs" and v in _CERT_REQS for k, v in query):
        return url
    fixed = [(k, _CERT_REQS.get(v, v) if k == "ssl_cert_reqs" else v) for k, v in query]
    return urlunparse(parsed._replace(query=urlencode(fixed, safe="/", quote_via=quote)))


def server_label(url: str) -> str:
    """host:port/db of a broker URL without credentials, for logs and thread names."""
    return ";".join(part.split("@")[-1] for part in url.split(";"))


def _sentinel(
    url: str, master_name: str | None, timeout_s: float, extra: dict[str, Any]
) -> redis.Redis[bytes]:
    # kombu: `sentinel://[:password@]host:port[/db];sentinel://...`, the master's name in
    # transport options; the URL's password is the master's, not the sentinels'.
    if not master_name:
        raise ValueError("a sentinel:// broker URL needs spec.broker.transport.masterName")
    hosts: list[tuple[str, int]] = []
    username = password = None
    db = 0
    for part in url.split(";"):
        parsed = urlparse(part.strip())
        hosts.append((parsed.hostname or "127.0.0.1", parsed.port or DEFAULT_SENTINEL_PORT))
        username = unquote(parsed.username) if parsed.username else username
        password = unquote(parsed.password) if parsed.password else password
        if parsed.path.strip("/"):
            db = int(parsed.path.strip("/"))
    timeouts = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    sentinel = Sentinel(
        hosts,
        sentinel_kwargs=dict(timeouts),
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )
    return sentinel.master_for(
        master_name, db=db, username=username, password=password, **timeouts, **extra
    )


def connect(
    url: str,
    master_name: str | None = None,
    timeout_s: float = 2.0,
    health_check_interval_s: float = 0,
) -> redis.Redis[bytes]:
    """A client for `url`; nothing is sent until the first command.

    `health_check_interval_s` makes an idle connection PING before use, which is how a
    long-lived subscriber notices a peer that vanished without closing the socket.
    """
    # One attempt per call: the caller's next tick is the retry, so a dead broker costs a
    # tick `timeout_s`, not redis-py's default retries with backoff.
    extra: dict[str, Any] = {"retry": Retry(NoBackoff(), 0)}
    if health_check_interval_s:
        extra["health_check_interval"] = health_check_interval_s
    if url.startswith(SENTINEL_SCHEME):
        return _sentinel(url, master_name, timeout_s, extra)
    return redis.Redis.from_url(
        _redis_py_url(url), socket_timeout=timeout_s, socket_connect_timeout=timeout_s, **extra
    )
