"""Hostile input at the operator's pure edges (issue #14): Secret values, worker reports.

A pool's author may name any Secret of the namespace; anyone who can write to the broker
can write worker reports. Nothing of a Secret value beyond a broker URL's scheme, host
and port may reach a message, and no report outside its bounds may be believed.
"""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import ValidationError

from celeriac.actuators.kube import SecretError, _secret_value
from celeriac.signals import server_script
from celeriac.signals.connection import (
    NOT_A_BROKER_URL,
    BrokerURLError,
    connect,
    parse_broker_url,
    redact,
    server_label,
)
from celeriac.signals.model import WorkerLoad
from celeriac.signals.worker_trust import from_pool_pods

TOKEN = "s3cr3t-T0KEN-value-9f8e7d"


def _no_secret_bytes(text: str, secret: str = TOKEN) -> None:
    # No run of 4 characters of the secret: a prefix or a slice leaks as much as the whole.
    for i in range(len(secret) - 3):
        assert secret[i : i + 4] not in text, (secret[i : i + 4], text)


@pytest.mark.parametrize(
    "url",
    [
        TOKEN,  # the reported case: a Secret value with no '@' came back whole
        f"redis://:{TOKEN}",
        f"redis://host:{TOKEN}/0",  # urlparse's port error quotes the port text
        f"redis://host:6379/{TOKEN}",  # int(db) error quotes the path
        f"http://user:{TOKEN}@host/",
        f"redis://{TOKEN}@@/",
        f"sentinel://h:26379;redis://:{TOKEN}@h2",
        f"redis://:{TOKEN}@ho st:6379",
        "",
    ],
)
def test_a_secret_that_is_not_a_broker_url_is_never_echoed(url: str) -> None:
    with pytest.raises(BrokerURLError) as caught:
        parse_broker_url(url)
    _no_secret_bytes(str(caught.value))
    _no_secret_bytes(server_label(url))
    with pytest.raises(BrokerURLError) as again:
        connect(url)
    _no_secret_bytes(str(again.value))


def test_a_broker_url_is_named_by_scheme_host_and_port_only() -> None:
    url = f"rediss://user:{TOKEN}@redis.example.com:6380/3?ssl_cert_reqs=CERT_REQUIRED"
    assert server_label(url) == "rediss://redis.example.com:6380"
    assert server_label(f"sentinel://:{TOKEN}@s1;sentinel://s2:26380") == (
        "sentinel://s1:26379,s2:26380"
    )
    assert parse_broker_url(url).db == 3
    assert server_label(TOKEN) == "<not a broker URL>"
    assert NOT_A_BROKER_URL.startswith("not a broker URL")


def test_a_query_option_redis_py_refuses_is_not_quoted() -> None:
    with pytest.raises(BrokerURLError) as caught:
        connect(f"redis://h:6379/0?socket_timeout={TOKEN}")
    assert str(caught.value) == "redis://h:6379: a query option is not valid"


def test_redact_removes_password_user_path_and_query_values() -> None:
    url = f"redis://admin{TOKEN}:{TOKEN}@h:6379/0?password={TOKEN}x"
    text = f"AUTH failed for admin{TOKEN} with {TOKEN} and {TOKEN}x at h:6379"
    cleaned = redact(text, url)
    _no_secret_bytes(cleaned)
    assert "h:6379" in cleaned


