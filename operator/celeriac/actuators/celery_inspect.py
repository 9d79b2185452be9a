"""Asks stock Celery workers what they run (`inspect active`), before a scale-in.

Workers without the celeriac library publish no load report, so the operator asks the
ones it may remove, addressed by their default node name `celery@<pod name>` (a pod's
hostname is its name). Anyone on the broker can answer a broadcast: only replies from
the node names asked count, and only a list of tasks is read as one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from celeriac.actuators.celery_control import CeleryControl

NODE_PREFIX = "celery@"


def node_name(pod: str) -> str:
    return f"{NODE_PREFIX}{pod}"


@dataclass(frozen=True)
class ActiveAnswer:
    asked_at: float
    running: dict[str, int]  # pod -> tasks executing, for the pods that answered
    silent: tuple[str, ...]  # pods that did not answer within the timeout


def running_by_pod(replies: Mapping[str, Any] | None, pods: Iterable[str]) -> dict[str, int]:
    """Running task counts from `inspect active` replies, for the asked pods only."""
    wanted = {node_name(p): p for p in pods}
    out: dict[str, int] = {}
    for node, tasks in (replies or {}).items():
        pod = wanted.get(node)
        if pod is not None and isinstance(tasks, list):
            out[pod] = len(tasks)
    return out


class ActiveInspector:
    def __init__(self, control: CeleryControl, reply_timeout_s: float = 1.0) -> None:
        self.control = control
        self.reply_timeout_s = reply_timeout_s

    def ask(self, broker_url: str, pods: Iterable[str], global_keyprefix: str = "") -> ActiveAnswer:
        """Blocking: one broadcast to the named workers, at most the reply timeout."""
        asked = sorted(set(pods))
        asked_at = time.time()
        app = self.control.app(broker_url, global_keyprefix)
        inspect = app.control.inspect(
            destination=[node_name(p) for p in asked], timeout=self.reply_timeout_s
        )
        running = running_by_pod(inspect.active(), asked)
        return ActiveAnswer(asked_at, running, tuple(p for p in asked if p not in running))
