"""Pub/sub on the RESP port: against a real redis-server byte for byte
(RESP2 and RESP3, subscribed-mode errors, PUBSUB, messages interleaved with
replies), with redis-py's ``pubsub()`` (sync and asyncio, RESP2 and RESP3),
under every shared-memory model, and a slow subscriber bounded by
``client-output-buffer-limit pubsub``.

The differential helper reads a command's frames up to a sentinel (``PING
<token>``, whose reply has the same shape on both servers in every mode),
so no test waits for silence.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import hiredis
import pytest

from sockworks.protocols import rdb
from sockworks.protocols.resp import encode_command
from tests.redis_support import (  # noqa: F401 (fixture)
    RedisServer,
    redis_server_fixture,
    start_redis,
)
from tests.support import SHARED_MEMORY_MODELS, RunningServer, StartServer, require_binary

redis = pytest.importorskip("redis")
import redis.asyncio as aioredis  # noqa: E402 (after the importorskip above)

pytestmark = pytest.mark.redis

SENTINEL = b"sentinel-7f3a"
#: The sentinel PING's reply: plain, or the RESP2 subscribed-mode array.
_SENTINEL_REPLIES = (SENTINEL, [b"pong", SENTINEL])
_SENTINEL_BYTES = (b"*2\r\n$4\r\npong\r\n$13\r\n" + SENTINEL + b"\r\n",
                   b"$13\r\n" + SENTINEL + b"\r\n")


def kv(start_server: StartServer, model: str = "thread", *extra: str) -> RunningServer:
    return start_server("serve", "kv", "--resp-port", "0", "--model", model, *extra)


class Conn:
    """A raw RESP connection that reads whole frames."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock = socket.create_connection(address, timeout=10)
        self.reader = hiredis.Reader()

    def send(self, *argv: bytes | str) -> None:
        self.sock.sendall(encode_command(
            [a.encode() if isinstance(a, str) else a for a in argv]))

    def frames_until_sentinel(self) -> bytes:
        """Everything before the sentinel's reply (raw bytes)."""
        self.send("PING", SENTINEL)
        raw = b""
        for _ in range(10_000):
            frame = self.reader.gets()
            while frame is not False:
                if frame in _SENTINEL_REPLIES:
                    for tail in _SENTINEL_BYTES:
                        if raw.endswith(tail):
                            return raw[:-len(tail)]
                    raise AssertionError(f"bytes after the sentinel: {raw!r}")
                frame = self.reader.gets()
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection"
            raw += chunk
            self.reader.feed(chunk)
        raise AssertionError("no sentinel")

    def run(self, *argv: bytes | str) -> bytes:
        self.send(*argv)
        return self.frames_until_sentinel()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def pair(start_server: StartServer, redis_server: RedisServer) -> Iterator[
        tuple[tuple[str, int], tuple[str, int]]]:
    server = kv(start_server)
    yield server.addresses[1], redis_server.address


# Scripts of one connection: replies and errors compared byte for byte.
SCRIPTS = [
    # (UNSUBSCRIBE without arguments goes in Redis's hash order: one channel left.)
    ["SUBSCRIBE a b", "PING", "PING x", "GET x", "PSUBSCRIBE h*", "UNSUBSCRIBE b", "UNSUBSCRIBE",
     "PUNSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE x", "SUBSCRIBE", "PSUBSCRIBE",
     "PUBSUB NUMSUB a", "RESET", "GET x"],
    ["SUBSCRIBE a", "PUBLISH a hi", "ECHO e", "SELECT 0", "CLIENT GETNAME", "UNSUBSCRIBE a", "GET x"],
    ["MULTI | SUBSCRIBE a | EXEC", "PUBSUB NUMSUB a x", "MULTI | PING | DISCARD"],
    ["SSUBSCRIBE a", "SUBSCRIBE b", "SUNSUBSCRIBE", "UNSUBSCRIBE", "PSUBSCRIBE p",
     "PING", "GET x", "RESET"],
    ["PUBSUB NUMPAT x", "PUBSUB CHANNELS a b", "PUBSUB HELP", "PUBSUB SHARDCHANNELS a b",
     "PUBLISH a", "SPUBLISH a", "PUBSUB", "PUBSUB NOPE", "PUBSUB NUMPAT"],
    ["SSUBSCRIBE a", "SSUBSCRIBE a", "SUNSUBSCRIBE", "SUNSUBSCRIBE", "SUBSCRIBE a a",
     "UNSUBSCRIBE a a", "PSUBSCRIBE a a", "PUNSUBSCRIBE a a"],
    # (Redis visits patterns in hash order: one pattern matches each channel.)
    ["SUBSCRIBE c1", "PSUBSCRIBE c* [de]1", "PUBLISH c1 m", "PUBLISH c2 m", "PUBLISH e1 m",
     "SPUBLISH c1 m",
     "SSUBSCRIBE c1", "SPUBLISH c1 m", "PUBSUB NUMPAT", "PUBSUB CHANNELS", "PUBSUB CHANNELS c?",
     "PUBSUB SHARDCHANNELS", "PUBSUB SHARDNUMSUB c1 zz"],
]


