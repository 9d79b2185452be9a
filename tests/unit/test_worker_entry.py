"""The command lines and environment the image's entry builds."""

import sys

from celeriac_worker.entry import api_command, worker_command, worker_env
from celeriac_worker.settings import soft_shutdown_budget_s


def test_worker_defaults() -> None:
    assert worker_command([], {}) == [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "celeriac_worker.celery_app",
        "worker",
        "--autoscale=4,1",
        "--pool=prefork",
        "--queues=celery,emails,reports",
        "--loglevel=INFO",
    ]


def test_worker_arguments_win_over_defaults() -> None:
    argv = worker_command(["--autoscale=8,2", "-Q", "emails", "--hostname=w@x"], {})
    assert argv[6:] == [
        "--pool=prefork",
        "--loglevel=INFO",
        "--autoscale=8,2",
        "-Q",
        "emails",
        "--hostname=w@x",
    ]


def test_worker_defaults_from_env() -> None:
    argv = worker_command([], {"CELERIAC_AUTOSCALE": "6,0", "CELERIAC_QUEUES": "reports"})
    assert "--autoscale=6,0" in argv
    assert "--queues=reports" in argv


def test_a_fixed_concurrency_gets_no_autoscale() -> None:
    assert not any(a.startswith("--autoscale") for a in worker_command(["-c", "4"], {}))


def test_sigterm_starts_the_soft_shutdown_only_when_there_is_a_budget() -> None:
    assert worker_env({}, 27.0)["REMAP_SIGTERM"] == "SIGQUIT"
    assert "REMAP_SIGTERM" not in worker_env({}, 0.0)
    assert worker_env({"REMAP_SIGTERM": "SIGTERM"}, 27.0)["REMAP_SIGTERM"] == "SIGTERM"


def test_api_command() -> None:
    assert api_command(["--port=9000"], {})[3:] == [
        "celeriac_worker.api:app",
        "--host=0.0.0.0",
        "--port=9000",
    ]


def test_soft_shutdown_budget_leaves_room_for_the_cold_shutdown() -> None:
    assert soft_shutdown_budget_s(0) == 0.0
    assert soft_shutdown_budget_s(60) == 54.0
    assert soft_shutdown_budget_s(10) == 7.0
    assert soft_shutdown_budget_s(2) == 0.0
