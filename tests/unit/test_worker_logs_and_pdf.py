"""JSON log lines inside and outside a task, and the PDF the CPU-bound task renders."""

import json
import logging
import re

from celery import Celery

from celeriac_worker import pdf
from celeriac_worker.logs import JsonFormatter


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("t", logging.INFO, __file__, 1, message, None, None)


def test_a_line_outside_a_task_has_no_task_fields() -> None:
    doc = json.loads(JsonFormatter().format(_record("hello")))
    assert doc["message"] == "hello"
    assert doc["level"] == "INFO"
    assert "task_id" not in doc


def test_a_line_logged_from_a_task_names_it() -> None:
    app = Celery("unit", broker="memory://", backend="cache+memory://")
    app.conf.task_always_eager = True
    formatted: list[str] = []

    @app.task(name="unit.work")
    def work() -> None:
        formatted.append(JsonFormatter().format(_record("inside")))

    result = work.apply(task_id="id-1")
    assert result.successful()
    doc = json.loads(formatted[0])
    assert (doc["task_id"], doc["task_name"], doc["message"]) == ("id-1", "unit.work", "inside")


def test_the_pdf_is_well_formed() -> None:
    document = pdf.render([["line (one)", "two"], ["three"]], "Title \\ x")
    assert document.startswith(b"%PDF-1.4\n")
    assert document.endswith(b"%%EOF\n")
    assert b"/Count 2" in document
    assert b"(line \\(one\\)) Tj" in document
    # Every xref offset points at the object it names.
    xref_at = int(re.search(rb"startxref\n(\d+)", document).group(1))  # type: ignore[union-attr]
    entries = document[xref_at:].split(b"\n")[3:]
    for number, entry in enumerate(entries[: 2 * 2 + 3], start=1):
        offset = int(entry[:10])
        assert document[offset:].startswith(f"{number} 0 obj".encode())