@pytest.mark.parametrize("proto", [2, 3])
@pytest.mark.parametrize("script", SCRIPTS, ids=[s[0] + "..." for s in SCRIPTS])
def test_one_connection_matches_redis(pair: tuple[tuple[str, int], tuple[str, int]],
                                      proto: int, script: list[str]) -> None:
    ours, theirs = Conn(pair[0]), Conn(pair[1])
    try:
        if proto == 3:
            for conn in (ours, theirs):
                conn.run("HELLO", "3")
        for line in script:
            # "A | B": pipelined, one sentinel after the last (MULTI queues it).
            for conn in (ours, theirs):
                for part in line.split(" | "):
                    conn.send(*part.split())
            assert ours.frames_until_sentinel() == theirs.frames_until_sentinel(), line
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize("proto", [2, 3])
def test_messages_interleave_with_replies_as_in_redis(
        pair: tuple[tuple[str, int], tuple[str, int]], proto: int) -> None:
    """A subscriber that also sends commands (RESP3: any command) sees each
    message between the replies of the commands around the PUBLISH."""
    streams = []
    for address in pair:
        sub, pub = Conn(address), Conn(address)
        seen = b""
        try:
            if proto == 3:
                sub.run("HELLO", "3")
            seen += sub.run("SUBSCRIBE", "news")
            seen += sub.run("PSUBSCRIBE", "n*")
            assert pub.run("PUBLISH", "news", "one") == b":2\r\n"
            seen += sub.run("ECHO", "between")  # RESP2: refused, in order
            assert pub.run("PUBLISH", "nope", "two") == b":1\r\n"
            assert pub.run("PUBLISH", "other", "none") == b":0\r\n"
            seen += sub.run("GET" if proto == 3 else "PING", "k")
            for i in range(20):  # a burst, then a reply: all in order
                pub.send("PUBLISH", "news", str(i))
            pub.frames_until_sentinel()
            seen += sub.run("PING")
            seen += sub.run("UNSUBSCRIBE")
            seen += sub.run("PUNSUBSCRIBE")
            seen += sub.run("GET", "k")
        finally:
            sub.close()
            pub.close()
        streams.append(seen)
    ours, theirs = streams
    assert ours == theirs
    assert b"one" in ours and b"two" in ours and b"none" not in ours


def test_subscribed_client_counts_in_client_list(start_server: StartServer) -> None:
    server = kv(start_server)
    sub = Conn(server.addresses[1])
    admin = Conn(server.addresses[1])
    try:
        sub.run("SUBSCRIBE", "a", "b")
        sub.run("PSUBSCRIBE", "x*")
        sub.run("SSUBSCRIBE", "s")
        listing = admin.run("CLIENT", "LIST")
        line = next(ln for ln in listing.split(b"\n") if b"sub=2" in ln)
        assert b"flags=P" in line and b"psub=1" in line and b"ssub=1" in line
        # Subscriptions count toward the client's memory (tot-mem).
        names = [b"c%03d" % i + b"x" * 96 for i in range(100)]
        sub.run("SUBSCRIBE", *names)
        listing = admin.run("CLIENT", "LIST")
        line = next(ln for ln in listing.split(b"\n") if b"sub=102" in ln)
        tot_mem = int(re.search(rb"tot-mem=(\d+)", line).group(1))  # type: ignore[union-attr]
        assert tot_mem >= 100 * 100
    finally:
        sub.close()
        admin.close()


