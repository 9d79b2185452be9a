"""What a Celery task message on Redis tells the operator (Celery task protocol 2).

A waiting message is kombu's JSON envelope `{"body", "headers", "properties", ...}`; an
`unacked` hash value wraps it as `[envelope, exchange, routing_key]`. Protocol 2 headers
(celery/app/amqp.py `as_task_v2`) carry `eta` and `expires` but no publish time, and
kombu's Redis transport adds none, so a task's age needs the header the worker image
stamps at publish (`before_task_publish`). Without it the age is unknown, not zero.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from celeriac.signals import kombu_keys


def _decode(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, TypeError):
        return None


def headers_of(doc: Any) -> dict[str, Any]:
    """Headers of a decoded envelope or of a decoded `unacked` value."""
    if isinstance(doc, list):
        doc = doc[0] if doc else None
    headers = doc.get("headers") if isinstance(doc, dict) else None
    return headers if isinstance(headers, dict) else {}


def eta_timestamp(headers: dict[str, Any]) -> float | None:
    """Unix time of the `eta` header (countdown becomes eta at publish), or None."""
    eta = headers.get("eta")
    if not eta:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(eta))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        # Celery writes naive ETAs only with enable_utc=False and timezone unset: local is UTC then.
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def due_age_s(raw: bytes | str, now: float) -> tuple[bool, float | None]:
    """(due now, age in seconds from the publish header) for a waiting message.

    A message with a future ETA is not due; a due message without the header has an
    unknown age (None).
    """
    headers = headers_of(_decode(raw))
    eta = eta_timestamp(headers)
    if eta is not None and eta > now:
        return False, None
    published = headers.get(kombu_keys.PUBLISHED_AT_HEADER)
    if published is None:
        return True, None
    try:
        return True, max(0.0, now - float(published))
    except (TypeError, ValueError):
        return True, None


def oldest_due_age(newest_first: list[bytes], now: float) -> float | None:
    """Age of the oldest due message among the tail of a list as LRANGE returns it.

    The first due message from the old end decides: without a publish header its age is
    unknown, and reporting a younger message's age instead would understate the wait.
    """
    for raw in reversed(newest_first):
        due, age = due_age_s(raw, now)
        if due:
            return age
    return None


def oldest_due(newest_first: list[bytes], now: float) -> tuple[str | None, float | None] | None:
    """(task id, age from the publish header) of the oldest due message among a list's
    tail; None when none is due. The id lets a caller follow a message without the header."""
    for raw in reversed(newest_first):
        due, age = due_age_s(raw, now)
        if due:
            task_id = headers_of(_decode(raw)).get("id")
            return (str(task_id) if task_id is not None else None), age
    return None


def unacked_key_eta(raw: bytes | str) -> tuple[str, str]:
    """(routing key, eta header) of an `unacked` hash value, "" for what is unreadable.

    The same pair the server-side script returns, so both read paths count alike.
    """
    doc = _decode(raw)
    if not isinstance(doc, list) or len(doc) != 3 or not isinstance(doc[2], str):
        return "", ""
    eta = headers_of(doc).get("eta")
    return doc[2], eta if isinstance(eta, str) else ""


def eta_is_future(eta: str, now: float) -> bool:
    at = eta_timestamp({"eta": eta}) if eta else None
    return at is not None and at > now
