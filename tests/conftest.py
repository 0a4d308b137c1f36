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
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

LISTENING = re.compile(rb"listening on (\S+):(\d+) \(model=([\w-]+)\)")
IN_CI = os.environ.get("CI") == "true"


def require_binary(name: str) -> str:
    """Path of an external program the test needs: skip without it on a
    developer's machine, fail under CI=true (where .ci/run installs it)."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required under CI=true but is not installed")
        pytest.skip(f"{name} not installed")
    return path


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
                 preexec_fn=None, timeout: float = 20.0) -> ServerProcess:
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
def start_server() -> Iterator[object]:
    """Factory fixture: every server it starts is stopped after the test."""
    started: list[ServerProcess] = []

    def start(*args: str, **kwargs: object) -> ServerProcess:
        server = spawn_server(*args, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def recv_until(sock: socket.socket, terminator: bytes = b"\n", limit: int = 1 << 20) -> bytes:
    """Read until ``terminator`` is seen or the peer closes; never past ``limit``."""
    buf = b""
    while terminator not in buf and len(buf) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def recv_lines(sock: socket.socket, count: int) -> list[bytes]:
    buf = b""
    while buf.count(b"\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n")[:count]


def recv_all(sock: socket.socket) -> bytes:
    """Read until the peer closes (the socket must have a timeout)."""
    buf = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        buf += chunk
    return buf