# -- redis-py ----------------------------------------------------------------------

def _wait_message(ps: Any, deadline: float) -> Any:
    while time.monotonic() < deadline:
        message = ps.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None:
            return message
    raise AssertionError("no message before the deadline")


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_pubsub_get_message_and_listen(start_server: StartServer,
                                                protocol: int) -> None:
    server = kv(start_server)
    port = server.addresses[1][1]
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, protocol=protocol)
    try:
        ps = r.pubsub()
        ps.subscribe("chan")
        ps.psubscribe("pat.*")
        deadline = time.monotonic() + 10
        # redis-py sends (P)SUBSCRIBE without reading the confirmations:
        # read them, so the counts below are asked after both ran.
        confirmed = [ps.get_message(timeout=5) for _ in range(2)]
        assert [m["type"] for m in confirmed if m] == ["subscribe", "psubscribe"], confirmed
        assert r.pubsub_numsub("chan") == [(b"chan", 1)]
        assert r.pubsub_numpat() == 1
        assert r.publish("chan", "hello") == 1
        message = _wait_message(ps, deadline)
        assert message["type"] == "message" and message["data"] == b"hello"
        assert r.publish("pat.x", "p") == 1
        message = _wait_message(ps, deadline)
        assert (message["type"], message["pattern"], message["channel"]) == (
            "pmessage", b"pat.*", b"pat.x")
        r.publish("chan", "via listen")
        for item in ps.listen():
            if item["type"] == "message":
                assert item["data"] == b"via listen"
                break
        ps.unsubscribe()
        ps.punsubscribe()
        ps.close()
        assert r.pubsub_numsub("chan") == [(b"chan", 0)]
    finally:
        r.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_pubsub_run_in_thread(start_server: StartServer, protocol: int) -> None:
    server = kv(start_server, "asyncio")
    port = server.addresses[1][1]
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10, protocol=protocol)
    got: list[bytes] = []
    done = threading.Event()

    def handler(message: dict[str, Any]) -> None:
        got.append(message["data"])
        if len(got) == 50:
            done.set()

    ps = r.pubsub()
    ps.subscribe(**{"jobs": handler})
    worker = ps.run_in_thread(sleep_time=0.05, daemon=True)
    try:
        deadline = time.monotonic() + 10
        while r.pubsub_numsub("jobs") != [(b"jobs", 1)]:
            assert time.monotonic() < deadline
        for i in range(50):
            assert r.publish("jobs", str(i)) == 1
        assert done.wait(10)
        assert got == [str(i).encode() for i in range(50)]
    finally:
        worker.stop()
        worker.join(10)
        ps.close()
        r.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_asyncio_pubsub(start_server: StartServer, protocol: int) -> None:
    server = kv(start_server, "asyncio")
    port = server.addresses[1][1]

    async def scenario() -> list[Any]:
        r = aioredis.Redis(host="127.0.0.1", port=port, protocol=protocol)
        try:
            ps = r.pubsub()
            await ps.subscribe("a")
            await ps.psubscribe("b*")
            assert await r.publish("a", "1") == 1
            assert await r.publish("bee", "2") == 1
            out: list[tuple[str, bytes]] = []
            async with asyncio.timeout(10):
                while len(out) < 2:
                    message = await ps.get_message(ignore_subscribe_messages=True,
                                                   timeout=1.0)
                    if message is not None:
                        out.append((message["type"], message["data"]))
            await ps.aclose()  # type: ignore[no-untyped-call]
            return out
        finally:
            await r.aclose()

    assert asyncio.run(scenario()) == [("message", b"1"), ("pmessage", b"2")]