def _secret(data: dict[str, bytes]) -> dict[str, object]:
    return {"data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def test_a_missing_key_does_not_list_the_secrets_other_keys() -> None:
    secret = _secret({"token": TOKEN.encode(), "password-of-db": b"x"})
    with pytest.raises(SecretError) as caught:
        _secret_value(secret, "ns", "s", "url")
    assert str(caught.value) == "Secret ns/s has no key 'url' (spec.broker.urlSecretRef.key)"
    assert "token" not in str(caught.value)
    assert "password-of-db" not in str(caught.value)


@pytest.mark.parametrize(
    "secret",
    [
        _secret({"url": b"\xff\xfe" + TOKEN.encode()}),  # UnicodeDecodeError quotes bytes
        {"data": {"url": "!!" + TOKEN}},  # not base64
        {"data": ["url"]},  # not a map: a wrong-type object
        {"data": {"url": 12}},
        {},
    ],
)
def test_unreadable_secret_values_name_no_byte(secret: dict[str, object]) -> None:
    with pytest.raises(SecretError) as caught:
        _secret_value(secret, "ns", "s", "url")
    _no_secret_bytes(str(caught.value))
    assert str(caught.value).startswith("Secret ns/s")


def test_a_good_secret_value_is_returned() -> None:
    assert _secret_value(_secret({"url": b"redis://h/0"}), "ns", "s", "url") == "redis://h/0"


GOOD = {
    "hostname": "celery@p-1",
    "pod": "p-1",
    "running": 2,
    "reserved": 3,
    "pool_size": 2,
    "range_min": 1,
    "range_max": 4,
    "cpu_percent": 50.0,
    "processed_total": 10,
    "mean_task_seconds": 1.0,
    "p99_task_seconds": 2.0,
    "ts": 1_700_000_000.0,
}


def test_a_well_formed_report_is_accepted() -> None:
    assert WorkerLoad.model_validate_json(json.dumps(GOOD)).running == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("p99_task_seconds", float("inf")),  # raised OverflowError every tick
        ("mean_task_seconds", float("nan")),
        ("running", 1e9),  # jumped a pool from 2 to 500 pods
        ("ts", 1e18),  # never went stale
        ("ts", float("inf")),
        ("cpu_percent", 1e12),
        ("reserved", 2**40),
        ("hostname", "x" * 400),
        ("pod", "p" * 300),
        ("processed_total", 2**60),
        ("p99_task_seconds", 1e9),
    ],
)
def test_a_report_out_of_bounds_is_refused(field: str, value: object) -> None:
    # json.dumps writes Infinity/NaN, as a forged report can.
    with pytest.raises(ValidationError):
        WorkerLoad.model_validate_json(json.dumps({**GOOD, field: value}))


@pytest.mark.parametrize(
    ("field", "value"),
    [("running", 5), ("range_min", 9)],  # more running than processes; min above max
)
def test_an_inconsistent_report_is_not_believed(field: str, value: int) -> None:
    assert not WorkerLoad.model_validate({**GOOD, field: value}).consistent
    assert WorkerLoad.model_validate(GOOD).consistent


def _load(pod: str, hostname: str | None = None, ts: float = 1.0) -> WorkerLoad:
    return WorkerLoad.model_validate(
        {**GOOD, "pod": pod, "hostname": hostname or f"celery@{pod}", "ts": ts}
    )


def test_only_reports_of_the_pools_own_pods_are_believed() -> None:
    workers = [
        _load("p-1", ts=1.0),
        _load("p-1", ts=2.0),  # the newer of two reports for one pod
        _load("p-2", hostname="celery@elsewhere"),  # would steer control calls astray
        _load("intruder"),
    ]
    kept = from_pool_pods(workers, {"p-1", "p-2"})
    assert [(w.pod, w.ts) for w in kept] == [("p-1", 2.0)]


def test_script_replies_parse_into_counts_and_reports() -> None:
    unacked = server_script.parse_unacked([10, 4, b"q", b"", 3, b"q", b"2030-01-01T00:00:00", 1])
    assert unacked.by_key_eta == {("q", ""): 3, ("q", "2030-01-01T00:00:00"): 1}
    assert unacked.scale == 2.5
    assert server_script.parse_reports([500_000, b"a", b"{}", b"b"]) == (500_000, {b"a": b"{}"})


def test_a_rabbitmq_url_is_labelled_without_its_credentials_or_vhost() -> None:
    assert server_label(f"amqp://celery:{TOKEN}@rabbit:5672/{TOKEN}") == "amqp://rabbit:5672"
    assert server_label(f"amqps://celery:{TOKEN}@rabbit/vh") == "amqps://rabbit:5671"
    with pytest.raises(BrokerURLError, match="not a Redis broker URL"):
        connect(f"amqp://celery:{TOKEN}@rabbit:5672//")
