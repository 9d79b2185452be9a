"""Example tasks of three kinds: I/O-bound, CPU-bound and long-running."""

from __future__ import annotations

import hashlib
import logging
import random
import smtplib
import socket
import time
from email.message import EmailMessage
from typing import Any

from celeriac_worker import pdf
from celeriac_worker.celery_app import app, env

log = logging.getLogger(__name__)

# Transient failures worth a retry; a bad recipient (SMTPRecipientsRefused) is not.
TRANSIENT = (
    ConnectionError,
    socket.timeout,
    smtplib.SMTPServerDisconnected,
    smtplib.SMTPConnectError,
    smtplib.SMTPHeloError,
)


@app.task(
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=6,
)
def send_email(self: Any, recipient: str, subject: str, content: str) -> dict[str, Any]:
    message = EmailMessage()
    message["From"] = env.smtp_sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Message-ID"] = f"<{self.request.id}@celeriac>"
    message.set_content(content)
    with smtplib.SMTP(env.smtp_host, env.smtp_port, timeout=10) as smtp:
        refused = smtp.send_message(message)
    log.info("sent e-mail to %s", recipient)
    return {"recipient": recipient, "refused": sorted(refused)}


def _mandelbrot_row(y: float, width: int, depth: int) -> str:
    chars = " .:-=+*#%@"
    row = []
    for i in range(width):
        c = complex(-2.2 + 3.2 * i / width, y)
        z = 0j
        n = 0
        while abs(z) <= 2 and n < depth:
            z = z * z + c
            n += 1
        row.append(chars[min(n * len(chars) // (depth + 1), len(chars) - 1)])
    return "".join(row)


@app.task(bind=True)
def render_report(
    self: Any, title: str, pages: int, depth: int = 60, seed: int = 0
) -> dict[str, Any]:
    """Real CPU work: renders a Mandelbrot zoom per page into a PDF document."""
    rng = random.Random(seed)
    rendered = []
    for page in range(pages):
        zoom = 1.0 + rng.random()
        rows = [_mandelbrot_row((-1.2 + 2.4 * r / 70) / zoom, 90, depth) for r in range(70)]
        rendered.append([f"page {page + 1} of {pages}, zoom {zoom:.3f}", *rows])
    document = pdf.render(rendered, title)
    log.info("rendered %d pages", pages)
    return {"bytes": len(document), "sha256": hashlib.sha256(document).hexdigest(), "pages": pages}


@app.task(bind=True)
def long_job(self: Any, steps: int, step_seconds: float) -> dict[str, Any]:
    # One line per execution: a requeued task (acks_late) shows up here twice.
    log.info("long job starting %d steps of %.2f s", steps, step_seconds)
    for done in range(steps):
        self.update_state(state="PROGRESS", meta={"done": done, "total": steps})
        time.sleep(step_seconds)
    log.info("long job finished %d steps", steps)
    return {"steps": steps, "seconds": steps * step_seconds}