@pytest.mark.parametrize("model", SHARED_MEMORY_MODELS)
def test_subscriber_gets_messages_under_every_model(start_server: StartServer,
                                                    model: str) -> None:
    server = kv(start_server, model)
    sub, pub = Conn(server.addresses[1]), Conn(server.addresses[1])
    try:
        sub.run("SUBSCRIBE", "m")
        assert pub.run("PUBLISH", "m", "hello") == b":1\r\n"
        # Nothing sent by the subscriber: the message arrives on its own.
        reader = hiredis.Reader()
        frame: Any = False
        for _ in range(100):
            reader.feed(sub.sock.recv(65536))
            frame = reader.gets()
            if frame is not False:
                break
        assert frame == [b"message", b"m", b"hello"]
        assert sub.run("PING") == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    finally:
        sub.close()
        pub.close()


# -- bounds --------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["thread", "asyncio"])
def test_slow_subscriber_is_disconnected_and_others_are_not(start_server: StartServer,
                                                           model: str) -> None:
    server = kv(start_server, model, "--client-output-buffer-limit", "pubsub 1mb 512kb 60")
    address = server.addresses[1]
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(address)
    slow.settimeout(10)
    slow.sendall(encode_command([b"SUBSCRIBE", b"flood"]))
    good, pub = Conn(address), Conn(address)
    try:
        good.run("SUBSCRIBE", "flood")
        deadline = time.monotonic() + 10
        while pub.run("PUBSUB", "NUMSUB", "flood") != b"*2\r\n$5\r\nflood\r\n:2\r\n":
            assert time.monotonic() < deadline
        payload = b"x" * 16384
        sent = 0
        good_reader = hiredis.Reader()
        received = 0
        # Publish until the slow one is gone (far less than 64 MB), while
        # the good subscriber keeps reading everything.
        for _ in range(4096):
            pub.send("PUBLISH", "flood", payload)
            sent += 1
            if sent % 16 == 0:
                replies = pub.frames_until_sentinel()
                if b":1\r\n" in replies:
                    break
                while received < sent:
                    good_reader.feed(good.sock.recv(1 << 20))
                    while (frame := good_reader.gets()) is not False:
                        if frame[0] == b"message":
                            received += 1
        else:
            raise AssertionError("the slow subscriber was never disconnected")
        # Bounded: the limit (plus what the kernel buffers), not the flood.
        assert sent * len(payload) < 16 * 1024 * 1024
        assert pub.run("PUBSUB", "NUMSUB", "flood") == b"*2\r\n$5\r\nflood\r\n:1\r\n"
        assert pub.run("PUBLISH", "flood", "after") == b":1\r\n"
        # The slow subscriber's connection is closed (reset), not kept.
        closed = False
        for _ in range(10_000):
            try:
                if not slow.recv(1 << 20):
                    closed = True
                    break
            except ConnectionResetError:
                closed = True
                break
        assert closed
        assert good.run("PING").endswith(b"pong\r\n$0\r\n\r\n")
    finally:
        slow.close()
        good.close()
        pub.close()


def test_redis_backend_passes_pubsub_through(start_server: StartServer,
                                             redis_server: RedisServer) -> None:
    # More in test_redis_passthrough.py: here, the replies are Redis's.
    server = start_server("serve", "kv", "--resp-port", "0", "--model", "thread",
                          "--store", redis_server.url)
    sub, pub = Conn(server.addresses[1]), Conn(server.addresses[1])
    try:
        assert sub.run("SUBSCRIBE", "a") == b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
        assert pub.run("PUBSUB", "NUMSUB", "a") == b"*2\r\n$1\r\na\r\n:1\r\n"
        assert pub.run("PUBLISH", "a", "m") == b":1\r\n"
        frame: Any = False
        for _ in range(100):    # bounded; each recv waits up to the socket timeout
            frame = sub.reader.gets()
            if frame is not False:
                break
            chunk = sub.sock.recv(65536)
            assert chunk, "closed"
            sub.reader.feed(chunk)
        assert frame == [b"message", b"a", b"m"]
    finally:
        sub.close()
        pub.close()


# -- MONITOR ---------------------------------------------------------------------------

_MONITOR_PREFIX = re.compile(rb"^\+\d+\.\d{6} \[0 (127\.0\.0\.1:\d+|lua)\] ", re.M)


