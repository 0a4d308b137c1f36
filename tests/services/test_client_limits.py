"""Hostile clients against ``serve kv`` (issue #10): CLIENT KILL, output
back-pressure and limits, client memory, INFO/CONFIG truthfulness, log floods.

Every client that hits a limit is written here with raw sockets; memory is
observed from outside (/proc of a server process) with wide margins.
"""

from __future__ import annotations

import re
import socket
import time

import pytest

from sockworks.protocols.resp import encode_command
from tests.redis_support import RedisServer, redis_server_fixture
from tests.support import RunningServer, StartServer, recv_all, recv_until

__all__ = ["redis_server_fixture"]

pytestmark = pytest.mark.timeout(90)

#: Models whose behaviour these limits depend on: the event loop and a thread model.
MODELS = ("asyncio", "thread", "pool")


def kv(start_server: StartServer, model: str, *extra: str,
       process: bool = False) -> RunningServer:
    argv = ("serve", "kv", "--resp-port", "0", "--model", model, *extra)
    if process:
        return start_server(*argv, process=True, expect_listeners=2)
    return start_server(*argv)


def resp_connect(server: RunningServer) -> socket.socket:
    return server.connect(index=1)


def cmd(*args: bytes | str) -> bytes:
    return encode_command([a.encode() if isinstance(a, str) else a for a in args])


def call(sock: socket.socket, *args: bytes | str) -> bytes:
    """One command, its reply (a single line or one bulk)."""
    sock.sendall(cmd(*args))
    reply = recv_until(sock, b"\r\n")
    if reply[:1] == b"$" and not reply.startswith(b"$-1"):
        size = int(reply[1:reply.index(b"\r\n")])
        while len(reply) < reply.index(b"\r\n") + 2 + size + 2:
            reply += sock.recv(65536)
    return reply


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# -- CLIENT KILL and CONFIG GET, against the real redis-server ------------------

KILL_CASES: list[tuple[str, ...]] = [
    ("CLIENT", "KILL", "1.2.3.4:5"),
    ("CLIENT", "KILL", "ADDR", "1.2.3.4:5"),
    ("CLIENT", "KILL", "ID", "999999"),
    ("CLIENT", "KILL", "ID", "abc"),
    ("CLIENT", "KILL", "ID", "0"),
    ("CLIENT", "KILL", "ID", "5", "SKIPME", "maybe"),
    ("CLIENT", "KILL", "foo", "bar"),
    ("CLIENT", "KILL", "ID", "5", "ADDR"),
    ("CLIENT", "KILL"),
]


def test_client_kill_replies_match_redis(start_server: StartServer,
                                         redis_server: RedisServer) -> None:
    server = kv(start_server, "asyncio")
    with resp_connect(server) as ours, \
            socket.create_connection(redis_server.address, timeout=10) as theirs:
        for case in KILL_CASES:
            assert call(ours, *case) == call(theirs, *case), case


def test_client_kill_by_id_addr_and_old_form_closes_the_other_client(
        start_server: StartServer) -> None:
    for model in MODELS:
        server = kv(start_server, model)
        with resp_connect(server) as admin:
            victims = [resp_connect(server) for _ in range(3)]
            ids = [int(call(v, "CLIENT", "ID")[1:-2]) for v in victims]
            addrs = ["{}:{}".format(*v.getsockname()) for v in victims]
            assert call(admin, "CLIENT", "KILL", "ID", str(ids[0])) == b":1\r\n"
            assert call(admin, "CLIENT", "KILL", "ADDR", addrs[1]) == b":1\r\n"
            assert call(admin, "CLIENT", "KILL", addrs[2]) == b"+OK\r\n"
            for victim in victims:
                assert recv_all(victim) == b""
                victim.close()
            assert call(admin, "CLIENT", "KILL", "ID", str(ids[0])) == b":0\r\n"
            assert call(admin, "PING") == b"+PONG\r\n"


def test_config_get_client_limits_in_redis_format(start_server: StartServer,
                                                  redis_server: RedisServer) -> None:
    server = kv(start_server, "asyncio", "--client-output-buffer-limit", "normal 1mb 2k 3",
                "--maxmemory-clients", "10mb", "--idle-timeout", "7")
    with resp_connect(server) as ours, \
            socket.create_connection(redis_server.address, timeout=10) as theirs:
        assert call(theirs, "CONFIG", "SET", "client-output-buffer-limit",
                    "normal 1mb 2k 3") == b"+OK\r\n"
        ours.sendall(cmd("CONFIG", "GET", "client-output-buffer-limit"))
        theirs.sendall(cmd("CONFIG", "GET", "client-output-buffer-limit"))
        assert recv_until(ours, b"60\r\n") == recv_until(theirs, b"60\r\n")
        ours.sendall(cmd("CONFIG", "GET", "maxmemory-clients"))
        assert recv_until(ours, b"\r\n" * 1 + b"$8\r\n10485760\r\n")[-14:] == b"$8\r\n10485760\r\n"
        ours.sendall(cmd("CONFIG", "GET", "timeout"))
        assert recv_until(ours, b"$1\r\n7\r\n").endswith(b"$1\r\n7\r\n")
        info = call(ours, "INFO", "clients")
        for field in (b"connected_clients:", b"maxclients:1024", b"client_recent_max_input_buffer:",
                      b"client_recent_max_output_buffer:"):
            assert field in info


def test_text_stats_report_client_fields(start_server: StartServer) -> None:
    server = kv(start_server, "thread")
    with server.connect() as sock:
        recv_until(sock)  # greeting
        sock.sendall(b"STATS\n")
        stats = recv_until(sock)
    for field in (b"connected_clients=", b"maxclients=1024", b"client_recent_max_input_buffer=",
                  b"client_recent_max_output_buffer=", b"rejected_connections=0",
                  b"evicted_clients=0"):
        assert field in stats


