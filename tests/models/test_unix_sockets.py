"""UNIX domain socket listeners, under every concurrency model (issue #11 item 4).

``--unixsocket PATH`` next to the TCP port: a round trip under every model,
the file mode (``--unixsocketperm``), a stale file replaced, a live one
refused, the file removed on shutdown (SIGTERM to a real process), and
``sockworks client --unix``.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sockworks.models import FORKING_MODELS, MODELS
from tests.conftest import spawn_server
from tests.support import StartServer, recv_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=list(MODELS))
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def unix_connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    return sock


def test_round_trip_and_mode_under_every_model(start_server: StartServer, model: str,
                                               tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    argv = ["serve", "echo", "--model", model, "--unixsocket", str(path),
            "--unixsocketperm", "700", "--log-level", "DEBUG"]
    if model == "prefork":
        argv += ["--workers", "2"]
    server = start_server(*argv, process=model in FORKING_MODELS)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    for _ in range(3):
        with unix_connect(path) as sock:
            sock.sendall(b"over a unix socket\n")
            assert recv_until(sock) == b"OVER A UNIX SOCKET\n"
    server.wait_for_log(f"{path}:0 closed its side".encode())
    with server.connect() as tcp:  # the TCP port still serves
        tcp.sendall(b"tcp\n")
        assert recv_until(tcp) == b"TCP\n"


def test_mode_defaults_to_the_umask(start_server: StartServer, tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    start_server("serve", "echo", "--unixsocket", str(path))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o777 & ~umask


def test_stale_file_is_replaced_and_live_one_refused(start_server: StartServer,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "kv.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # a socket file nobody listens on: a dead server's
    dead.close()
    first = start_server("serve", "echo", "--unixsocket", str(path))
    with unix_connect(path) as sock:
        sock.sendall(b"a\n")
        assert recv_until(sock) == b"A\n"
    with pytest.raises(AssertionError, match="another server is listening on it"):
        spawn_server("serve", "echo", "--unixsocket", str(path))
    with unix_connect(path) as sock:  # the first server is untouched
        sock.sendall(b"b\n")
        assert recv_until(sock) == b"B\n"
    first.stop()
    assert not path.exists()

    regular = tmp_path / "file"
    regular.write_text("not a socket")
    with pytest.raises(AssertionError, match="not a socket"):
        spawn_server("serve", "echo", "--unixsocket", str(regular))
    assert regular.read_text() == "not a socket"


@pytest.mark.parametrize("model", ["asyncio", "thread", "prefork", "socketserver-fork"])
def test_file_removed_on_sigterm(start_server: StartServer, model: str,
                                 tmp_path: Path) -> None:
    path = tmp_path / "echo.sock"
    argv = ["serve", "echo", "--model", model, "--unixsocket", str(path)]
    if model == "prefork":
        argv += ["--workers", "2"]
    server = start_server(*argv, process=True)
    assert path.exists()
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert not path.exists()


def test_sockworks_client_over_unix_socket(start_server: StartServer, tmp_path: Path) -> None:
    path = tmp_path / "kv.sock"
    start_server("serve", "kv", "--unixsocket", str(path))

    def client(*words: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "sockworks", "client", "--unix", str(path),
                               *words], capture_output=True, timeout=30, check=False)

    assert client("SET", "k", "over unix").stdout == b"OK\n"
    assert client("GET", "k").stdout == b"over unix\n"
    missing = subprocess.run([sys.executable, "-m", "sockworks", "client", "--unix",
                              str(tmp_path / "none.sock"), "PING"], capture_output=True,
                             timeout=30, check=False)
    assert missing.returncode == 2
    assert b"cannot connect to unix:" in missing.stderr