@pytest.mark.parametrize("proto", [2, 3])
def test_monitor_lines_match_redis(pair: tuple[tuple[str, int], tuple[str, int]],
                                   proto: int) -> None:
    """The same commands, as each server's MONITOR shows them (timestamps and
    client ports aside): escaping, redaction, admin commands left out, MULTI,
    a script before the calls it makes (shown as the "lua" client's)."""
    shown = []
    for address in pair:
        mon, client = Conn(address), Conn(address)
        try:
            if proto == 3:
                mon.run("HELLO", "3")
            mon.send("MONITOR")
            assert mon.sock.recv(5) == b"+OK\r\n"
            for line in (["SET", "a", b'x\ny\x01"\\'], ["AUTH", "nobody", "pw"],
                         ["HELLO", "2", "AUTH", "default", "pw", "SETNAME", "x"],
                         ["HELLO", "2"], ["NOPE"], ["GET"], ["CONFIG", "GET", "maxmemory"],
                         ["GET", "a"],
                         ["FUNCTION", "LOAD", "REPLACE", "#!lua name=mon\n"
                          "redis.register_function('f', function(k) "
                          "return redis.call('incr', k[1]) end)"],
                         ["EVAL", "redis.call('set', KEYS[1], ARGV[1])", "1", "a", "b"],
                         ["EVAL", "return 1", "x"], ["FCALL", "f", "1", "n"],
                         ["FCALL", "nosuch", "0"]):
                client.run(*line)
            for line in (["MULTI"], ["SET", "q", "1"], ["EXEC"]):
                client.send(*line)
            client.frames_until_sentinel()
            client.run("ECHO", "the-end")
            seen = b""
            for _ in range(1000):
                if b'"the-end"' in seen:
                    break
                chunk = mon.sock.recv(65536)
                assert chunk
                seen += chunk
            lines = [ln for ln in _MONITOR_PREFIX.sub(b"", seen).split(b"\r\n")
                     if ln and SENTINEL not in ln]
            shown.append(lines)
            mon.send("GET", "x")
            mon.send("RESET")
            for _ in range(1000):
                if seen.endswith(b"+RESET\r\n"):
                    break
                chunk = mon.sock.recv(65536)
                assert chunk
                seen += chunk
            assert b"-ERR Replica can't interact with the keyspace\r\n" in seen
            mon.reader = hiredis.Reader()
            assert mon.run("GET", "x") == b"$-1\r\n"  # RESET: RESP2, no MONITOR
        finally:
            mon.close()
            client.close()
    ours, theirs = shown
    assert ours == theirs
    assert b'"AUTH" "(redacted)" "(redacted)"' in ours
    assert ours[ours.index(b'"FCALL" "f" "1" "n"') + 1] == b'"incr" "n"'


