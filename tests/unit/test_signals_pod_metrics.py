"""PodMetrics as metrics-server serves them: quantities, windows, sample times, error answers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from celeriac.signals.pod_metrics import PodMetricsReader, parse_pod_metrics

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def item(name: str, window: str, timestamp: str | None, *cpu: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ns"},
        "window": window,
        "containers": [
            {"name": f"c{i}", "usage": {"cpu": q, "memory": "1Mi"}} for i, q in enumerate(cpu)
        ],
    }
    if timestamp is not None:
        doc["timestamp"] = timestamp
    return doc


@pytest.mark.parametrize(
    ("window", "seconds"),
    [("15s", 15.0), ("20.279s", 20.279), ("1m0s", 60.0), ("1m30.5s", 90.5), ("500ms", 0.5)],
)
def test_windows_in_go_duration_form(window: str, seconds: float) -> None:
    (pod,) = parse_pod_metrics([item("w", window, None, "1m")], now=NOW)
    assert pod.window_s == pytest.approx(seconds)


@pytest.mark.parametrize("window", ["", "15", "fast", "15s junk"])
def test_an_unreadable_window_is_unknown(window: str) -> None:
    (pod,) = parse_pod_metrics([item("w", window, None, "1m")], now=NOW)
    assert pod.window_s is None


def test_a_sample_is_as_old_as_its_timestamp_never_from_the_future() -> None:
    pods = parse_pod_metrics(
        [
            item("b-old", "15s", "2023-11-14T22:13:08Z", "1500000000n", "250m"),
            item("a-ahead", "15s", "2023-11-14T22:13:25Z", "2"),
            item("c-none", "15s", None, "100u"),
        ],
        now=NOW,
    )
    assert [(p.pod, p.cpu_millicores, p.ts) for p in pods] == [
        ("a-ahead", 2000.0, NOW),
        ("b-old", 1750.0, NOW - 12),
        ("c-none", 0.1, NOW),
    ]


class FailingMetricsApi:
    def __init__(self, status: int) -> None:
        self.status = status
        self.calls = 0

    def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        raise ApiException(status=self.status, reason="nope")


def test_an_unavailable_metrics_api_is_remembered_a_server_error_is_not() -> None:
    unavailable, broken = FailingMetricsApi(503), FailingMetricsApi(500)
    for api in (unavailable, broken):
        reader = PodMetricsReader(api, clock=lambda: NOW)
        for _ in range(3):
            pods, error = reader.read("ns", "celeriac.dev/pool=p")
            assert pods is None
            assert error is not None
    assert unavailable.calls == 1
    assert broken.calls == 3
    _, said = PodMetricsReader(FailingMetricsApi(503), clock=lambda: NOW).read("ns", "x")
    assert said is not None
    assert said.startswith("metrics.k8s.io/v1beta1 is not served by this cluster (HTTP 503)")


class Response:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.data = json.dumps(doc).encode()


class ServingMetricsApi:
    def __init__(self) -> None:
        self.asked: list[tuple[Any, ...]] = []

    def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Response:
        self.asked.append((*args, kwargs["label_selector"]))
        return Response({"kind": "PodMetricsList", "items": [item("w-1", "15s", None, "300m")]})


def test_the_pool_selector_is_asked_of_metrics_k8s_io_pods() -> None:
    api = ServingMetricsApi()
    pods, error = PodMetricsReader(api, clock=lambda: NOW).read("team", "app=w")
    assert error is None
    assert pods is not None
    assert [(p.pod, p.cpu_millicores, p.ts) for p in pods] == [("w-1", 300.0, NOW)]
    assert api.asked == [("metrics.k8s.io", "v1beta1", "team", "pods", "app=w")]
