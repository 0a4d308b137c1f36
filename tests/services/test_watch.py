"""WATCH/UNWATCH: Redis 7's optimistic locking on the embedded store.

Differential: the same scripted conversation of two clients (A watches, B
changes things) goes to a real redis-server and to two RespSessions of one
RESP service, in RESP2 and RESP3, and every reply must be byte-identical:
EXEC's null array when a watched key was touched (written, deleted,
renamed, retyped, expired, flushed) and a normal reply when it was not.
Then the real thing: redis-py's ``transaction()`` from several threads
incrementing one counter on a real server (no lost update), for every
shared-memory model, and a write on the text port breaking a WATCH.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import hiredis
import pytest

from sockworks.core.stats import ServerStats
from sockworks.protocols.resp import encode_command
from sockworks.services.lua_engine import LUA_AVAILABLE
from sockworks.services.resp import RespService, RespSession
from sockworks.storage.base import WatchSet
from sockworks.storage.factory import open_store
from sockworks.storage.memory import MemoryStore
from sockworks.storage.redis_store import RedisStore
from tests.conftest import ServerProcess, spawn_server
from tests.redis_support import (  # noqa: F401 (fixtures)
    RedisServer,
    shared_redis_server_fixture,
)
from tests.support import IN_CI, SHARED_MEMORY_MODELS

redis = pytest.importorskip("redis")

#: How long a key given a 1 ms TTL may take to be seen expired.
EXPIRY_DEADLINE = 5.0


class Side:
    """Two clients of one server: Redis's (sockets) or ours (sessions)."""

    def __init__(self, port: int | None, proto: int) -> None:
        self.socks: list[socket.socket] = []
        self.sessions: list[RespSession] = []
        self.service: RespService | None = None
        if port is not None:
            self.socks = [socket.create_connection(("127.0.0.1", port), timeout=10)
                          for _ in range(2)]
        else:
            self.service = RespService(MemoryStore(), ServerStats(), owns_store=True)
            self.sessions = [self.service.new_session(f"127.0.0.1:{n}") for n in (1, 2)]
        if proto == 3:
            for who in (0, 1):
                self.send(who, [b"HELLO", b"3"])

    def send(self, who: int, argv: list[bytes]) -> bytes:
        if self.sessions:
            session = self.sessions[who]
            out = session.on_data(encode_command(argv))
            data = out.data
            # A script answers later (the model waits on its barrier, then
            # resumes the session).
            while out.barrier is not None and session.backlog:
                assert out.barrier.wait(10)
                out = session.resume()
                data += out.data
            return data
        sock = self.socks[who]
        sock.sendall(encode_command(argv))
        reader = hiredis.Reader()
        raw = b""
        while True:
            chunk = sock.recv(65536)
            assert chunk, "redis-server closed the connection"
            raw += chunk
            reader.feed(chunk)
            if reader.gets() is not False:
                return raw

    def wait_expired(self, sentinel: bytes) -> None:
        """Wait (bounded) until ``sentinel``, given a 1 ms TTL after the
        keys under test, is gone: then they have expired too."""
        deadline = time.monotonic() + EXPIRY_DEADLINE
        while self.send(1, [b"EXISTS", sentinel]) != b":0\r\n":
            assert time.monotonic() < deadline, "a 1 ms TTL did not expire"

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        for session in self.sessions:
            session.on_close()
        if self.service is not None:
            self.service.close()


A, B = 0, 1
Step = tuple[int, list[bytes]]


def steps(*parts: tuple[int, str]) -> list[Step]:
    return [(who, [w.encode() for w in text.split()]) for who, text in parts]


def tx(*watched_then: tuple[int, str]) -> list[Step]:
    """``watched_then``, then A's MULTI / INCR counter / EXEC."""
    return steps(*watched_then, (A, "MULTI"), (A, "INCR counter"), (A, "EXEC"))


