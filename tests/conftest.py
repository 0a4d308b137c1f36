"""Shared fixtures: real servers on port 0, real sockets.

``start_server("serve", "echo", "--model", "thread")`` builds the server that
command line describes, exactly as ``sockworks`` does, and starts it *in this
process* (:class:`sockworks.Server`, port 0): no interpreter start-up, no log
scraping for the port. It returns an :class:`InProcessServer`, whose API is
the same as a process's (``connect``, ``wait_for_log`` over the captured log
lines, ``signal(SIGTERM)`` for a graceful stop, ``wait``).

A real process is started instead (``python -m sockworks``, port learned from
its ``listening on HOST:PORT (model=NAME)`` line) when the test asks for one
with ``process=True`` (exit codes, signals, RSS, children), for the forking
models and for commands that are not TCP ``serve`` commands. Nothing sleeps
and hopes; nothing guesses a free port.
"""

from __future__ import annotations

import logging
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from sockworks.cli import parse_args
from sockworks.cli.serve import build_server
from sockworks.core.logs import make_formatter
from sockworks.models import FORKING_MODELS
from sockworks.server import Server
from tests.netns_support import netns_pair  # noqa: F401  (a fixture, for every test)

# Helpers that tests import live in tests/support.py (see its docstring); they
# are re-exported here only for code that still looks for them in conftest.
from tests.support import IN_CI as IN_CI
from tests.support import StartServer
from tests.support import recv_all as recv_all
from tests.support import recv_lines as recv_lines
from tests.support import recv_until as recv_until
from tests.support import require_binary as require_binary

LISTENING = re.compile(rb"listening on (\S+):(\d+) \(model=([\w-]+)\)")


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    model: str
    output: bytearray = field(default_factory=bytearray)
    addresses: list[tuple[str, int]] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def connect(self, timeout: float = 10.0, index: int = 0) -> socket.socket:
        host, port = self.addresses[index] if self.addresses else self.address
        return socket.create_connection((host, port), timeout=timeout)

    def read_output(self, timeout: float = 0.0) -> bytes:
        """Drain what the server has logged so far (non-blocking after timeout)."""
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self.output += chunk
            if remaining == 0.0:
                continue
        return bytes(self.output)

    def wait_for_log(self, pattern: bytes, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while pattern not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{pattern!r} not logged; got:\n{self.output.decode(errors='replace')}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(f"server exited before logging {pattern!r}:\n"
                                         + self.output.decode(errors="replace"))
                self.output += chunk
        return bytes(self.output)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        rc = self.proc.wait(timeout)
        self.read_output()
        return rc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


def spawn_server(*args: str, expect_listeners: int = 1, env: dict[str, str] | None = None,
                 preexec_fn: Callable[[], object] | None = None, timeout: float = 20.0,
                 module: str = "sockworks") -> ServerProcess:
    argv = list(args)
    if "--port" not in argv:
        argv += ["--port", "0"]
    full_env = dict(os.environ, PYTHONUNBUFFERED="1")
    if env:
        full_env.update(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *argv],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=full_env, preexec_fn=preexec_fn,
    )
    server = ServerProcess(proc, "", 0, "")
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    while len(server.addresses) < expect_listeners:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            proc.kill()
            server.stop()
            raise AssertionError("server did not start:\n" + server.output.decode(errors="replace"))
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            proc.wait(5)
            server.stop()  # closes the pipes
            raise AssertionError(f"server exited ({proc.returncode}) before listening:\n"
                                 + server.output.decode(errors="replace"))
        server.output += chunk
        server.addresses = [
            (m.group(1).decode().strip("[]"), int(m.group(2)))
            for m in LISTENING.finditer(server.output)
        ]
        if server.addresses:
            m = LISTENING.search(server.output)
            assert m is not None
            server.model = m.group(3).decode()
    server.host, server.port = server.addresses[0]
    return server


