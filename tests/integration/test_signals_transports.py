"""The backlog reader over TLS (rediss://) and through Redis Sentinel, against real servers."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from celeriac.actuators.celery_control import CeleryControl
from celeriac.signals import kombu_keys
from celeriac.signals.reader import BacklogReader, PoolQuery
from celeriac_dev.certs import create_pki
from celeriac_worker.load_report import broker_client
from tests.support.redis_server import free_port, running_redis
from tests.support.waiting import wait_for


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    pki = create_pki(tmp_path / "pki")
    port = free_port()
    proc = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(pki.serving_cert),
            "--tls-key-file",
            str(pki.serving_key),
            "--tls-ca-cert-file",
            str(pki.ca_cert),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={pki.ca_cert}"
        wait_for("TLS redis", lambda: _pings(url), timeout_s=10)
        yield port, pki.ca_cert
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


@pytest.mark.parametrize(
    "cert_reqs", ["", "&ssl_cert_reqs=required", "&ssl_cert_reqs=CERT_REQUIRED"]
)
def test_backlog_over_tls(tls_redis: tuple[int, Path], cert_reqs: str) -> None:
    # CERT_REQUIRED is how Celery's docs spell it; kombu accepts it, redis-py does not.
    port, ca = tls_redis
    seed = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    redis.Redis.from_url(seed).lpush("celery", b"{}", b"{}")
    url = seed + cert_reqs
    got = BacklogReader().read([PoolQuery(pool_id="ns/tls", broker_url=url, queues=("celery",))])[
        "ns/tls"
    ]
    assert got.backlog_error is None
    assert got.backlog == 2


def test_tls_with_an_unknown_ca_is_an_error_not_a_zero(tls_redis: tuple[int, Path]) -> None:
    port, _ = tls_redis
    got = BacklogReader(timeout_s=1).read(
        [PoolQuery(pool_id="ns/tls", broker_url=f"rediss://127.0.0.1:{port}/0", queues=("celery",))]
    )["ns/tls"]
    assert got.queues is None
    assert got.backlog_error is not None
    assert "certificate verify failed" in got.backlog_error


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[int, int]]:
    with running_redis() as master:
        port = free_port()
        conf = tmp_path / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
            f"dir {tmp_path}\n"
        )
        proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for("sentinel", lambda: _sentinel_knows(port), timeout_s=15)
            yield port, master.port
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _sentinel_knows(port: int) -> bool:
    try:
        return (
            redis.Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name("mymaster")
            is not None
        )
    except (redis.RedisError, OSError):
        return False


def test_backlog_through_sentinel(sentinel: tuple[int, int]) -> None:
    sentinel_port, master_port = sentinel
    redis.Redis(port=master_port).lpush("jobs", b"{}", b"{}", b"{}")
    query = PoolQuery(
        pool_id="ns/s",
        broker_url=f"sentinel://127.0.0.1:{sentinel_port}/0;sentinel://127.0.0.1:{sentinel_port}/0",
        queues=("jobs",),
        master_name="mymaster",
    )
    got = BacklogReader().read([query])["ns/s"]
    assert got.backlog_error is None
    assert got.backlog == 3


def test_sentinel_without_a_master_name_says_so() -> None:
    started = time.monotonic()
    got = BacklogReader().read(
        [PoolQuery(pool_id="ns/s", broker_url="sentinel://127.0.0.1:1/0", queues=("jobs",))]
    )["ns/s"]
    assert got.queues is None
    assert got.backlog_error is not None
    assert "spec.broker.transport.masterName" in got.backlog_error
    assert time.monotonic() - started < 5.0  # said at once, not after connection attempts


def _publish_report(client: redis.Redis[bytes], pool_id: str) -> None:
    doc = {
        "hostname": "celery@w-1",
        "pod": "w-1",
        "running": 1,
        "pool_size": 2,
        "range_min": 1,
        "range_max": 4,
        "ts": time.time(),
    }
    client.hset(kombu_keys.worker_load_key(pool_id), "celery@w-1", json.dumps(doc))


def test_the_worker_reports_load_through_sentinel(sentinel: tuple[int, int]) -> None:
    sentinel_port, _ = sentinel
    url = f"sentinel://127.0.0.1:{sentinel_port}/0;sentinel://127.0.0.1:{sentinel_port}/0"
    _publish_report(broker_client(url, "mymaster"), "ns/s")
    query = PoolQuery(pool_id="ns/s", broker_url=url, queues=("jobs",), master_name="mymaster")
    got = BacklogReader().read([query])["ns/s"]
    assert [w.hostname for w in got.workers or []] == ["celery@w-1"]
    with pytest.raises(ValueError, match="CELERIAC_SENTINEL_MASTER"):
        broker_client(url, None)


def test_the_worker_reports_load_over_tls_with_cert_required(tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}&ssl_cert_reqs=CERT_REQUIRED"
    _publish_report(broker_client(url, None), "ns/tls")
    got = BacklogReader().read([PoolQuery(pool_id="ns/tls", broker_url=url, queues=("q",))])
    assert [w.hostname for w in got["ns/tls"].workers or []] == ["celery@w-1"]


def test_range_changes_go_through_sentinel_with_the_master_name(sentinel: tuple[int, int]) -> None:
    sentinel_port, _ = sentinel
    url = f"sentinel://127.0.0.1:{sentinel_port}/0"
    control = CeleryControl(reply_timeout_s=0.3, attempts=1)
    try:
        result = control.apply_range(url, ["celery@nobody"], 1, 2, master_name="mymaster")
    finally:
        control.close()
    # No worker answers, but the broadcast went out through the master sentinel named.
    assert result.unconfirmed == ["celery@nobody"]
    assert result.attempts == 1