def test_redis_cli_monitor_sees_a_command(start_server: StartServer) -> None:
    cli = require_binary("redis-cli")
    server = kv(start_server)
    port = server.addresses[1][1]
    with subprocess.Popen([cli, "-p", str(port), "MONITOR"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL) as proc:
        try:
            _watch_redis_cli_monitor(proc, port)
        finally:
            proc.kill()


def _watch_redis_cli_monitor(proc: subprocess.Popen[bytes], port: int) -> None:
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    try:
        deadline = time.monotonic() + 10
        while b"cmd=monitor" not in r.execute_command("CLIENT", "LIST"):
            assert time.monotonic() < deadline, "redis-cli never started MONITOR"
        r.set("seen-by-monitor", "yes")
        assert proc.stdout is not None
        # Raw reads (a buffered readline could take the next line along, and
        # select() would not see it): redis-cli prints one line per command.
        fd, out, line = proc.stdout.fileno(), b"", b""
        for _ in range(100):
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, "redis-cli printed nothing before the deadline"
            chunk = os.read(fd, 65536)
            out += chunk
            line = next((ln for ln in out.split(b"\n") if b"seen-by-monitor" in ln), b"")
            if line or not chunk:
                break
        assert re.match(rb'^\d+\.\d{6} \[0 127\.0\.0\.1:\d+\] "SET" "seen-by-monitor" "yes"',
                        line), line
    finally:
        r.close()


def test_monitor_that_does_not_read_is_bounded(start_server: StartServer) -> None:
    server = kv(start_server, "thread", "--client-output-buffer-limit", "normal 512kb 0 0")
    address = server.addresses[1]
    mon = socket.socket()
    mon.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    mon.connect(address)
    mon.settimeout(10)
    mon.sendall(encode_command([b"MONITOR"]))
    busy = Conn(address)
    try:
        deadline = time.monotonic() + 10
        while b"cmd=monitor" not in busy.run("CLIENT", "LIST"):
            assert time.monotonic() < deadline
        value = b"v" * 8192
        for i in range(2048):  # 16 MB of monitor lines if nothing stopped it
            busy.send("SET", "k", value)
            if i % 32 == 31 and b"cmd=monitor" not in busy.run("CLIENT", "LIST"):
                break
        else:
            raise AssertionError("the monitor was never disconnected")
        assert busy.run("GET", "k") == b"$8192\r\n" + value + b"\r\n"
    finally:
        mon.close()
        busy.close()


# -- keyspace notifications ----------------------------------------------------------

# Commands run in order with every class on (KEA plus n); the events each
# server publishes are compared.
KEYSPACE_SCRIPT = [
    "SET s v", "SET s v2 EX 100", "SETNX s x", "SETNX s2 x", "MSET m1 a m2 b", "APPEND s !",
    "INCR n", "INCRBY n 5", "DECR n", "INCRBYFLOAT f 1.5", "SETRANGE s 0 X", "GETSET s y",
    "GETDEL s2", "GETDEL nokey", "EXPIRE m1 100", "PERSIST m1", "PERSIST m1", "EXPIRE nokey 5",
    "PEXPIRE m2 -1", "DEL m1 nokey n", "RENAME f g", "LPUSH l a b", "RPUSH l c", "LPOP l",
    "RPOP l", "LSET l 0 z", "LINSERT l BEFORE z q", "LREM l 0 q", "LTRIM l 0 0",
    "RPOPLPUSH l l2", "LPUSHX l x", "HSET h a 1 b 2", "HSETNX h a 9", "HINCRBY h a 1",
    "HINCRBYFLOAT h b 0.5", "HDEL h a b", "SADD st a b", "SADD st a", "SREM st x",
    "SREM st a", "SMOVE st st2 b", "SADD st a b", "SADD st2 a", "SMOVE st st2 a",
    "SMOVE st st b", "SMOVE st st x", "SMOVE st st2 x", "ZADD z 1 a 2 b", "ZINCRBY z 1 a", "ZREM z x", "ZREM z a",
    "ZADD z 3 c", "ZREMRANGEBYSCORE z 0 2", "ZPOPMIN z", "UNLINK l2 g",
]


def _events_until_the_end(listener: Conn, client: Conn) -> list[Any]:
    """The events ``listener`` (PSUBSCRIBEd to them) received until a
    sentinel ``client`` publishes now; then notifications are switched off."""
    client.run("PUBLISH", "__keyevent@0__:the-end", "x")
    events: list[Any] = []
    reader = listener.reader
    for _ in range(10_000):
        frame = reader.gets()
        if frame is False:
            chunk = listener.sock.recv(65536)
            assert chunk
            reader.feed(chunk)
            continue
        if frame[2] == b"__keyevent@0__:the-end":
            break
        events.append(frame[2:])
    client.run("CONFIG", "SET", "notify-keyspace-events", "")
    return events


def _keyspace_events(address: tuple[str, int]) -> list[Any]:
    listener, client = Conn(address), Conn(address)
    try:
        client.run("FLUSHALL")
        client.run("CONFIG", "SET", "notify-keyspace-events", "KEAn")
        listener.run("PSUBSCRIBE", "__key*__:*")
        for line in KEYSPACE_SCRIPT:
            client.run(*line.split())
        return _events_until_the_end(listener, client)
    finally:
        listener.close()
        client.close()


def test_keyspace_events_match_redis(pair: tuple[tuple[str, int], tuple[str, int]]) -> None:
    ours, theirs = (_keyspace_events(address) for address in pair)
    assert ours == theirs
    assert [b"__keyevent@0__:expire", b"m1"] in ours  # the script did fire events


def _restore_events(address: tuple[str, int]) -> list[Any]:
    payload = rdb.seal(b"\x00\x01v")  # DUMP of the string "v"
    listener, client = Conn(address), Conn(address)
    try:
        client.run("FLUSHALL")
        client.run("MSET", "old", "x", "old2", "x")
        client.run("CONFIG", "SET", "notify-keyspace-events", "KEAn")
        listener.run("PSUBSCRIBE", "__key*__:*")
        for argv in (("RESTORE", "k", "0", payload), ("RESTORE", "k", "0", payload),
                     ("RESTORE", "k", "0", payload, "REPLACE"),
                     ("RESTORE", "old", "100000", payload, "REPLACE"),
                     ("RESTORE", "gone", "1", payload, "ABSTTL"),
                     ("RESTORE", "old2", "1", payload, "ABSTTL", "REPLACE")):
            client.run(*argv)
        return _events_until_the_end(listener, client)
    finally:
        listener.close()
        client.close()


def test_restore_events_match_redis(pair: tuple[tuple[str, int], tuple[str, int]]) -> None:
    ours, theirs = (_restore_events(address) for address in pair)
    assert ours == theirs
    assert [b"__keyevent@0__:restore", b"k"] in ours


# Blocking pops served at once, then clients woken by a push: their events.
BLOCKING_AT_ONCE = ["RPUSH bi a", "BLPOP bi 0", "ZADD bz 1 a 2 b", "BZPOPMAX bz 0",
                    "LPUSH bm x y", "BLMOVE bm bm2 LEFT RIGHT 0", "BLMPOP 0 2 nokey bm2 RIGHT"]
BLOCKING_WAITS = [("BLPOP w1 w2 0", "RPUSH w2 a b"), ("BZPOPMIN wz 0", "ZADD wz 1 m"),
                  ("BRPOPLPUSH wl wd 0", "LPUSH wl v")]


def _blocking_events(address: tuple[str, int]) -> list[Any]:
    listener, client, waiter = Conn(address), Conn(address), Conn(address)
    try:
        client.run("FLUSHALL")
        client.run("CONFIG", "SET", "notify-keyspace-events", "KEAn")
        listener.run("PSUBSCRIBE", "__key*__:*")
        for line in BLOCKING_AT_ONCE:
            client.run(*line.split())
        for wait, push in BLOCKING_WAITS:
            waiter.send(*wait.split())
            deadline = time.monotonic() + 10
            while b"flags=b" not in client.run("CLIENT", "LIST"):
                assert time.monotonic() < deadline, "the waiter never blocked"
            client.run(*push.split())
            assert waiter.frames_until_sentinel()[:1] in (b"*", b"$")  # served
        return _events_until_the_end(listener, client)
    finally:
        listener.close()
        client.close()
        waiter.close()


def test_blocking_pop_events_match_redis(pair: tuple[tuple[str, int], tuple[str, int]]) -> None:
    ours, theirs = (_blocking_events(address) for address in pair)
    assert ours == theirs
    assert [b"__keyevent@0__:zpopmin", b"wz"] in ours  # a woken client's pop fired


@pytest.mark.parametrize("flags", ["KA", "EA", "gKE", "$lshzxeKE", "KEA", "Kgmdtn$", "A", "",
                                   "Ex", "KEAn", "Q", "KX", "g$lshzxetd"])
def test_notify_keyspace_events_config_matches_redis(
        pair: tuple[tuple[str, int], tuple[str, int]], flags: str) -> None:
    ours, theirs = Conn(pair[0]), Conn(pair[1])
    try:
        for argv in (["CONFIG", "SET", "notify-keyspace-events", flags],
                     ["CONFIG", "GET", "notify-keyspace-events"],
                     ["CONFIG", "SET", "notify-keyspace-events", ""]):
            assert ours.run(*argv) == theirs.run(*argv), argv
    finally:
        ours.close()
        theirs.close()


def test_expired_and_evicted_events(start_server: StartServer) -> None:
    server = kv(start_server)
    listener, client = Conn(server.addresses[1]), Conn(server.addresses[1])
    try:
        client.run("CONFIG", "SET", "notify-keyspace-events", "Exe")
        listener.run("PSUBSCRIBE", "*")
        deadline = time.monotonic() + 10

        def next_event() -> Any:
            while time.monotonic() < deadline:
                frame = listener.reader.gets()
                if frame is not False:
                    return frame[2:]
                listener.reader.feed(listener.sock.recv(65536))
            raise AssertionError("no event before the deadline")

        client.run("PSETEX", "short", "50", "1")  # the active cycle expires it
        assert next_event() == [b"__keyevent@0__:expired", b"short"]
        client.run("SET", "victim", "v")
        client.run("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        client.run("CONFIG", "SET", "maxmemory", "1")
        assert next_event() == [b"__keyevent@0__:evicted", b"victim"]
        client.run("CONFIG", "SET", "maxmemory", "0")
    finally:
        listener.close()
        client.close()


# -- ACL channel rules -------------------------------------------------------------------

CHANNEL_ACL = ("user default on nopass ~* &* +@all\n"
               "user chan on nopass ~* &a* &b +@all\n"
               "user none on nopass ~* +@all\n"
               "user nopubsub on nopass ~* &* +@all -@pubsub\n")


def test_acl_channel_rules_match_redis(start_server: StartServer, tmp_path: Any) -> None:
    acl_file = tmp_path / "users.acl"
    acl_file.write_text(CHANNEL_ACL)
    binary = require_binary("redis-server")
    server = start_server("serve", "kv", "--resp-port", "0", "--aclfile", str(acl_file))
    real = start_redis(binary, tmp_path, ["--aclfile", str(acl_file)])
    script = [["ACL", "LIST"], ["AUTH", "chan", "x"], ["PUBLISH", "zz", "m"],
              ["PUBLISH", "abc", "m"], ["SPUBLISH", "b", "m"], ["SUBSCRIBE", "a1", "zz"],
              ["PSUBSCRIBE", "a*"], ["PSUBSCRIBE", "a1"], ["SSUBSCRIBE", "zz"],
              ["UNSUBSCRIBE", "zz"], ["RESET"], ["AUTH", "none", "x"], ["PUBLISH", "a", "m"],
              ["SUBSCRIBE", "b"], ["AUTH", "nopubsub", "x"], ["PUBLISH", "a", "m"],
              ["PUBSUB", "NUMPAT"], ["RESET"], ["PUBLISH", "q", "m"]]
    ours, theirs = Conn(server.addresses[1]), Conn(real.address)
    try:
        for argv in script:
            assert ours.run(*argv) == theirs.run(*argv), argv
    finally:
        ours.close()
        theirs.close()
        real.kill()


def test_redis_backend_keyspace_events_are_redis_own(start_server: StartServer,
                                                    redis_server: RedisServer) -> None:
    # Pub/sub is the backend's, so are its keyspace events: CONFIG SET/GET
    # reach that Redis, whose events reach subscribers of sockworks.
    server = start_server("serve", "kv", "--resp-port", "0", "--model", "thread",
                          "--store", redis_server.url)
    conn, sub = Conn(server.addresses[1]), Conn(server.addresses[1])
    direct = redis.Redis(port=redis_server.port, socket_timeout=10)
    try:
        assert conn.run("CONFIG", "SET", "notify-keyspace-events", "KEA") == b"+OK\r\n"
        assert conn.run("CONFIG", "GET", "notify-keyspace-events") == (
            b"*2\r\n$22\r\nnotify-keyspace-events\r\n$3\r\nAKE\r\n")
        sub.send("SUBSCRIBE", "__keyevent@0__:set")
        frames: list[Any] = []
        for _ in range(200):    # bounded; each recv waits up to the socket timeout
            frame = sub.reader.gets()
            if frame is False:
                chunk = sub.sock.recv(65536)
                assert chunk, "closed"
                sub.reader.feed(chunk)
                continue
            frames.append(frame)
            if frame[0] == b"subscribe":
                direct.set("evk", "1")    # a client of the backend writes
            if frame[0] == b"message":
                break
        assert frames[-1] == [b"message", b"__keyevent@0__:set", b"evk"]
        assert conn.run("CONFIG", "SET", "notify-keyspace-events", "Q").startswith(
            b"-ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') "
            b"- Invalid event class character")
    finally:
        direct.close()
        sub.close()
        conn.close()
