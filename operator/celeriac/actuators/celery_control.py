"""Changes live workers' `--autoscale` range over the broker, and confirms it.

`app.control.autoscale(max, min, destination=[...])` calls the worker's
`Autoscaler.update`. Broadcasts are Redis PUBLISH on the pidbox channel and are not
persisted, so a worker that was reconnecting misses them: every change is confirmed with
`inspect stats()['autoscaler']` and resent (update is absolute, so resending is safe).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from celery import Celery

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RangeResult:
    confirmed: dict[str, tuple[int, int]]
    unconfirmed: list[str]
    attempts: int
    elapsed_s: float = 0.0


class CeleryControl:
    """One control-only Celery app per broker URL (and key prefix), reused across ticks."""

    def __init__(self, reply_timeout_s: float = 1.0, attempts: int = 3) -> None:
        self.reply_timeout_s = reply_timeout_s
        self.attempts = attempts
        self._apps: dict[tuple[str, str, str | None], Celery] = {}
        self._lock = threading.Lock()

    def app(
        self, broker_url: str, global_keyprefix: str = "", master_name: str | None = None
    ) -> Celery:
        """The control app for a broker, shared with other actuators (celery_inspect)."""
        return self._app(broker_url, global_keyprefix, master_name)

    def _app(
        self, broker_url: str, global_keyprefix: str, master_name: str | None = None
    ) -> Celery:
        key = (broker_url, global_keyprefix, master_name)
        with self._lock:
            app = self._apps.get(key)
            if app is None:
                app = Celery("celeriac-control", broker=broker_url, set_as_current=False)
                options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}
                if global_keyprefix:
                    options["global_keyprefix"] = global_keyprefix
                if master_name:
                    # kombu's sentinel transport raises without it (issue #14, 8).
                    options["master_name"] = master_name
                app.conf.broker_transport_options = options
                app.conf.broker_connection_retry_on_startup = False
                app.conf.broker_connection_max_retries = 1
                self._apps[key] = app
            return app

    def apply_range(
        self,
        broker_url: str,
        hostnames: Iterable[str],
        range_min: int,
        range_max: int,
        global_keyprefix: str = "",
        master_name: str | None = None,
    ) -> RangeResult:
        started = time.monotonic()
        app = self._app(broker_url, global_keyprefix, master_name)
        pending = sorted(set(hostnames))
        confirmed: dict[str, tuple[int, int]] = {}
        attempts = 0
        while pending and attempts < self.attempts:
            attempts += 1
            app.control.autoscale(
                range_max, range_min, destination=pending, reply=True, timeout=self.reply_timeout_s
            )
            for host, applied in self.read_ranges(app, pending).items():
                if applied == (range_min, range_max):
                    confirmed[host] = applied
            pending = [h for h in pending if h not in confirmed]
        if pending:
            log.warning(
                "autoscale %s-%s not confirmed by %s after %d attempts",
                range_min,
                range_max,
                pending,
                attempts,
            )
        return RangeResult(confirmed, pending, attempts, time.monotonic() - started)

    def set_consuming(
        self,
        broker_url: str,
        hostnames: Iterable[str],
        queues: Iterable[str],
        consume: bool,
        global_keyprefix: str = "",
        master_name: str | None = None,
    ) -> list[str]:
        """Stop (or resume) consuming `queues` on these workers; returns those that answered.

        A worker chosen for scale-in stops taking new tasks, finishes what it runs, and is
        then an idle pod the ReplicaSet removes first. Resuming covers a drain called off
        because load came back before the pod went.
        """
        app = self._app(broker_url, global_keyprefix, master_name)
        hosts = sorted(set(hostnames))
        answered: set[str] = set()
        for queue in queues:
            call = app.control.add_consumer if consume else app.control.cancel_consumer
            kwargs = {"destination": hosts, "reply": True, "timeout": self.reply_timeout_s}
            for reply in call(queue, **kwargs) or []:
                answered.update(reply)
        return sorted(answered)

    def read_ranges(self, app: Celery, hostnames: list[str]) -> dict[str, tuple[int, int]]:
        stats = (
            app.control.inspect(destination=hostnames, timeout=self.reply_timeout_s).stats() or {}
        )
        out: dict[str, tuple[int, int]] = {}
        for host, doc in stats.items():
            autoscaler = (doc or {}).get("autoscaler") or {}
            if "min" in autoscaler and "max" in autoscaler:
                out[host] = (int(autoscaler["min"]), int(autoscaler["max"]))
        return out

    def close(self) -> None:
        with self._lock:
            for app in self._apps.values():
                app.close()
            self._apps.clear()
