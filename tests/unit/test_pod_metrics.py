"""Pod CPU from metrics.k8s.io: quantities parsed as the apiserver writes them, absence remembered."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from celeriac.signals.pod_metrics import PodMetricsReader, cpu_millicores, parse_pod_metrics


@pytest.mark.parametrize(
    ("quantity", "millicores"),
    [("250m", 250.0), ("1", 1000.0), ("2.5", 2500.0), ("1500000n", 1.5), ("100u", 0.1), ("0", 0.0)],
)
def test_cpu_quantities(quantity: str, millicores: float) -> None:
    assert cpu_millicores(quantity) == pytest.approx(millicores)


def test_a_bad_quantity_says_so() -> None:
    with pytest.raises(ValueError, match="not a CPU quantity: 'lots'"):
        cpu_millicores("lots")


def test_pod_cpu_sums_its_containers() -> None:
    items = [
        {
            "metadata": {"name": "w-1"},
            "window": "15s",
            "containers": [{"usage": {"cpu": "300m"}}, {"usage": {"cpu": "20000000n"}}],
        }
    ]
    (pod,) = parse_pod_metrics(items, now=10.0)
    assert (pod.pod, pod.cpu_millicores, pod.window_s) == ("w-1", 320.0, 15.0)


class AbsentMetricsApi:
    """The error path only: a cluster without metrics-server answers 404."""

    def __init__(self) -> None:
        self.calls = 0

    def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        raise ApiException(status=404, reason="Not Found")


def test_an_absent_metrics_api_is_reported_and_not_asked_again_at_once() -> None:
    api = AbsentMetricsApi()
    now = [1000.0]
    reader = PodMetricsReader(api, clock=lambda: now[0])
    pods, error = reader.read("ns", "celeriac.dev/pool=p")
    assert pods is None
    assert error is not None
    assert "metrics.k8s.io/v1beta1 is not served" in error
    now[0] += 60
    assert reader.read("ns", "x")[1] == error
    assert api.calls == 1
    now[0] += 300
    reader.read("ns", "x")
    assert api.calls == 2
