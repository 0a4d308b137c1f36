"""Blocking pops against a real redis-server: the same scenario on both,
the bytes every client receives compared (RESP2 and RESP3).

Our side is ``sockworks serve kv --resp-port`` in this process (the thread
model; tests/services/test_blocking.py runs every model); Redis's is
redis-server. A scenario waits until a client is blocked by asking the
server (INFO's ``blocked_clients``), never by sleeping.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from sockworks.protocols.resp import encode_command
from sockworks.server import Server
from sockworks.services.kv import KvService
from tests.redis_support import (  # noqa: F401 (fixtures)
    RedisServer,
    shared_redis_server_fixture,
)

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

Argv = list[bytes]


def _argv(*args: str | bytes) -> Argv:
    return [a.encode() if isinstance(a, str) else a for a in args]


def frame_end(buf: bytes, i: int = 0) -> int | None:
    """Where the RESP2/RESP3 reply starting at ``buf[i]`` ends (None: incomplete)."""
    eol = buf.find(b"\r\n", i)
    if eol < 0:
        return None
    kind = buf[i:i + 1]
    if kind in (b"+", b"-", b":", b"_", b",", b"#", b"("):
        return eol + 2
    n = int(buf[i + 1:eol])
    if kind in (b"$", b"=", b"!"):
        end = eol + 2 + n + 2 if n >= 0 else eol + 2
        return end if len(buf) >= end else None
    count = max(n, 0) * (2 if kind in (b"%", b"|") else 1)
    j: int | None = eol + 2
    for _ in range(count):
        assert j is not None
        j = frame_end(buf, j)
        if j is None:
            return None
    return j


class Client:
    """A raw RESP connection: send now, read a reply later."""

    def __init__(self, address: tuple[str, int], proto: int) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        self.raw = b""
        if proto == 3:
            self.call("HELLO", "3")

    def send(self, *args: str | bytes) -> None:
        self.sock.sendall(encode_command(_argv(*args)))

    def reply(self) -> bytes:
        """The next reply's bytes."""
        while True:
            end = frame_end(self.raw)
            if end is not None:
                taken, self.raw = self.raw[:end], self.raw[end:]
                return taken
            chunk = self.sock.recv(65536)
            assert chunk, "server closed the connection"
            self.raw += chunk

    def call(self, *args: str | bytes) -> bytes:
        self.send(*args)
        return self.reply()

    def close(self) -> None:
        self.sock.close()


