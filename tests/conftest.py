"""Shared fixtures: real server processes on port 0, real sockets.

``start_server("serve", "echo", "--model", "thread")`` runs ``python -m
sockworks`` with ``--port 0`` (unless given), waits for the one
``listening on HOST:PORT (model=NAME)`` log line and returns the process with
the real bound address. Nothing sleeps and hopes; nothing guesses a free port.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

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
                 preexec_fn: Callable[[], object] | None = None, timeout: float = 20.0) -> ServerProcess:
    argv = list(args)
    if "--port" not in argv:
        argv += ["--port", "0"]
    full_env = dict(os.environ, PYTHONUNBUFFERED="1")
    if env:
        full_env.update(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sockworks", *argv],
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


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Factory fixture: every server it starts is stopped after the test."""
    started: list[ServerProcess] = []

    def start(*args: str, **kwargs: object) -> ServerProcess:
        server = spawn_server(*args, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
