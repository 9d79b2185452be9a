"""A real SMTP server on loopback that keeps what it receives (for the e-mail task's tests)."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Mailbox:
    messages: list[str] = field(default_factory=list)


class _Handler(socketserver.StreamRequestHandler):
    mailbox: Mailbox

    def _say(self, line: str) -> None:
        self.wfile.write((line + "\r\n").encode())

    def handle(self) -> None:
        self._say("220 sink ESMTP")
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            verb = raw.decode(errors="replace").strip().split(" ")[0].upper()
            if verb in ("EHLO", "HELO"):
                self._say("250 sink")
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                self._say("250 OK")
            elif verb == "DATA":
                self._say("354 go ahead")
                lines = []
                while (line := self.rfile.readline()) not in (b".\r\n", b""):
                    lines.append(line.decode(errors="replace"))
                self.mailbox.messages.append("".join(lines))
                self._say("250 queued")
            elif verb == "QUIT":
                self._say("221 bye")
                return
            else:
                self._say("502 not implemented")


@contextmanager
def smtp_sink() -> Iterator[tuple[int, Mailbox]]:
    mailbox = Mailbox()
    handler = type("Handler", (_Handler,), {"mailbox": mailbox})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], mailbox
    finally:
        server.shutdown()
        server.server_close()
