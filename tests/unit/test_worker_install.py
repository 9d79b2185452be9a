"""What `install(app)` changes on a Celery app, and what it leaves alone."""

import logging

import pytest
from celery import Celery, Task

from celeriac_worker.autoscaler import RangeFromFile
from celeriac_worker.metrics import MetricsServer
from celeriac_worker.wiring import AUTOSCALER, REQUEST, install


def test_install_sets_the_autoscaler_steps_and_request_and_nothing_else() -> None:
    app = Celery("byo", set_as_current=False)
    app.conf.worker_prefetch_multiplier = 4

    @app.task(name="byo.before")
    def before() -> None: ...

    assert install(app) is app

    @app.task(name="byo.after")
    def after() -> None: ...

    assert app.conf.worker_autoscaler == AUTOSCALER
    assert {RangeFromFile, MetricsServer} <= set(app.steps["worker"])
    # Tasks defined before and after the call inherit the observing Request.
    assert before.Request == REQUEST
    assert after.Request == REQUEST
    assert app.conf.worker_prefetch_multiplier == 4


def test_installing_twice_adds_nothing_twice() -> None:
    app = Celery("byo", set_as_current=False)
    install(app)
    install(app)
    assert len(app.steps["worker"]) == 2


def test_an_app_with_its_own_request_class_is_told_it_is_not_observed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class OwnTask(Task):  # type: ignore[misc]
        Request = "somewhere:OwnRequest"

    app = Celery("own", task_cls=OwnTask, set_as_current=False)
    with caplog.at_level(logging.WARNING):
        install(app)
    assert app.Task.Request == "somewhere:OwnRequest"
    assert "own Request class" in caplog.text
