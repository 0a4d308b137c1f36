"""--rename-command: commands renamed or disabled on both KV ports, as Redis's.

The RESP replies (an unknown command's error, a renamed command still named
by its real name in argument errors) are compared byte for byte with a real
redis-server started with the same renames.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from sockworks.services.renames import CommandRenames, spellings
from tests.redis_support import RedisServer, start_redis
from tests.support import RunningServer, StartServer, recv_lines, require_binary

RENAMES = ["--rename-command", "KEYS", "", "--rename-command", "CONFIG", "cfg-7f3a",
           "--rename-command", "DEL", "remove", "--rename-command", "GET", "fetch"]


def test_spellings() -> None:
    assert spellings(b"get") == {b"get", b"GET", b"Get", b"gEt", b"geT", b"GEt", b"GeT", b"gET"}


@pytest.mark.parametrize(("pairs", "reason"), [
    ([("NOPE", "x")], "no such command in rename-command: 'nope'"),
    ([("GET", "set")], "target command name already exists: 'set'"),
    ([("GET", "a"), ("DEL", "A")], "target command name already exists: 'a'"),
    ([("GET", "two words")], "cannot contain spaces"),
])
def test_bad_renames_are_refused(pairs: list[tuple[str, str]], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        CommandRenames.of(pairs).check(["GET", "SET", "DEL"])


def test_swapping_two_names_is_allowed() -> None:
    renames = CommandRenames.of([("GET", "DEL"), ("DEL", "GET")])
    renames.check(["GET", "DEL"])
    assert renames.text_words([b"GET", b"DEL"]) == {b"GET": b"DEL", b"DEL": b"GET"}


def test_bad_rename_stops_start_up(start_server: StartServer) -> None:
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "sockworks", "serve", "kv", "--port", "0",
                           "--rename-command", "NOSUCH", "x"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2
    assert done.stderr == ("sockworks serve kv: --rename-command: no such command in "
                           "rename-command: 'nosuch'\n")


@pytest.fixture
def kv(start_server: StartServer) -> RunningServer:
    return start_server("serve", "kv", "--resp-port", "0", *RENAMES, expect_listeners=2)


def text(server: RunningServer, *requests: bytes) -> list[bytes]:
    with server.connect() as sock:
        assert recv_lines(sock, 1) == [b"READY"]
        sock.sendall(b"".join(r + b"\n" for r in requests))
        return recv_lines(sock, len(requests))


def resp(port: int, data: bytes, replies: int = 1) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while received.count(b"\r\n") < replies:
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        return received


def test_text_port(kv: RunningServer) -> None:
    assert text(kv, b"SET k v", b"GET k", b"fetch k", b"FETCH k", b"DEL k", b"remove k",
                b"fetch k") == [b"OK", b"ERROR: unknown command", b"v", b"v",
                                b"ERROR: unknown command", b"DELETED", b"NOT_FOUND"]
    # The renamed command keeps its rules (and its name in usage errors).
    assert text(kv, b"REMOVE") == [b"ERROR: wrong number of arguments (usage: DEL key)"]


def resp_until(port: int, data: bytes, last: bytes) -> bytes:
    """Every reply to ``data`` (whose final request is answered by ``last``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while not received.endswith(last):
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
        return received


@pytest.fixture(scope="module")
def redis_renamed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = require_binary("redis-server")
    server = start_redis(binary, tmp_path_factory.mktemp("redis-renamed"), RENAMES)
    yield server
    server.kill()


CASES = [
    b"*2\r\n$4\r\nKEYS\r\n$1\r\n*\r\n",
    b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$10\r\nmaxclients\r\n",
    b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
    b"*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n",
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
    b"*2\r\n$5\r\nfetch\r\n$1\r\nk\r\n",
    b"*2\r\n$5\r\nFeTcH\r\n$1\r\nk\r\n",
    b"*1\r\n$5\r\nfetch\r\n",
    b"*2\r\n$6\r\nremove\r\n$1\r\nk\r\n",
    b"*2\r\n$8\r\ncfg-7f3a\r\n$3\r\nGET\r\n",
]


@pytest.mark.redis
def test_resp_port_matches_redis(kv: RunningServer, redis_renamed: RedisServer) -> None:
    """The same requests, in order, on one connection to each: the same bytes."""
    flush = b"*1\r\n$8\r\nFLUSHALL\r\n"
    stream = flush + b"".join(CASES) + b"*2\r\n$4\r\nECHO\r\n$3\r\nend\r\n"
    ours = resp_until(kv.addresses[1][1], stream, b"$3\r\nend\r\n")
    theirs = resp_until(redis_renamed.address[1], stream, b"$3\r\nend\r\n")
    assert ours.split(b"\r\n") == theirs.split(b"\r\n")


def test_resp_renamed_config_answers(kv: RunningServer) -> None:
    port = kv.addresses[1][1]
    reply = resp(port, b"*3\r\n$8\r\ncfg-7f3a\r\n$3\r\nGET\r\n$10\r\nmaxclients\r\n", 3)
    assert reply == b"*2\r\n$10\r\nmaxclients\r\n$4\r\n1024\r\n"