class Side:
    """One server (ours or redis-server) and the clients of a scenario."""

    def __init__(self, address: tuple[str, int], proto: int) -> None:
        self.address = address
        self.proto = proto
        self.clients: list[Client] = []
        self.admin = self.client(proto=2)
        self.admin.call("FLUSHALL")

    def client(self, proto: int | None = None) -> Client:
        c = Client(self.address, self.proto if proto is None else proto)
        self.clients.append(c)
        return c

    def blocked(self) -> int:
        info = self.admin.call("INFO", "clients").decode()
        return int(info.split("blocked_clients:")[1].split("\r\n")[0])

    def wait_blocked(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while self.blocked() != count:
            assert time.monotonic() < deadline, f"never {count} blocked clients"

    def close(self) -> None:
        for c in self.clients:
            c.close()


@pytest.fixture(scope="module")
def ours() -> Iterator[tuple[str, int]]:
    with Server(KvService(), model="thread", port=0, resp_port=0) as server:
        yield server.addresses[1]


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def proto(request: pytest.FixtureRequest) -> int:
    return int(request.param)


Scenario = Callable[[Side], list[bytes]]


def both(ours: tuple[str, int], redis: RedisServer, proto: int, scenario: Scenario) -> list[bytes]:
    """Run ``scenario`` against both servers; assert the same bytes; return them."""
    results = []
    for address in (redis.address, ours):
        side = Side(address, proto)
        try:
            results.append(scenario(side))
        finally:
            side.close()
    expected, got = results
    assert got == expected
    return got


# -- one client: errors, immediate answers, timeouts, transactions ------------------------

SINGLE: list[list[str]] = [
    ["BLPOP", "a"], ["BRPOP"], ["BLMOVE", "a", "b", "LEFT", "RIGHT"], ["BRPOPLPUSH", "a", "b"],
    ["BLMPOP", "0", "1", "a"], ["BZPOPMIN", "z"], ["BZMPOP", "0", "1", "z"],
    ["BLPOP", "a", "-1"], ["BLPOP", "a", "abc"], ["BLPOP", "a", "nan"], ["BLPOP", "a", "inf"],
    ["BLPOP", "a", "-inf"], ["BLPOP", "a", "1e20"], ["BLPOP", "a", ""], ["BLPOP", "a", " 1"],
    ["BLPOP", "a", "1 "], ["BLPOP", "a", "1.5x"], ["BLPOP", "a", "0.001"],
    ["BLPOP", "a", "0.0001"], ["BRPOP", "a", "b", "0.01"], ["BZPOPMIN", "z", "-0.5"],
    ["BZPOPMAX", "z", "x"], ["BRPOPLPUSH", "a", "b", "-1"],
    ["BLMOVE", "a", "b", "UP", "RIGHT", "x"], ["BLMOVE", "a", "b", "left", "right", "x"],
    ["BLMOVE", "a", "b", "LEFT", "RIGHT", "-2"],
    ["BLMPOP", "x", "0", "a", "LEFT"], ["BLMPOP", "-1", "1", "a", "LEFT"],
    ["BLMPOP", "x", "1", "a", "LEFT"], ["BLMPOP", "0", "1", "a", "MIDDLE"],
    ["BLMPOP", "0", "2", "a", "LEFT"], ["BLMPOP", "0", "1", "a", "LEFT", "COUNT"],
    ["BLMPOP", "0", "1", "a", "LEFT", "COUNT", "0"], ["BZMPOP", "0", "1", "z", "MIN", "COUNT", "-1"],
    ["BZMPOP", "0", "1", "z", "MAXX"], ["BZMPOP", "0.01", "1", "z", "MIN"],
    ["BLMPOP", "0.01", "2", "a", "b", "RIGHT", "COUNT", "3"],
    ["BLMOVE", "a", "b", "LEFT", "RIGHT", "0.01"], ["BRPOPLPUSH", "a", "b", "0.01"],
    ["BZPOPMAX", "z", "y", "0.01"],
    # the data is there: answered at once
    ["RPUSH", "l", "1", "2", "3", "4", "5"], ["BLPOP", "none", "l", "0"], ["BRPOP", "l", "0"],
    ["BLMPOP", "0", "2", "none", "l", "RIGHT", "COUNT", "2"], ["BLMOVE", "l", "m", "RIGHT", "LEFT", "0"],
    ["BRPOPLPUSH", "m", "l", "0"], ["LRANGE", "l", "0", "-1"], ["BLMPOP", "0", "1", "l", "LEFT", "COUNT", "9"],
    ["EXISTS", "l"],
    ["ZADD", "z", "1.5", "m", "2", "n", "-inf", "o", "3", "p"], ["BZPOPMIN", "none", "z", "0"],
    ["BZPOPMAX", "z", "0"], ["BZMPOP", "0", "1", "z", "MAX", "COUNT", "5"], ["EXISTS", "z"],
    # wrong types
    ["SET", "s", "x"], ["BLPOP", "s", "0"], ["BLPOP", "none", "s", "0"], ["BZPOPMIN", "s", "0"],
    ["BLMOVE", "s", "b", "LEFT", "RIGHT", "0"], ["RPUSH", "l", "x"],
    ["BLMOVE", "l", "s", "LEFT", "RIGHT", "0"], ["BRPOPLPUSH", "l", "s", "0"], ["LLEN", "l"],
    ["BLMPOP", "0", "2", "s", "l", "LEFT"], ["BZMPOP", "0", "1", "s", "MIN"],
    ["ZADD", "zz", "1", "a"], ["BLPOP", "zz", "0"], ["BZPOPMIN", "l", "0"],
    # a transaction never blocks
    ["MULTI"], ["BLMOVE", "e", "f", "LEFT", "RIGHT", "0"], ["BRPOPLPUSH", "e", "f", "0"],
    ["BLPOP", "e", "0"], ["BRPOP", "e", "0"], ["BLMPOP", "0", "1", "e", "LEFT"],
    ["BZPOPMIN", "ez", "0"], ["BZPOPMAX", "ez", "0"], ["BZMPOP", "0", "1", "ez", "MIN"], ["EXEC"],
    ["MULTI"], ["RPUSH", "e", "1", "2"], ["BLPOP", "e", "0"], ["BLMOVE", "e", "f", "LEFT", "RIGHT", "0"],
    ["ZADD", "ez", "1", "a"], ["BZPOPMIN", "ez", "0"], ["BLPOP", "s", "0"], ["EXEC"],
    ["MULTI"], ["BLPOP", "a", "-1"], ["EXEC"],
    ["CLIENT", "UNBLOCK"], ["CLIENT", "UNBLOCK", "x"], ["CLIENT", "UNBLOCK", "99999"],
    ["CLIENT", "UNBLOCK", "99999", "FOO"], ["CLIENT", "UNBLOCK", "99999", "error"],
    ["CLIENT", "UNBLOCK", "1", "TIMEOUT", "x"],
]


def test_errors_immediate_answers_timeouts_and_transactions_match_redis(
        ours: tuple[str, int], shared_redis_server: RedisServer, proto: int) -> None:
    def scenario(side: Side) -> list[bytes]:
        c = side.client()
        return [c.call(*argv) for argv in SINGLE]

    replies = both(ours, shared_redis_server, proto, scenario)
    timed_out = replies[SINGLE.index(["BRPOP", "a", "b", "0.01"])]
    assert timed_out == (b"*-1\r\n" if proto == 2 else b"_\r\n")


# -- several clients ------------------------------------------------------------------------

def test_three_blocked_clients_are_served_in_arrival_order(
        ours: tuple[str, int], shared_redis_server: RedisServer, proto: int) -> None:
    def scenario(side: Side) -> list[bytes]:
        waiting = []
        for i in range(3):
            c = side.client()
            c.send("BLPOP", "q", "other", "0")
            side.wait_blocked(i + 1)
            waiting.append(c)
        pusher = side.client()
        out = [pusher.call("RPUSH", "q", "a", "b", "c", "d")]
        out += [c.reply() for c in waiting]
        out.append(pusher.call("LRANGE", "q", "0", "-1"))
        return out

    replies = both(ours, shared_redis_server, proto, scenario)
    assert [r.split(b"\r\n")[-2] for r in replies[1:4]] == [b"a", b"b", b"c"]


def test_a_push_from_another_client_wakes_each_kind_of_wait(
        ours: tuple[str, int], shared_redis_server: RedisServer, proto: int) -> None:
    waits: list[tuple[list[str], list[list[str]]]] = [
        (["BLPOP", "k1", "k2", "0"], [["RPUSH", "k2", "x", "y"]]),
        (["BRPOP", "k1", "0"], [["LPUSH", "k1", "x", "y"]]),
        (["BLMOVE", "src", "dst", "RIGHT", "LEFT", "0"], [["RPUSH", "src", "1", "2"],
                                                         ["LRANGE", "dst", "0", "-1"],
                                                         ["LRANGE", "src", "0", "-1"]]),
        (["BRPOPLPUSH", "src2", "dst", "0"], [["RPUSH", "src2", "3"],
                                              ["LRANGE", "dst", "0", "-1"]]),
        (["BLMPOP", "0", "2", "m1", "m2", "LEFT", "COUNT", "2"], [["RPUSH", "m2", "a", "b", "c"],
                                                                  ["LLEN", "m2"]]),
        (["BZPOPMIN", "z1", "z2", "0"], [["ZADD", "z2", "2", "b", "1", "a"]]),
        (["BZPOPMAX", "z3", "0"], [["ZADD", "z3", "2", "b", "1.5", "a"]]),
        (["BZMPOP", "0", "1", "z4", "MAX", "COUNT", "2"], [["ZADD", "z4", "1", "a", "2", "b",
                                                            "3", "c"], ["ZCARD", "z4"]]),
        # served by a transaction, after EXEC
        (["BLPOP", "t", "0"], [["MULTI"], ["RPUSH", "t", "1"], ["RPUSH", "t", "2"], ["EXEC"],
                               ["LRANGE", "t", "0", "-1"]]),
        # served by the push inside a move
        (["BLPOP", "moved", "0"], [["RPUSH", "from", "v"],
                                   ["LMOVE", "from", "moved", "LEFT", "LEFT"]]),
        # a destination of another type: the waiter gets WRONGTYPE, the element stays
        (["BLMOVE", "src3", "str", "LEFT", "LEFT", "0"], [["SET", "str", "x"],
                                                           ["RPUSH", "src3", "e"],
                                                           ["LRANGE", "src3", "0", "-1"]]),
    ]

    def scenario(side: Side) -> list[bytes]:
        out: list[bytes] = []
        pusher = side.client()
        for wait, pushes in waits:
            waiter = side.client()
            waiter.send(*wait)
            side.wait_blocked(1)
            out += [pusher.call(*p) for p in pushes]
            out.append(waiter.reply())
            side.wait_blocked(0)
        return out

    both(ours, shared_redis_server, proto, scenario)


def test_a_push_that_is_popped_in_the_same_transaction_wakes_nobody(
        ours: tuple[str, int], shared_redis_server: RedisServer, proto: int) -> None:
    def scenario(side: Side) -> list[bytes]:
        waiter, other = side.client(), side.client()
        waiter.send("BLPOP", "k", "0")
        side.wait_blocked(1)
        out = [other.call(*a) for a in (["MULTI"], ["RPUSH", "k", "x"], ["LPOP", "k"], ["EXEC"],
                                         ["SET", "k", "string"], ["DEL", "k"])]
        out.append(b"%d" % side.blocked())
        out.append(other.call("RPUSH", "k", "late"))
        out.append(waiter.reply())
        return out

    both(ours, shared_redis_server, proto, scenario)


def test_requests_pipelined_behind_a_blocked_one_run_after_its_reply(
        ours: tuple[str, int], shared_redis_server: RedisServer, proto: int) -> None:
    def scenario(side: Side) -> list[bytes]:
        waiter, pusher = side.client(), side.client()
        waiter.sock.sendall(b"".join(encode_command(_argv(*a)) for a in (
            ["PING"], ["BLPOP", "k", "0"], ["LLEN", "k"], ["ECHO", "after"],
            ["BRPOP", "k", "0"], ["PING"])))
        out = [waiter.reply()]  # PONG, before the wait
        side.wait_blocked(1)
        out.append(pusher.call("RPUSH", "k", "1", "2"))
        out += [waiter.reply() for _ in range(5)]
        return out

    both(ours, shared_redis_server, proto, scenario)


def test_client_unblock_ends_a_wait_with_a_null_or_an_error(
        ours: tuple[str, int], shared_redis_server: RedisServer, proto: int) -> None:
    def scenario(side: Side) -> list[bytes]:
        out: list[bytes] = []
        admin = side.client()
        for how in (["TIMEOUT"], ["ERROR"], []):
            waiter = side.client()
            client_id = int(waiter.call("CLIENT", "ID")[1:-2])
            waiter.send("BLMOVE", "a", "b", "LEFT", "LEFT", "0")
            side.wait_blocked(1)
            out.append(admin.call("CLIENT", "UNBLOCK", str(client_id), *how))
            out.append(waiter.reply())
            out.append(admin.call("CLIENT", "UNBLOCK", str(client_id), *how))
            out.append(waiter.call("PING"))
        return out

    replies = both(ours, shared_redis_server, proto, scenario)
    assert replies[5] == b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"


def test_a_killed_or_gone_waiter_leaves_the_queue(
        ours: tuple[str, int], shared_redis_server: RedisServer, proto: int) -> None:
    def scenario(side: Side) -> list[bytes]:
        admin = side.client()
        killed, gone, served = side.client(), side.client(), side.client()
        killed_id = int(killed.call("CLIENT", "ID")[1:-2])
        for c, n in ((killed, 1), (gone, 2), (served, 3)):
            c.send("BLPOP", "k", "0")
            side.wait_blocked(n)
        out = [admin.call("CLIENT", "KILL", "ID", str(killed_id))]
        side.wait_blocked(2)
        gone.close()
        side.wait_blocked(1)
        out.append(admin.call("RPUSH", "k", "only"))
        out.append(served.reply())
        out.append(admin.call("LLEN", "k"))
        return out

    both(ours, shared_redis_server, proto, scenario)