class LogCapture(logging.Handler):
    """The sockworks log lines of an in-process server, formatted as the
    command line would print them, for ``wait_for_log``."""

    def __init__(self, fmt: str) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(make_formatter(fmt))
        self.output = bytearray()
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        line = (self.format(record) + "\n").encode(errors="replace")
        with self.changed:
            self.output += line
            self.changed.notify_all()


class InProcessServer:
    """A server built from a command line, running in this process."""

    def __init__(self, server: Server, capture: LogCapture) -> None:
        self.server = server
        self.capture = capture
        self.addresses = server.addresses
        self.host, self.port = self.addresses[0]
        self.model = server.model
        self._stopper: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def output(self) -> bytearray:
        return self.capture.output

    def connect(self, timeout: float = 10.0, index: int = 0) -> socket.socket:
        return socket.create_connection(self.addresses[index], timeout=timeout)

    def read_output(self, timeout: float = 0.0) -> bytes:
        """What the server has logged so far (waiting up to ``timeout`` for more)."""
        with self.capture.changed:
            if timeout:
                self.capture.changed.wait(timeout)
            return bytes(self.capture.output)

    def wait_for_log(self, pattern: bytes, timeout: float = 10.0) -> bytes:
        with self.capture.changed:
            if not self.capture.changed.wait_for(lambda: pattern in self.capture.output,
                                                 timeout):
                raise AssertionError(f"{pattern!r} not logged; got:\n"
                                     + self.capture.output.decode(errors="replace"))
            return bytes(self.capture.output)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Stop gracefully on SIGTERM/SIGINT, as the process would.

        A second signal's "exit at once" needs a real process (``process=True``).
        """
        assert sig in (signal.SIGTERM, signal.SIGINT), "in-process: only a graceful stop"
        assert self._stopper is None, "a second signal needs start_server(process=True)"
        self._stopper = threading.Thread(target=self.server.stop, daemon=True)
        self._stopper.start()

    def wait(self, timeout: float = 30.0) -> int:
        """0 once a signalled server has stopped (as a clean exit)."""
        assert self._stopper is not None, "wait() without signal()"
        self._stopper.join(timeout)
        if self._stopper.is_alive():
            raise subprocess.TimeoutExpired("in-process server", timeout)
        return 0

    def stop(self) -> None:
        try:
            self.server.stop(timeout=30)
        finally:
            logging.getLogger("sockworks").removeHandler(self.capture)


def start_in_process(argv: list[str]) -> InProcessServer | None:
    """The server of a ``serve`` command line, started here; None when the
    command must run as a process (not a TCP service, or a forking model)."""
    args = parse_args(argv)
    if (getattr(args, "endpoints", None) is None or args.model in FORKING_MODELS
            or args.log_file is not None):
        return None
    capture = LogCapture(args.log_format)
    package_logger = logging.getLogger("sockworks")
    package_logger.setLevel(args.log_level)
    package_logger.addHandler(capture)
    try:
        server = build_server(args, args.endpoints)
        server.start()
    except BaseException:
        package_logger.removeHandler(capture)
        raise
    return InProcessServer(server, capture)


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Factory fixture: ``start_server(*argv, process=False, **spawn options)``;
    every server it starts is stopped after the test."""
    started: list[ServerProcess | InProcessServer] = []

    def start(*args: str, process: bool = False,
              **kwargs: Any) -> ServerProcess | InProcessServer:
        server: ServerProcess | InProcessServer | None = None
        spawn_only = {name for name, value in kwargs.items()
                      if value is not None and name != "expect_listeners"}
        if not process and not spawn_only:
            argv = list(args)
            if "--port" not in argv:
                argv += ["--port", "0"]
            server = start_in_process(argv)
        if server is None:
            server = spawn_server(*args, **kwargs)
        started.append(server)
        return server

    yield cast(StartServer, start)
    for server in started:
        server.stop()
