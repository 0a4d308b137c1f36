"""`sockworks client` and KvClient against a real KV server process.

One-shot exit codes (0 ok, 1 ERROR reply, 2 connection problem), stdin
scripts, the interactive prompt on a real pseudo-terminal with its history
file, and the client's handling of greetings, closes and timeouts.
"""

from __future__ import annotations

import os
import pty
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sockworks.client import ConnectionClosed, KvClient, ProtocolError, ServerError, parse_stats
from tests.support import StartServer


@pytest.fixture
def kv(start_server: StartServer) -> Any:
    return start_server("serve", "kv")


def client(server: Any, *words: str | bytes, stdin: bytes | None = None,
           env: dict[str, str] | None = None,
           port: int | None = None) -> subprocess.CompletedProcess[bytes]:
    argv: list[str | bytes] = [sys.executable, "-m", "sockworks", "client", "--port",
                               str(port if port is not None else server.port), *words]
    return subprocess.run(argv, input=stdin if stdin is not None else b"", capture_output=True,
                          timeout=30, env=env, check=False)


def test_one_shot_commands(kv: Any) -> None:
    result = client(kv, "SET", "greeting", "hello  world")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"OK\n", b"")
    result = client(kv, "GET", "greeting")
    assert (result.returncode, result.stdout) == (0, b"hello  world\n")
    result = client(kv, "GET", "missing")
    assert (result.returncode, result.stdout) == (0, b"NOT_FOUND\n")


def test_error_reply_exits_1(kv: Any) -> None:
    result = client(kv, "FROB")
    assert (result.returncode, result.stdout) == (1, b"ERROR: unknown command\n")
    client(kv, "SET", "s", "text")
    assert client(kv, "INCR", "s").returncode == 1


def test_negative_numbers_are_arguments_not_options(kv: Any) -> None:
    result = client(kv, "INCRBY", "n", "-5")
    assert (result.returncode, result.stdout) == (0, b"-5\n")


def test_non_utf8_arguments_round_trip(kv: Any) -> None:
    assert client(kv, b"SET", b"\xff\xfe", b"caf\xe9 \x80").stdout == b"OK\n"
    assert client(kv, b"GET", b"\xff\xfe").stdout == b"caf\xe9 \x80\n"


def test_newline_in_an_argument_is_refused(kv: Any) -> None:
    result = client(kv, "SET", "k", "two\nlines")
    assert result.returncode == 2
    assert b"newline" in result.stderr
    assert client(kv, "EXISTS", "k").stdout == b"0\n"


def test_connection_refused_exits_2() -> None:
    # A bound socket that is not listening refuses connections on its port.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        result = client(None, "PING", port=port)
    assert result.returncode == 2
    assert result.stderr.decode().strip().splitlines() == [
        f"sockworks client: cannot connect to 127.0.0.1:{port}: Connection refused"]


def test_server_closing_exits_2(kv: Any) -> None:
    result = client(kv, "GET", "/", "HTTP/1.1")  # looks like HTTP: the server hangs up
    assert result.returncode == 2
    assert b"closed the connection" in result.stderr


def test_no_greeting_times_out(kv: Any) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # connects complete in the backlog; nothing is ever sent
        argv = [sys.executable, "-m", "sockworks", "client", "--port",
                str(silent.getsockname()[1]), "--timeout", "0.3", "PING"]
        result = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    assert result.returncode == 2
    assert b"no greeting" in result.stderr


def test_commands_from_stdin(kv: Any) -> None:
    result = client(kv, stdin=b"SET a 1\r\n\nINCR a\nGET a\n")
    assert (result.returncode, result.stdout) == (0, b"OK\n2\n2\n")
    result = client(kv, stdin=b"GET a\nBOGUS\nQUIT\nSET a 5\n")
    assert (result.returncode, result.stdout) == (1, b"2\nERROR: unknown command\nBYE\n")
    assert client(kv, "GET", "a").stdout == b"2\n"


def test_piped_session_exits_0_after_quit_or_end_of_input(kv: Any) -> None:
    result = client(kv, stdin=b"PING\nQUIT\nPING\n")  # nothing is sent after QUIT
    assert (result.returncode, result.stdout, result.stderr) == (0, b"PONG\nBYE\n", b"")
    result = client(kv, stdin=b"SET k v\nGET k")  # end of input, no final newline
    assert (result.returncode, result.stdout, result.stderr) == (0, b"OK\nv\n", b"")
    result = client(kv, stdin=b"")  # Ctrl-D at once
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def read_until(fd: int, marker: bytes, timeout: float = 10.0) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while marker not in data:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"{marker!r} not seen in {data!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            assert chunk, f"terminal closed before {marker!r}: {data!r}"
            data += chunk
    return data


@pytest.fixture
def terminal_client(kv: Any, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    pytest.importorskip("readline")
    parent, child = pty.openpty()
    env = dict(os.environ, HOME=str(tmp_path), TERM="dumb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sockworks", "client", "--port", str(kv.port)],
        stdin=child, stdout=child, stderr=child, env=env, close_fds=True)
    os.close(child)
    try:
        yield proc, parent
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        os.close(parent)