#: name -> the conversation; every reply is compared with Redis's.
SCENARIOS: dict[str, list[Step]] = {
    "untouched": tx((A, "SET k v"), (A, "WATCH k"), (B, "GET k")),
    "set by another": tx((A, "WATCH k"), (B, "SET k v")),
    "set by itself": tx((A, "SET k 1"), (A, "WATCH k"), (A, "SET k 2")),
    "del": tx((A, "SET k v"), (A, "WATCH k"), (B, "DEL k")),
    "del of a missing key": tx((A, "WATCH k"), (B, "DEL k")),
    "rename away": tx((A, "SET k v"), (A, "WATCH k"), (B, "RENAME k j")),
    "rename onto": tx((A, "SET j v"), (A, "WATCH k"), (B, "RENAME j k")),
    "type change": tx((A, "SET k v"), (A, "WATCH k"), (B, "DEL k"), (B, "LPUSH k a")),
    "hash in place": tx((A, "HSET h f 1"), (A, "WATCH h"), (B, "HSET h f 2")),
    "hash no-op": tx((A, "HSET h f 1"), (A, "WATCH h"), (B, "HDEL h nope")),
    "sadd no-op": tx((A, "SADD s a"), (A, "WATCH s"), (B, "SADD s a")),
    "sadd": tx((A, "SADD s a"), (A, "WATCH s"), (B, "SADD s b")),
    # SMOVE of a member the destination has: only the source changes.
    "smove to a set holding it": tx((A, "SADD src a b"), (A, "SADD dst a"), (A, "WATCH dst"),
                                    (B, "SMOVE src dst a"), (B, "SMEMBERS src")),
    "smove source watched": tx((A, "SADD src a b"), (A, "SADD dst a"), (A, "WATCH src"),
                               (B, "SMOVE src dst a")),
    "smove adding": tx((A, "SADD src a b"), (A, "WATCH dst"), (B, "SMOVE src dst a")),
    "zadd score": tx((A, "ZADD z 1 m"), (A, "WATCH z"), (B, "ZADD z 2 m")),
    "lset": tx((A, "RPUSH l a"), (A, "WATCH l"), (B, "LSET l 0 b")),
    "expire": tx((A, "SET k v"), (A, "WATCH k"), (B, "EXPIRE k 100")),
    "persist": tx((A, "SET k v EX 100"), (A, "WATCH k"), (B, "PERSIST k")),
    "persist no-op": tx((A, "SET k v"), (A, "WATCH k"), (B, "PERSIST k")),
    "incr": tx((A, "WATCH counter"), (B, "INCR counter")),
    "written by a script": tx((A, "WATCH k"), (B, "EVAL return(redis.call('set','k','v')) 0")),
    "read by a script": tx((A, "WATCH k"), (B, "EVAL return(redis.call('get','k')) 0")),
    "a script in an aborted exec does not run": steps(
        (A, "WATCH k"), (A, "MULTI"), (A, "EVAL return(redis.call('incr','ran')) 0"),
        (B, "SET k v"), (A, "EXEC"), (A, "GET ran")),
    "a script in exec runs in its order": steps(
        (A, "MULTI"), (A, "SET n 5"), (A, "EVAL return(redis.call('get','n')) 0"),
        (A, "INCR n"), (A, "EXEC")),
    "flushdb with the key": tx((A, "SET k v"), (A, "WATCH k"), (B, "FLUSHDB")),
    "flushdb without it": tx((A, "WATCH k"), (B, "FLUSHDB")),
    "flushall": tx((A, "SET k v"), (A, "WATCH k"), (B, "FLUSHALL")),
    "other key": tx((A, "WATCH k"), (B, "SET other v")),
    "one of several": tx((A, "WATCH a b c"), (B, "SET b v")),
    "watch twice": tx((A, "WATCH k"), (A, "WATCH k j"), (B, "SET j v")),
    "unwatch": tx((A, "WATCH k"), (A, "UNWATCH"), (B, "SET k v")),
    "discard unwatches": tx((A, "WATCH k"), (A, "MULTI"), (A, "DISCARD"), (B, "SET k v")),
    "exec unwatches": tx((A, "WATCH k"), (A, "MULTI"), (A, "EXEC"), (B, "SET k v")),
    "aborted exec unwatches": tx((A, "WATCH k"), (B, "SET k 1"), (A, "MULTI"), (A, "EXEC"),
                                 (B, "SET k 2")),
    "execabort unwatches": tx((A, "WATCH k"), (A, "MULTI"), (A, "NOSUCH"), (A, "EXEC"),
                              (B, "SET k v")),
    "reset unwatches": tx((A, "WATCH k"), (A, "RESET"), (B, "SET k v")),
    "exec without multi keeps watching": tx((A, "WATCH k"), (A, "EXEC"), (B, "SET k v")),
    "touched after multi": steps((A, "WATCH k"), (A, "MULTI"), (A, "INCR counter"),
                                 (B, "SET k v"), (A, "EXEC")),
    "watch inside multi": steps((A, "MULTI"), (A, "WATCH k"), (A, "INCR counter"),
                                (A, "EXEC")),
    "unwatch inside multi": steps((A, "WATCH k"), (A, "MULTI"), (A, "UNWATCH"), (B, "SET k v"),
                                  (A, "EXEC")),
    "arity": steps((A, "WATCH"), (A, "UNWATCH x")),
    "watch after touch is a no-op": tx((A, "WATCH k"), (B, "SET k v"), (A, "WATCH j")),
    "errors inside exec": tx((A, "SET k v"), (A, "WATCH k"), (A, "MULTI"), (A, "LPUSH k x"),
                             (A, "EXEC")),
}