# -- back-pressure and output limits ---------------------------------------------

BIG = 1024 * 1024


@pytest.mark.parametrize("model", ["asyncio", "thread"])
def test_pipelined_big_gets_from_a_non_reader_do_not_balloon(start_server: StartServer,
                                                             model: str) -> None:
    """1,500 pipelined GETs of a 1 MB value in one send, never read: before
    back-pressure this made gigabytes of replies at once."""
    server = kv(start_server, model, "--idle-timeout", "0", process=True)
    pid = server.proc.pid  # type: ignore[attr-defined]
    with resp_connect(server) as sock:
        sock.sendall(cmd("SET", "big", b"v" * BIG))
        assert recv_until(sock, b"\r\n") == b"+OK\r\n"
        before = rss_kib(pid)
        hostile = resp_connect(server)
        hostile.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hostile.sendall(cmd("GET", "big") * 1500)
        # Round trips on another connection while the hostile one sits.
        for _ in range(20):
            assert call(sock, "PING") == b"+PONG\r\n"
        peak = max(rss_kib(pid) for _ in range(20) if call(sock, "PING") == b"+PONG\r\n")
        hostile.close()
    # 1.5 GB without back-pressure; a few MB with it. Margin: 200 MB.
    assert peak - before < 200 * 1024, (before, peak)


@pytest.mark.parametrize("model", MODELS)
def test_hard_output_limit_closes_the_client(start_server: StartServer, model: str) -> None:
    server = kv(start_server, model, "--client-output-buffer-limit", "normal 100kb 0 0")
    with resp_connect(server) as sock:
        sock.sendall(cmd("SET", "big", b"v" * 300_000))
        assert recv_until(sock, b"\r\n") == b"+OK\r\n"
    with socket.socket() as hostile:
        hostile.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
        hostile.settimeout(10)
        hostile.connect(server.addresses[1])
        hostile.sendall(cmd("GET", "big") * 50)  # 15 MB of replies, not read yet
        server.wait_for_log(b"client-output-buffer-limit")
        received = b""
        try:
            while chunk := hostile.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
        assert len(received) < 50 * 300_000  # cut off, not all served
    with resp_connect(server) as sock:
        assert call(sock, "PING") == b"+PONG\r\n"


@pytest.mark.parametrize("model", ["asyncio", "thread"])
def test_maxmemory_clients_evicts_the_biggest_client(start_server: StartServer,
                                                     model: str) -> None:
    server = kv(start_server, model, "--maxmemory-clients", "1mb", "--idle-timeout", "0")
    hog = resp_connect(server)
    # Half a 3 MB bulk: an unfinished request the session must hold.
    hog.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3000000\r\n" + b"x" * 1_500_000)
    assert recv_all(hog) == b""  # evicted
    hog.close()
    server.wait_for_log(b"maxmemory-clients")
    with resp_connect(server) as sock:
        info = call(sock, "INFO", "stats")
        assert b"evicted_clients:1" in info


def _qbuf(line: bytes) -> int:
    found = re.search(rb"qbuf=(\d+)", line)
    assert found, line
    return int(found.group(1))


@pytest.mark.parametrize("model", ["asyncio", "thread"])
def test_client_no_evict_exempts_a_client(start_server: StartServer, model: str) -> None:
    """CLIENT NO-EVICT ON: over maxmemory-clients the biggest client that
    may be evicted goes, never the exempt one (whose memory still counts)."""
    server = kv(start_server, model, "--maxmemory-clients", "1mb", "--idle-timeout", "0")
    keeper, hog = resp_connect(server), resp_connect(server)
    try:
        ident = int(call(keeper, "CLIENT", "ID")[1:-2])
        assert call(keeper, "CLIENT", "NO-EVICT", "on") == b"+OK\r\n"
        assert b"flags=e " in call(keeper, "CLIENT", "INFO")
        head = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000\r\n"
        keeper.sendall(head + b"x" * 1_500_000)  # over the cap alone: kept
        deadline = time.monotonic() + 30
        while _qbuf(call(hog, "CLIENT", "LIST", "ID", b"%d" % ident)) < 1_500_000:
            assert time.monotonic() < deadline, "the keeper's request was not read"
            time.sleep(0.01)  # polled with a deadline: the server reads 1.5 MB
        hog.sendall(head + b"y" * 1_200_000)  # smaller than the keeper's, over the cap
        assert recv_all(hog) == b""  # evicted: the keeper is exempt
        keeper.sendall(b"x" * 500_000 + b"\r\n")
        assert recv_until(keeper, b"\r\n") == b"+OK\r\n"
    finally:
        keeper.close()
        hog.close()


# -- logs that cannot flood -------------------------------------------------------

@pytest.mark.parametrize("model", ["asyncio", "thread"])
def test_many_idle_closes_make_few_log_lines(start_server: StartServer, model: str) -> None:
    server = kv(start_server, model, "--idle-timeout", "0.5")
    socks = [server.connect() for _ in range(200)]
    for sock in socks[:100]:
        sock.sendall(b"GET hal")  # half a request: the warning kind of close
    for sock in socks:
        assert recv_all(sock).startswith(b"")  # closed by the server
        sock.close()
    lines = [line for line in server.read_output(0.2).splitlines()
             if b"[INFO]" in line or b"[WARNING]" in line or b"[ERROR]" in line]
    closing = [line for line in lines if b"closing" in line]
    assert len(closing) <= 5, closing
