"""Which hot path runs, and that the build made the compiled one where it should.

The compiled fast path (services/_fastpath.pyx) is optional: a machine
without a C compiler installs and runs the pure-Python path. CI has a
compiler, so under CI=true a missing extension is a build regression, not a
reason to skip: ``make test`` runs the suite once with the extension in use
and once with ``SOCKWORKS_NO_EXTENSIONS=1`` (.ci/run), and each run checks
here that it runs the path it was asked for.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from sockworks.protocols.resp import encode_command
from sockworks.services import accel
from sockworks.services.kv import KvService
from tests.support import StartServer, recv_until

PURE_REQUESTED = os.environ.get(accel.DISABLE_VARIABLE, "") not in ("", "0")


def version() -> str:
    return subprocess.run([sys.executable, "-m", "sockworks", "--version"], capture_output=True,
                           text=True, check=True, timeout=60).stdout.strip()


def test_the_requested_path_is_the_one_in_use() -> None:
    session = KvService().new_session("127.0.0.1:1")
    resp_session = KvService().resp_service().new_session("127.0.0.1:1")
    if PURE_REQUESTED:
        assert accel.FASTPATH is None
        assert session._fast is None and resp_session._fast is None
        assert "pure Python (SOCKWORKS_NO_EXTENSIONS is set)" in version()
    elif os.environ.get("CI") == "true" or accel.compiled_module() is not None:
        # CI builds with a compiler: the extension must be there and used.
        assert accel.compiled_module() is not None, "the C extension was not built"
        assert accel.FASTPATH is accel.compiled_module()
        assert session._fast is not None and resp_session._fast is not None
        assert "hot path: compiled (Cython C extension)" in version()
    else:  # a developer machine without a compiler
        assert accel.FASTPATH is None
        assert "pure Python (the C extension was not built)" in version()


def test_renamed_commands_keep_every_session_on_the_reference_path() -> None:
    # --rename-command changes what GET/SET/... mean; the fast path knows
    # only the standard names, so it is off for such a server.
    service = KvService(rename_commands={"get": "fetch"})
    assert service.new_session("127.0.0.1:1")._fast is None
    assert service.resp_service().new_session("127.0.0.1:1")._fast is None


def test_a_blocking_pop_in_a_fast_pipeline_holds_what_follows(start_server: StartServer) -> None:
    """The compiled path runs the SET, hands BLPOP to the reference (which
    parks the client), and the GET behind it waits for the wait's reply,
    on whichever path this suite runs."""
    server = start_server("serve", "kv", "--resp-port", "0", "--model", "asyncio",
                          process=True, expect_listeners=2)
    port = server.addresses[1][1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as waiter, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as pusher:
        waiter.sendall(encode_command([b"SET", b"a", b"1"]) + encode_command([b"BLPOP", b"l", b"0"])
                       + encode_command([b"GET", b"a"]))
        assert recv_until(waiter, b"+OK\r\n") == b"+OK\r\n"
        # Blocked (INFO says so) before the push, so the push is what ends the wait.
        deadline = time.monotonic() + 10
        while b"blocked_clients:1" not in _info(pusher):
            assert time.monotonic() < deadline, "the client never blocked"
        pusher.sendall(encode_command([b"LPUSH", b"l", b"x"]))
        assert recv_until(pusher, b"\r\n") == b":1\r\n"
        expected = b"*2\r\n$1\r\nl\r\n$1\r\nx\r\n$1\r\n1\r\n"
        assert recv_until(waiter, expected) == expected


def _info(sock: socket.socket) -> bytes:
    # One section: its bulk ends at the first blank line.
    sock.sendall(encode_command([b"INFO", b"clients"]))
    return recv_until(sock, b"\r\n\r\n")


def test_session_states_that_change_a_command_keep_it_off_the_fast_path(
        start_server: StartServer) -> None:
    """Subscribed mode, CLIENT REPLY OFF, MONITOR and keyspace events all
    change what a plain GET or SET does; in canonical frames (which the
    compiled path would take) they get the reference's answers."""
    server = start_server("serve", "kv", "--resp-port", "0", "--model", "asyncio",
                          process=True, expect_listeners=2)
    port = server.addresses[1][1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sub, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as watcher, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        # RESP2 subscribed mode refuses GET.
        sub.sendall(encode_command([b"SUBSCRIBE", b"c"]))
        recv_until(sub, b":1\r\n")
        sub.sendall(encode_command([b"GET", b"k"]))
        assert recv_until(sub, b"\r\n").startswith(b"-ERR Can't execute 'get'")
        # CLIENT REPLY OFF: the SET and GET answer nothing; ON answers again.
        client.sendall(encode_command([b"CLIENT", b"REPLY", b"OFF"])
                       + encode_command([b"SET", b"k", b"v"]) + encode_command([b"GET", b"k"])
                       + encode_command([b"CLIENT", b"REPLY", b"ON"]))
        assert recv_until(client, b"+OK\r\n") == b"+OK\r\n"
        client.sendall(encode_command([b"GET", b"k"]))
        assert recv_until(client, b"v\r\n") == b"$1\r\nv\r\n"
        # MONITOR sees another client's GET.
        watcher.sendall(encode_command([b"MONITOR"]))
        assert recv_until(watcher, b"+OK\r\n") == b"+OK\r\n"
        client.sendall(encode_command([b"GET", b"k"]))
        assert recv_until(client, b"v\r\n") == b"$1\r\nv\r\n"
        assert b'"GET" "k"' in recv_until(watcher, b'"k"\r\n')
        # Keyspace events fire for a SET sent as a canonical frame.
        client.sendall(encode_command([b"CONFIG", b"SET", b"notify-keyspace-events", b"E$"]))
        assert recv_until(client, b"+OK\r\n") == b"+OK\r\n"
        sub.sendall(encode_command([b"SUBSCRIBE", b"__keyevent@0__:set"]))
        recv_until(sub, b":2\r\n")
        client.sendall(encode_command([b"SET", b"k", b"w"]))
        assert recv_until(client, b"+OK\r\n") == b"+OK\r\n"
        event = b"*3\r\n$7\r\nmessage\r\n$18\r\n__keyevent@0__:set\r\n$1\r\nk\r\n"
        assert recv_until(sub, event) == event