@pytest.mark.redis
@pytest.mark.parametrize("proto", [2, 3], ids=["resp2", "resp3"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_watch_matches_redis(name: str, proto: int, shared_redis_server: RedisServer) -> None:
    if "script" in name and not LUA_AVAILABLE:
        if IN_CI:
            pytest.fail("lupa (the 'lua' extra) is required under CI=true")
        pytest.skip("lupa not installed")
    theirs, ours = Side(shared_redis_server.port, proto), Side(None, proto)
    try:
        for side in (theirs, ours):
            side.send(A, [b"FLUSHALL"])
        for who, argv in SCENARIOS[name]:
            expected, got = theirs.send(who, argv), ours.send(who, argv)
            assert got == expected, (name, who, argv, expected, got)
    finally:
        theirs.close()
        ours.close()


EXPIRY_SCENARIOS: dict[str, tuple[list[Step], list[Step]]] = {
    # A key that expires between WATCH and EXEC counts as changed (Redis 7).
    # (k lives 300 ms: WATCH sees it alive, which the test checks; the
    # sentinel set after it expires after it.)
    "expires after watch": (steps((A, "SET k v PX 300"), (A, "WATCH k"),
                                  (A, "SET sentinel v PX 300")),
                            steps((A, "MULTI"), (A, "INCR counter"), (A, "EXEC"))),
    # ... but one already expired when watched does not, reclaimed or not.
    "stale when watched": (steps((A, "SET k v PX 1"), (A, "SET sentinel v PX 1")),
                           steps((A, "WATCH k"), (A, "MULTI"), (A, "INCR counter"),
                                 (A, "EXEC"))),
    "stale, then deleted": (steps((A, "SET k v PX 1"), (A, "SET sentinel v PX 1")),
                            steps((A, "WATCH k"), (B, "DEL k"), (A, "MULTI"),
                                  (A, "INCR counter"), (A, "EXEC"))),
    "stale, then flushed": (steps((A, "SET k v PX 1"), (A, "SET sentinel v PX 1")),
                            steps((A, "WATCH k"), (B, "FLUSHDB"), (A, "MULTI"),
                                  (A, "INCR counter"), (A, "EXEC"))),
    "stale, then set": (steps((A, "SET k v PX 1"), (A, "SET sentinel v PX 1")),
                        steps((A, "WATCH k"), (B, "SET k w"), (A, "MULTI"),
                              (A, "INCR counter"), (A, "EXEC"))),
}


@pytest.mark.redis
@pytest.mark.parametrize("proto", [2, 3], ids=["resp2", "resp3"])
@pytest.mark.parametrize("name", list(EXPIRY_SCENARIOS))
def test_watch_and_expiry_match_redis(name: str, proto: int,
                                      shared_redis_server: RedisServer) -> None:
    before, after = EXPIRY_SCENARIOS[name]
    theirs, ours = Side(shared_redis_server.port, proto), Side(None, proto)
    try:
        for side in (theirs, ours):
            side.send(A, [b"FLUSHALL"])
            for who, argv in before:
                side.send(who, argv)
            if name == "expires after watch":
                # Alive after the WATCH, so alive when watched (PTTL does
                # not reclaim, so it does not touch the key).
                assert side.send(B, [b"PTTL", b"k"])[:2] not in (b":-", b"_\r")
            side.wait_expired(b"sentinel")
        for who, argv in after:
            expected, got = theirs.send(who, argv), ours.send(who, argv)
            assert got == expected, (name, who, argv, expected, got)
    finally:
        theirs.close()
        ours.close()


# -- the store's bookkeeping ---------------------------------------------------------

def test_watchers_are_forgotten_on_unwatch_touch_and_disconnect() -> None:
    store = MemoryStore()
    watch = WatchSet()
    store.watch(watch, [b"a", b"b"])
    assert set(store._watchers) == {b"a", b"b"}
    store.set(b"a", b"1")
    # A dirty client's registrations are dropped at once (Redis does too).
    assert watch.dirty and store._watchers == {}
    assert store.watch_broken(watch)
    store.unwatch(watch)
    assert not store.watch_broken(watch)
    service = RespService(store, ServerStats(), owns_store=True)
    session = service.new_session("127.0.0.1:1")
    assert session.on_data(encode_command([b"WATCH", b"x", b"y"])).data == b"+OK\r\n"
    assert set(store._watchers) == {b"x", b"y"}
    session.on_close()
    assert store._watchers == {}
    service.close()


def test_watched_keys_are_bounded() -> None:
    service = RespService(MemoryStore(), ServerStats(), owns_store=True)
    session = service.new_session("127.0.0.1:1")
    limit = session.max_query
    key = b"k" * 4096
    replies = b""
    # Each WATCH is a small request, but together they would pass the limit.
    for n in range(limit // 4096 + 2):
        replies = session.on_data(encode_command([b"WATCH", key + b"%d" % n])).data
        if replies != b"+OK\r\n":
            break
    assert replies == b"-ERR watched keys exceed %d bytes: UNWATCH first\r\n" % limit
    assert session.on_data(encode_command([b"UNWATCH"])).data == b"+OK\r\n"
    assert session.on_data(encode_command([b"WATCH", key])).data == b"+OK\r\n"
    session.on_close()
    service.close()


def test_watch_is_passed_to_the_redis_backend(shared_redis_server: RedisServer) -> None:
    # More in test_redis_passthrough.py: the WATCH lives on a connection of
    # this session's own, so a write by another connection aborts EXEC.
    store = open_store(shared_redis_server.url, None, "no")
    assert isinstance(store, RedisStore)
    service = RespService(store, ServerStats(), owns_store=True)
    session = service.new_session("127.0.0.1:1")
    other = service.new_session("127.0.0.1:2")

    def send(s: Any, *argv: bytes) -> bytes:
        return bytes(s.on_data(encode_command(list(argv))).data)
    try:
        assert send(session, b"WATCH", b"watch:k") == b"+OK\r\n"
        assert store.pins.used == 1
        assert send(other, b"SET", b"watch:k", b"1") == b"+OK\r\n"
        assert send(session, b"MULTI") == b"+OK\r\n"
        assert send(session, b"SET", b"watch:k", b"2") == b"+QUEUED\r\n"
        assert send(session, b"EXEC") == b"*-1\r\n"
        assert store.pins.used == 0    # EXEC handed the connection back
        assert send(session, b"GET", b"watch:k") == b"$1\r\n1\r\n"
    finally:
        session.on_close()
        other.on_close()
        service.close()


# -- real servers, real clients ---------------------------------------------------------

THREADS = 4
INCREMENTS = 50
#: Retries one increment may need: every other thread may win each round,
#: so THREADS * INCREMENTS bounds it generously; past it the test fails.
MAX_ATTEMPTS = THREADS * INCREMENTS


def resp_port(server: ServerProcess) -> int:
    assert len(server.addresses) == 2, server.addresses
    return server.addresses[1][1]


def contend(port: int) -> tuple[int, int]:
    """THREADS threads, each INCREMENTS read-modify-writes of one counter
    through redis-py's transaction(): (final value, aborted EXECs)."""
    aborted = [0] * THREADS
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
        try:
            for _ in range(INCREMENTS):
                attempts = 0

                def bump(pipe: Any) -> None:
                    nonlocal attempts
                    attempts += 1
                    assert attempts <= MAX_ATTEMPTS, "WATCH never let a transaction through"
                    value = int(pipe.get("counter") or 0)
                    pipe.multi()
                    pipe.set("counter", value + 1)
                client.transaction(bump, "counter")
                aborted[n] += attempts - 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a client thread hung"
    assert not errors, errors
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    try:
        return int(client.get("counter") or 0), sum(aborted)
    finally:
        client.close()


@pytest.mark.parametrize("model", SHARED_MEMORY_MODELS)
def test_redis_py_transaction_under_contention(model: str) -> None:
    proc = spawn_server("serve", "kv", "--resp-port", "0", "--model", model,
                        expect_listeners=2)
    try:
        value, _aborted = contend(resp_port(proc))
        # Read-modify-write without WATCH would lose updates here.
        assert value == THREADS * INCREMENTS
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = spawn_server("serve", "kv", "--resp-port", "0", expect_listeners=2)
    yield proc
    proc.stop()


def test_a_write_on_the_text_port_breaks_a_watch(server: ServerProcess) -> None:
    host, text_port = server.addresses[0]
    r = redis.Redis(host="127.0.0.1", port=resp_port(server), socket_timeout=10)
    try:
        r.set("shared", "1")
        with r.pipeline() as pipe:
            pipe.watch("shared")
            with socket.create_connection((host, text_port), timeout=10) as sock:
                assert sock.recv(100).startswith(b"READY")
                sock.sendall(b"SET shared 2\n")
                assert sock.recv(100).startswith(b"OK")
            pipe.multi()
            pipe.set("shared", "3")
            with pytest.raises(redis.WatchError):
                pipe.execute()
        assert r.get("shared") == b"2"
    finally:
        r.close()


def test_pipeline_with_watch_succeeds_when_untouched(server: ServerProcess) -> None:
    r = redis.Redis(host="127.0.0.1", port=resp_port(server), socket_timeout=10,
                    protocol=3)
    try:
        r.set("balance", "10")
        with r.pipeline() as pipe:
            pipe.watch("balance")
            balance = int(pipe.get("balance"))
            pipe.multi()
            pipe.set("balance", balance - 3)
            pipe.get("balance")
            assert pipe.execute() == [True, b"7"]
    finally:
        r.close()
