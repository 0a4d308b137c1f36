"""systemd integration (issue #14, item 3): sd_notify and socket activation.

Real processes (``python -m sockworks``). Notify messages arrive on an
AF_UNIX datagram socket the test owns (a path, and an abstract name);
activation runs under the real ``systemd-socket-activate`` for every TCP
model, and with descriptors the test opened itself (``pass_fds``, the
``LISTEN_*`` protocol spoken by hand). Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sockworks.models import MODELS
from tests.conftest import ServerProcess, spawn_server
from tests.redis_support import probe_free_port
from tests.support import require_binary

pytestmark = pytest.mark.timeout(90)

#: Interpreter start-up plus the first reply.
REPLY_TIMEOUT = 30.0


def receive(sock: socket.socket, want: str, timeout: float = 20.0) -> list[str]:
    """Datagrams until one holds the line ``want``; all of them, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {want!r} within {timeout}s; got {seen}"
        sock.settimeout(remaining)
        message = sock.recv(4096).decode()
        seen.append(message)
        if want in message.split("\n"):
            return seen


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest, tmp_path: Path
                  ) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify")
        sock.bind(address)
    else:
        address = f"@sockworks-test-{os.getpid()}-{id(sock)}"
        sock.bind("\0" + address[1:])
    with sock:
        yield sock, address


def test_ready_status_watchdog_stopping(notify_socket: tuple[socket.socket, str],
                                        tmp_path: Path) -> None:
    sock, address = notify_socket
    server = spawn_server("serve", "kv", "--data-dir", str(tmp_path / "data"),
                          env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
    try:
        seen = receive(sock, "READY=1")
        assert "STATUS=opening the store" in seen[0]
        ready = seen[-1].split("\n")
        assert f"STATUS=listening on 127.0.0.1:{server.port} (model=asyncio)" in ready
        assert f"MAINPID={server.proc.pid}" in ready
        # The server was listening when it said so.
        with server.connect() as conn:
            assert conn.recv(100) == b"READY\n"
        # Watchdog pings every 0.1 s (half of WATCHDOG_USEC): two in a row.
        receive(sock, "WATCHDOG=1")
        receive(sock, "WATCHDOG=1")
        server.signal(signal.SIGTERM)
        stopping = receive(sock, "STOPPING=1")[-1]
        assert "STATUS=shutting down" in stopping
        assert server.wait() == 0
    finally:
        server.stop()


def test_no_notify_socket_no_messages() -> None:
    """Without NOTIFY_SOCKET nothing is sent and nothing breaks."""
    server = spawn_server("serve", "echo", env={"NOTIFY_SOCKET": ""})
    try:
        with server.connect() as conn:
            conn.sendall(b"hi\n")
            assert conn.recv(10) == b"HI\n"
    finally:
        server.stop()


# -- socket activation -----------------------------------------------------------

def start_activated(argv: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """systemd-socket-activate on a probed free port (retried when another
    process took it first, a bounded number of times)."""
    binary = require_binary("systemd-socket-activate")
    for _ in range(5):
        port = probe_free_port()
        proc = subprocess.Popen([binary, "-l", f"127.0.0.1:{port}", *argv],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        assert proc.stderr is not None
        line = proc.stderr.readline()      # "Listening on 127.0.0.1:PORT as 3." or a failure
        if b"Listening on" in line:
            return proc, port
        proc.wait(10)
        proc.stderr.close()
    raise AssertionError("systemd-socket-activate could not listen in 5 attempts")


@pytest.mark.parametrize("model", MODELS)
def test_systemd_socket_activate_every_model(model: str) -> None:
    proc, port = start_activated(["--fdname=echo", sys.executable, "-m", "sockworks",
                                  "serve", "echo", "--model", model, "--port", "1",
                                  *(["--workers", "2"] if model == "prefork" else [])])
    server = ServerProcess(proc, "127.0.0.1", port, model)
    try:
        # The first connection makes systemd-socket-activate start the server
        # on the socket it holds (--port 1 is never bound: it would fail).
        with socket.create_connection(("127.0.0.1", port), timeout=REPLY_TIMEOUT) as conn:
            for text in (b"one\n", b"two\n"):
                conn.sendall(text)
                assert conn.recv(100) == text.upper()
        server.wait_for_log(f"listening on 127.0.0.1:{port} (model={model})".encode(),
                            timeout=REPLY_TIMEOUT)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.stop()


def test_passed_descriptors_matched_by_name(tmp_path: Path) -> None:
    """The LISTEN_* protocol by hand: two sockets the test opened, passed as
    fds 3 and 4 named ``resp:kv`` (not the endpoints' order), LISTEN_PID set
    by the shell that execs the server."""
    resp = socket.create_server(("127.0.0.1", 0))
    text = socket.create_server(("127.0.0.1", 0))
    fds = (resp.fileno(), text.fileno())

    def to_3_and_4() -> None:
        low = [os.dup(fd) for fd in fds]       # out of the way of 3 and 4
        os.dup2(low[0], 3)
        os.dup2(low[1], 4)

    proc = subprocess.Popen(
        ["sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", sys.executable, "-m", "sockworks",
         "serve", "kv", "--port", "1", "--resp-port", "2"],
        env=dict(os.environ, LISTEN_FDS="2", LISTEN_FDNAMES="resp:kv", PYTHONUNBUFFERED="1"),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        pass_fds=(3, 4, *fds), preexec_fn=to_3_and_4)
    server = ServerProcess(proc, "127.0.0.1", text.getsockname()[1], "asyncio")
    try:
        server.wait_for_log(f"listening on 127.0.0.1:{resp.getsockname()[1]}".encode(),
                            timeout=REPLY_TIMEOUT)
        with socket.create_connection(text.getsockname(), timeout=REPLY_TIMEOUT) as conn:
            assert conn.recv(100) == b"READY\n"
        with socket.create_connection(resp.getsockname(), timeout=REPLY_TIMEOUT) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            assert conn.recv(100) == b"+PONG\r\n"
    finally:
        server.stop()
        resp.close()
        text.close()


def test_unmatched_descriptor_stops_startup() -> None:
    extra = socket.create_server(("127.0.0.1", 0))
    other = socket.create_server(("127.0.0.1", 0))
    fds = (extra.fileno(), other.fileno())

    def to_3_and_4() -> None:
        low = [os.dup(fd) for fd in fds]
        os.dup2(low[0], 3)
        os.dup2(low[1], 4)

    try:
        done = subprocess.run(
            ["sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", sys.executable, "-m", "sockworks",
             "serve", "echo"],
            env=dict(os.environ, LISTEN_FDS="2", LISTEN_FDNAMES="echo:metrics"),
            stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False,
            pass_fds=(3, 4, *fds), preexec_fn=to_3_and_4)
        assert done.returncode == 1
        assert b"1 socket(s) not matched to an endpoint (metrics)" in done.stderr
    finally:
        extra.close()
        other.close()
