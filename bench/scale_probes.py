"""What bench_scale.py reads before and after a steady window: process CPU and RSS from
/proc, the apiserver's request counters, the operator's histograms, Redis command counts.

Each probe returns plain numbers or dicts, so a window is `after - before` of two readings.
"""

from __future__ import annotations

import os
import re
import urllib.request
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import redis
from prometheus_client.parser import text_string_to_metric_families

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Requests the operator makes, told apart from the controller-manager's, the scheduler's and
# kwok's by what only the operator does: it PATCHes Deployments and pods without a
# subresource (kwok patches pods' status, the controllers PUT), writes the pools' status,
# reads Secrets and PodMetrics. kopf's watches and the initial LISTs are excluded by verb.
OPERATOR_RESOURCES = {"celeryworkerpools", "secrets", "pods.metrics.k8s.io", "podmetrics"}
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}
READ_VERBS = {"GET", "LIST"}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> tuple[int, int]:
    """Current and peak resident set size."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class RequestKey:
    verb: str
    resource: str  # resource.group for non-core groups
    subresource: str


def apiserver_requests(metrics_text: str) -> Counter[RequestKey]:
    """apiserver_request_total summed over codes and scopes, by verb/resource/subresource."""
    counts: Counter[RequestKey] = Counter()
    for line in metrics_text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, _, value = line.rpartition("} ")
        labels = dict(_LABEL.findall(labels_text))
        group = labels.get("group", "")
        resource = labels.get("resource", "")
        if group:
            resource = f"{resource}.{group}"
        key = RequestKey(labels.get("verb", ""), resource, labels.get("subresource", ""))
        counts[key] += int(float(value))
    return counts


def is_operators(key: RequestKey) -> bool:
    if key.verb not in READ_VERBS | WRITE_VERBS:
        return False  # WATCH: long-running, counted when it ends
    base = key.resource.split(".")[0]
    if key.resource.startswith("celeryworkerpools") or base in ("secrets", "podmetrics"):
        return True
    return key.verb == "PATCH" and base in ("deployments", "pods") and not key.subresource


def split_reads_writes(delta: Mapping[RequestKey, int]) -> tuple[int, int]:
    reads = sum(n for k, n in delta.items() if is_operators(k) and k.verb in READ_VERBS)
    writes = sum(n for k, n in delta.items() if is_operators(k) and k.verb in WRITE_VERBS)
    return reads, writes


@dataclass(frozen=True)
class Histogram:
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count)
    count: float
    total: float

    def minus(self, before: Histogram) -> Histogram:
        prior = dict(before.buckets)
        return Histogram(
            tuple((le, n - prior.get(le, 0.0)) for le, n in self.buckets),
            self.count - before.count,
            self.total - before.total,
        )

    def quantile(self, q: float) -> float | None:
        """Like PromQL's histogram_quantile: linear within the bucket the rank falls in."""
        if self.count <= 0:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for le, cumulative in self.buckets:
            if cumulative >= rank:
                if le == float("inf"):
                    return lower  # past the top bucket: only its lower bound is known
                inside = cumulative - below
                return lower + (le - lower) * ((rank - below) / inside if inside else 0.0)
            lower, below = le, cumulative
        return lower


def operator_histograms(metrics_port: int) -> dict[str, Histogram]:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    found: dict[str, Histogram] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        buckets: list[tuple[float, float]] = []
        count = total = 0.0
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets.append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
        found[family.name] = Histogram(tuple(sorted(buckets)), count, total)
    return found


def redis_calls(client: redis.Redis[bytes]) -> Counter[str]:
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()})