def test_interactive_prompt_keeps_history(terminal_client: tuple[subprocess.Popen[bytes], int],
                                          kv: Any, tmp_path: Path) -> None:
    proc, fd = terminal_client
    prompt = f"127.0.0.1:{kv.port}> ".encode()
    read_until(fd, prompt)
    os.write(fd, b"SET tty yes\r")
    assert b"OK" in read_until(fd, b"OK\r\n" + prompt)
    os.write(fd, b"GET tty\r")
    assert b"yes" in read_until(fd, b"yes\r\n" + prompt)
    os.write(fd, b"STATS\r")  # one field per line on a terminal
    shown = read_until(fd, prompt)
    assert b"connections_current" in shown and b"\r\nkeys " in shown
    os.write(fd, b"\x04")  # Ctrl-D ends the session
    assert proc.wait(10) == 0
    history = (tmp_path / ".sockworks_history").read_text()
    assert "SET tty yes" in history and "GET tty" in history


@pytest.mark.parametrize("ending", [b"QUIT\r", b"\x04"], ids=["QUIT", "Ctrl-D"])
def test_interactive_session_exits_0_after_an_error_reply(
        terminal_client: tuple[subprocess.Popen[bytes], int], kv: Any, ending: bytes) -> None:
    # The person saw the error; ending the session normally is not a failure.
    proc, fd = terminal_client
    prompt = f"127.0.0.1:{kv.port}> ".encode()
    read_until(fd, prompt)
    os.write(fd, b"BOGUS\r")
    assert b"ERROR: unknown command" in read_until(fd, b"command\r\n" + prompt)
    os.write(fd, ending)
    assert proc.wait(10) == 0


# -- KvClient ------------------------------------------------------------------


def test_kv_client_typed_commands(kv: Any) -> None:
    with KvClient(kv.host, kv.port) as kvc:
        kvc.ping()
        kvc.set(b"k", "v a l")
        assert kvc.get("k") == b"v a l"
        assert kvc.get(b"nope") is None
        assert kvc.exists(b"k", b"k", b"nope") == 2
        assert kvc.incr(b"n") == 1
        assert kvc.incr(b"n", 9) == 10
        assert kvc.expire(b"n", 50) and kvc.ttl(b"n") == 50
        assert kvc.persist(b"n") and kvc.ttl(b"n") == -1
        assert kvc.dbsize() == 2
        assert kvc.delete(b"k") and not kvc.delete(b"k")
        assert kvc.compact().startswith("OK")
        stats = kvc.stats()
        assert stats["keys"] == "1" and int(stats["connections_current"]) >= 1
        with pytest.raises(ServerError, match="not an integer"):
            kvc.incr(b"n", 2**63)  # the server refuses an out-of-range increment
        with pytest.raises(ValueError):
            kvc.set(b"k", b"two\nlines")
        assert kvc.pipeline([b"SET p 1", b"INCR p", b"GET p"]) == [b"OK", b"2", b"2"]
        kvc.quit()
        with pytest.raises(ConnectionClosed):
            kvc.ping()


def test_kv_client_sees_the_server_close(kv: Any) -> None:
    with KvClient(kv.host, kv.port) as kvc, pytest.raises(ConnectionClosed):
        kvc.execute(b"POST / HTTP/1.1")


def test_kv_client_reports_server_busy(start_server: StartServer) -> None:
    server = start_server("serve", "kv", "--max-connections", "1")
    with KvClient(server.host, server.port):
        with pytest.raises(ServerError, match="server busy"):
            KvClient(server.host, server.port)
        result = client(server, "PING")
        assert result.returncode == 2 and b"server busy" in result.stderr


def test_kv_client_rejects_a_non_kv_server() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(10)
        port = listener.getsockname()[1]
        conn: socket.socket | None = None

        def greet() -> None:
            nonlocal conn
            conn, _ = listener.accept()
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

        thread = threading.Thread(target=greet)
        thread.start()
        try:
            with pytest.raises(ProtocolError, match="unexpected greeting"):
                KvClient("127.0.0.1", port, timeout=10)
        finally:
            thread.join(10)
            if conn is not None:
                conn.close()


def test_parse_stats() -> None:
    assert parse_stats(b"STATS a=1 b=x_y") == {"a": "1", "b": "x_y"}
    with pytest.raises(ProtocolError):
        parse_stats(b"OK")
    with pytest.raises(ProtocolError):
        parse_stats(b"STATS broken")


def test_prompt_reconnects_after_the_server_drops_an_idle_connection(start_server: StartServer) -> None:
    server = start_server("serve", "kv", "--idle-timeout", "0.3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sockworks", "client", "--port", str(server.port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b"SET a 1\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"OK\n"
        with KvClient(server.host, server.port) as watcher:  # wait, bounded, for the drop
            for _ in range(100):
                if watcher.stats()["connections_idle_closed"] != "0":
                    break
                threading.Event().wait(0.1)
            assert watcher.stats()["connections_idle_closed"] != "0"
        proc.stdin.write(b"INCR a\n")
        proc.stdin.close()
        assert proc.stdout.read() == b"2\n"
        assert proc.wait(10) == 0
        assert proc.stderr is not None
        assert b"reconnected" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
