"""Pod CPU from the Kubernetes metrics API (`metrics.k8s.io/v1beta1` PodMetrics), as the HPA reads it.

A second CPU source for clusters with metrics-server, next to what workers report. The API is
optional: when the cluster does not serve it, that is reported once as an error and not asked
again for a while.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from celeriac.signals.model import PodCPU

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
RETRY_ABSENT_S = 300.0
_SUFFIX = {"n": 1e-6, "u": 1e-3, "m": 1.0, "": 1000.0}


def cpu_millicores(quantity: str) -> float:
    """'250m' -> 250, '1' -> 1000, '1500000n' -> 1.5, '100u' -> 0.1."""
    text = quantity.strip()
    unit = text[-1] if text and text[-1] in "num" else ""
    number = text[: len(text) - len(unit)]
    try:
        return float(number) * _SUFFIX[unit]
    except ValueError as exc:
        raise ValueError(f"not a CPU quantity: {quantity!r}") from exc


# metav1.Duration as Go prints it: "15s", "20.279s", "1m0s", "500ms".
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNIT_S = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def _window_s(doc: dict[str, Any]) -> float | None:
    window = str(doc.get("window") or "")
    parts = _DURATION_PART.findall(window)
    if not parts or "".join(n + u for n, u in parts) != window:
        return None
    return sum(float(number) * _DURATION_UNIT_S[unit] for number, unit in parts)


def _sampled_at(doc: dict[str, Any], now: float) -> float:
    # metrics-server scrapes every ~15 s: the sample's own time, not the read time, is its age.
    # Clamped to `now` so an apiserver clock ahead of ours never yields a negative age.
    stamp = doc.get("timestamp")
    if not stamp:
        return now
    try:
        parsed = dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return now
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return min(parsed.timestamp(), now)


def parse_pod_metrics(items: list[dict[str, Any]], now: float) -> list[PodCPU]:
    out = []
    for item in items:
        containers = item.get("containers") or []
        total = sum(cpu_millicores(c.get("usage", {}).get("cpu", "0")) for c in containers)
        out.append(
            PodCPU(
                pod=item["metadata"]["name"],
                cpu_millicores=total,
                window_s=_window_s(item),
                ts=_sampled_at(item, now),
            )
        )
    return sorted(out, key=lambda p: p.pod)


class PodMetricsReader:
    def __init__(self, custom_api: Any, clock: Callable[[], float] = time.time) -> None:
        self.api = custom_api
        self.clock = clock
        self._absent_until = 0.0
        self._absent_reason = ""

    def read(self, namespace: str, selector: str) -> tuple[list[PodCPU] | None, str | None]:
        now = self.clock()
        if now < self._absent_until:
            return None, self._absent_reason
        try:
            response = self.api.list_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                "pods",
                label_selector=selector,
                _preload_content=False,
                _request_timeout=5,
            )
        except ApiException as exc:
            if exc.status in (404, 503):
                self._absent_until = now + RETRY_ABSENT_S
                self._absent_reason = f"{GROUP}/{VERSION} is not served by this cluster (HTTP {exc.status}); install metrics-server for pod CPU"
                return None, self._absent_reason
            if exc.status == 403:
                self._absent_until = now + RETRY_ABSENT_S
                self._absent_reason = "the operator may not read metrics.k8s.io pods (RBAC); set CELERIAC_POD_METRICS=false or grant it"
                return None, self._absent_reason
            return None, f"pod metrics: HTTP {exc.status} {exc.reason}"
        doc = json.loads(response.data)
        return parse_pod_metrics(doc.get("items", []), now), None
