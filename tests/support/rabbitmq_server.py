"""A real Debian rabbitmq-server with the management plugin, on free loopback ports.

Everything the node writes (mnesia, logs, the Erlang cookie) lives in a temporary
directory, and the node uses its own epmd on a private port, so tests never meet a
system RabbitMQ or each other. `kill()` stops the node without a clean shutdown, the
way a crashed broker looks to a client.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.redis_server import free_port

START_TIMEOUT_S = 60.0
DEBIAN_SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"
USER = "guest"
PASSWORD = "guest"

# Queue statistics (messages_ready and the rest) reach the management API every
# `collect_statistics_interval`, and the management agent samples them at its smallest
# retention interval: 5 s each by default. Tests (like an operator's broker should) use 1 s.
CONFIG = """\
listeners.tcp.default = 127.0.0.1:{amqp_port}
management.tcp.ip = 127.0.0.1
management.tcp.port = {http_port}
collect_statistics_interval = {stats_interval_ms}
management.sample_retention_policies.global.minute = 1
management.sample_retention_policies.basic.minute = 1
management.sample_retention_policies.detailed.10 = 1
disk_free_limit.absolute = 1MB
log.console = false
log.file.level = warning
"""


@dataclass
class RabbitMQServer:
    dir: Path
    amqp_port: int
    http_port: int
    dist_port: int
    epmd_port: int
    stats_interval_ms: int = 500
    proc: subprocess.Popen[bytes] | None = None
    epmd: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://{USER}:{PASSWORD}@127.0.0.1:{self.amqp_port}//"

    @property
    def management_url(self) -> str:
        return f"http://{USER}:{PASSWORD}@127.0.0.1:{self.http_port}"

    @property
    def nodename(self) -> str:
        return f"celeriac-test-{self.amqp_port}@localhost"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HOME=str(self.dir),  # the Erlang cookie is written here
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_CONFIG_FILE=str(self.dir / "rabbitmq.conf"),
            RABBITMQ_MNESIA_BASE=str(self.dir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.dir / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.dir / "enabled_plugins"),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_PORT=str(self.epmd_port),
            RABBITMQ_PID_FILE=str(self.dir / "rabbit.pid"),
            ERL_CRASH_DUMP=str(self.dir / "erl_crash.dump"),
        )
        return env

    def start(self) -> None:
        # Debian's /usr/sbin/rabbitmq-server switches to the rabbitmq user, which cannot
        # enter the test's private temp dir; the script it wraps runs as the caller.
        binary = DEBIAN_SCRIPT if Path(DEBIAN_SCRIPT).exists() else shutil.which("rabbitmq-server")
        if binary is None:
            raise RuntimeError(
                "rabbitmq-server is not installed: run `make system-deps` (Debian rabbitmq-server)"
            )
        (self.dir / "rabbitmq.conf").write_text(
            CONFIG.format(
                amqp_port=self.amqp_port,
                http_port=self.http_port,
                stats_interval_ms=self.stats_interval_ms,
            )
        )
        (self.dir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        for sub in ("mnesia", "log"):
            (self.dir / sub).mkdir(exist_ok=True)
        if self.epmd is None:
            self.epmd = subprocess.Popen(
                ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        self.proc = subprocess.Popen(
            [binary],
            env=self._env(),
            stdout=(self.dir / "stdout.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() takes beam and children
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited early: {self.log_tail()}")
            try:
                self.api("GET", "/api/overview")
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.25)
        raise RuntimeError(
            f"rabbitmq-server did not answer on port {self.http_port} within "
            f"{START_TIMEOUT_S:.0f} s: {self.log_tail()}"
        )

    def log_tail(self) -> str:
        out = self.dir / "stdout.log"
        return out.read_text(errors="replace")[-2000:] if out.exists() else ""

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One management API call as the admin user (test set-up and checks only)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": "Basic "
                + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def kill(self) -> None:
        """SIGKILL the node's process group: no clean shutdown, sockets just go away."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None
        if self.epmd is not None and self.epmd.poll() is None:
            self.epmd.terminate()
            self.epmd.wait(timeout=10)
        self.epmd = None


@contextmanager
def running_rabbitmq(stats_interval_ms: int = 500) -> Iterator[RabbitMQServer]:
    with tempfile.TemporaryDirectory(prefix="celeriac-rabbitmq-") as tmp:
        server = RabbitMQServer(
            dir=Path(tmp),
            amqp_port=free_port(),
            http_port=free_port(),
            dist_port=free_port(),
            epmd_port=free_port(),
            stats_interval_ms=stats_interval_ms,
        )
        try:
            server.start()
            yield server
        finally:
            server.stop()
