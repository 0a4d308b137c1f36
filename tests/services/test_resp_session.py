"""RespSession driven directly, as a concurrency model would: bytes in, Output out.

No sockets: a real embedded store, real sessions, and the exact bytes Redis 7
would send (RESP2, and RESP3 after HELLO 3). Expiry uses the store's clock
injection point, so no test sleeps.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sockworks.core.service import Output
from sockworks.core.stats import ServerStats
from sockworks.protocols.resp import encode_command
from sockworks.services.resp import RespService, RespSession
from sockworks.storage.embedded import open_embedded_store
from sockworks.storage.memory import MemoryStore


class FakeClock:
    """A settable millisecond clock for the store (its documented injection point)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(clock: FakeClock) -> Iterator[RespService]:
    store = MemoryStore(clock=clock)
    svc = RespService(store, ServerStats(), port=6390, owns_store=True)
    yield svc
    svc.close()


class Client:
    """One session plus helpers that send commands the way clients do."""

    def __init__(self, service: RespService, peer: str = "127.0.0.1:40000") -> None:
        self.session: RespSession = service.new_session(peer)

    def send(self, data: bytes) -> Output:
        return self.session.on_data(data)

    def __call__(self, *args: bytes | str | int) -> bytes:
        out = self.send(encode_command(
            [a if isinstance(a, bytes) else str(a).encode() for a in args]))
        return out.data


@pytest.fixture
def c(service: RespService) -> Client:
    return Client(service)


@pytest.fixture
def c3(service: RespService) -> Client:
    client = Client(service)
    assert client("HELLO", 3).startswith(b"%7\r\n")
    return client


# -- basics ---------------------------------------------------------------------------

def test_ping_echo(c: Client) -> None:
    assert c("PING") == b"+PONG\r\n"
    assert c("ping", "hi") == b"$2\r\nhi\r\n"
    assert c("PING", "a", "b") == b"-ERR wrong number of arguments for 'ping' command\r\n"
    assert c("ECHO", b"\x00\r\n") == b"$3\r\n\x00\r\n\r\n"


def test_get_set_resp2_and_resp3(c: Client, c3: Client) -> None:
    assert c("SET", "k", b"v\r\nx") == b"+OK\r\n"
    assert c("GET", "k") == b"$4\r\nv\r\nx\r\n"
    assert c("GET", "missing") == b"$-1\r\n"
    assert c3("GET", "missing") == b"_\r\n"
    assert c3("GET", "k") == b"$4\r\nv\r\nx\r\n"


def test_inline_commands(c: Client) -> None:
    assert c.send(b'SET k "a b"\r\nGET k\r\nPING\n').data == b"+OK\r\n$3\r\na b\r\n+PONG\r\n"


def test_unknown_command_and_arity(c: Client) -> None:
    out = c.send(encode_command([b"foo", b"a", b"b"]))
    assert out.data == b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"
    assert not out.close
    assert c("GET") == b"-ERR wrong number of arguments for 'get' command\r\n"
    assert c("get", "a", "b") == b"-ERR wrong number of arguments for 'get' command\r\n"
    assert c("PING") == b"+PONG\r\n"  # the connection stays usable


def test_unknown_command_error_is_truncated_and_single_line(c: Client) -> None:
    reply = c("nope", b"x" * 300, b"a\r\nb")
    assert reply.count(b"\r\n") == 1
    assert reply.startswith(b"-ERR unknown command 'nope', with args beginning with: 'xxx")
    assert len(reply) < 200


def test_set_options(c: Client, c3: Client, clock: FakeClock) -> None:
    assert c("SET", "k", "1", "NX") == b"+OK\r\n"
    assert c("SET", "k", "2", "NX") == b"$-1\r\n"
    assert c3("SET", "k", "2", "NX") == b"_\r\n"
    assert c("SET", "other", "2", "XX") == b"$-1\r\n"
    assert c("SET", "k", "3", "XX", "GET") == b"$1\r\n1\r\n"
    assert c("SET", "new", "x", "GET") == b"$-1\r\n"
    assert c("SET", "k", "4", "EX", "10") == b"+OK\r\n"
    assert c("PTTL", "k") == b":10000\r\n"
    assert c("SET", "k", "5", "KEEPTTL") == b"+OK\r\n"
    assert c("PTTL", "k") == b":10000\r\n"
    assert c("SET", "k", "6", "PX", "1500") == b"+OK\r\n"
    assert c("TTL", "k") == b":2\r\n"  # rounded like Redis
    assert c("SET", "k", "7") == b"+OK\r\n"
    assert c("TTL", "k") == b":-1\r\n"
    clock.now += 1


@pytest.mark.parametrize(("args", "error"), [
    (("SET", "k", "v", "NX", "XX"), b"-ERR syntax error\r\n"),
    (("SET", "k", "v", "EX", "1", "PX", "1"), b"-ERR syntax error\r\n"),
    (("SET", "k", "v", "EX", "1", "KEEPTTL"), b"-ERR syntax error\r\n"),
    (("SET", "k", "v", "EX"), b"-ERR syntax error\r\n"),
    (("SET", "k", "v", "BOGUS"), b"-ERR syntax error\r\n"),
    (("SET", "k", "v", "EX", "x"), b"-ERR value is not an integer or out of range\r\n"),
    (("SET", "k", "v", "EX", "0"), b"-ERR invalid expire time in 'set' command\r\n"),
    (("SET", "k", "v", "PX", "-5"), b"-ERR invalid expire time in 'set' command\r\n"),
    (("SET", "k", "v", "EX", str(2**62)), b"-ERR invalid expire time in 'set' command\r\n"),
    (("SET", "k"), b"-ERR wrong number of arguments for 'set' command\r\n"),
])
def test_set_errors(c: Client, args: tuple[str, ...], error: bytes) -> None:
    assert c(*args) == error
    assert c("EXISTS", "k") == b":0\r\n"


def test_del_exists_several_keys(c: Client) -> None:
    c("MSET", "a", "1", "b", "2", "c", "3")
    assert c("EXISTS", "a", "b", "nope", "a") == b":3\r\n"
    assert c("DEL", "a", "b", "nope", "a") == b":2\r\n"
    assert c("EXISTS", "a", "b", "c") == b":1\r\n"
    assert c("DEL") == b"-ERR wrong number of arguments for 'del' command\r\n"


def test_counters(c: Client) -> None:
    assert c("INCR", "n") == b":1\r\n"
    assert c("INCRBY", "n", "41") == b":42\r\n"
    assert c("DECR", "n") == b":41\r\n"
    assert c("DECRBY", "n", "-9") == b":50\r\n"
    assert c("INCRBY", "n", "x") == b"-ERR value is not an integer or out of range\r\n"
    assert c("INCRBY", "n", "1.5") == b"-ERR value is not an integer or out of range\r\n"
    assert c("INCRBY", "n", " 1") == b"-ERR value is not an integer or out of range\r\n"
    c("SET", "s", "abc")
    assert c("INCR", "s") == b"-ERR value is not an integer or out of range\r\n"
    c("SET", "big", str(2**63 - 1))
    assert c("INCR", "big") == b"-ERR increment or decrement would overflow\r\n"
    assert c("DECRBY", "n", str(-(2**63))) == b"-ERR decrement would overflow\r\n"
    assert c("GET", "n") == b"$2\r\n50\r\n"


def test_mget_mset(c: Client, c3: Client) -> None:
    assert c("MSET", "a", "1", "b", b"\x00") == b"+OK\r\n"
    assert c("MGET", "a", "nope", "b") == b"*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n\x00\r\n"
    assert c3("MGET", "a", "nope") == b"*2\r\n$1\r\n1\r\n_\r\n"
    assert c("MSET", "a", "1", "b") == b"-ERR wrong number of arguments for 'mset' command\r\n"


def test_expiry(c: Client, clock: FakeClock) -> None:
    c("SET", "k", "v")
    assert c("TTL", "nope") == b":-2\r\n"
    assert c("EXPIRE", "nope", "10") == b":0\r\n"
    assert c("EXPIRE", "k", "10") == b":1\r\n"
    assert c("TTL", "k") == b":10\r\n"
    assert c("PEXPIRE", "k", "2500") == b":1\r\n"
    assert c("PTTL", "k") == b":2500\r\n"
    assert c("PERSIST", "k") == b":1\r\n"
    assert c("PERSIST", "k") == b":0\r\n"
    assert c("TTL", "k") == b":-1\r\n"
    c("PEXPIRE", "k", "100")
    clock.now += 100
    assert c("GET", "k") == b"$-1\r\n"
    c("SET", "k", "v")
    assert c("EXPIRE", "k", "-1") == b":1\r\n"  # a past time deletes, as Redis
    assert c("EXISTS", "k") == b":0\r\n"
    assert c("EXPIRE", "k", "x") == b"-ERR value is not an integer or out of range\r\n"
    assert c("EXPIRE", "k", str(2**62)) == b"-ERR invalid expire time in 'expire' command\r\n"
    assert c("PEXPIRE", "k", str(2**63 - 1)) == \
        b"-ERR invalid expire time in 'pexpire' command\r\n"


def test_keyspace_commands(c: Client) -> None:
    assert c("DBSIZE") == b":0\r\n"
    c("MSET", "user:1", "a", "user:2", "b", "other", "c")
    assert c("DBSIZE") == b":3\r\n"
    assert sorted(c("KEYS", "user:*").split(b"\r\n")[2::2]) == [b"user:1", b"user:2"]
    assert c("TYPE", "user:1") == b"+string\r\n"
    assert c("TYPE", "nope") == b"+none\r\n"
    assert c("FLUSHDB") == b"+OK\r\n"
    assert c("DBSIZE") == b":0\r\n"
    assert c("FLUSHDB", "ASYNC") == b"+OK\r\n"
    assert c("FLUSHDB", "NOW") == b"-ERR syntax error\r\n"


def scan_all(client: Client, *options: str) -> list[bytes]:
    import hiredis

    cursor = b"0"
    keys: list[bytes] = []
    for _ in range(1000):
        reader = hiredis.Reader()
        reader.feed(client("SCAN", cursor, *options))
        cursor, batch = reader.gets()
        keys += batch
        if cursor == b"0":
            return keys
    raise AssertionError("SCAN did not finish")


def test_scan(c: Client) -> None:
    pytest.importorskip("hiredis")
    for i in range(50):
        c("SET", f"k{i}", "v")
    c("SET", "other", "v")
    assert sorted(scan_all(c, "COUNT", "7")) == sorted(
        [b"k%d" % i for i in range(50)] + [b"other"])
    assert sorted(scan_all(c, "MATCH", "k1*")) == sorted(
        [b"k1"] + [b"k1%d" % i for i in range(10)])
    assert scan_all(c, "TYPE", "list") == []
    assert len(scan_all(c, "TYPE", "string")) == 51
    assert c("SCAN", "x") == b"-ERR invalid cursor\r\n"
    assert c("SCAN", "0", "COUNT", "0") == b"-ERR syntax error\r\n"
    assert c("SCAN", "0", "COUNT") == b"-ERR syntax error\r\n"
    assert c("SCAN", "0", "BOGUS", "1") == b"-ERR syntax error\r\n"


def test_select(c: Client) -> None:
    assert c("SELECT", "0") == b"+OK\r\n"
    assert c("SELECT", "1") == b"-ERR DB index is out of range\r\n"
    assert c("SELECT", "x") == b"-ERR value is not an integer or out of range\r\n"


def test_info(c: Client, c3: Client, service: RespService) -> None:
    c("SET", "a", "1")
    c("SET", "b", "1", "EX", "100")
    c("GET", "a")
    c("GET", "nope")
    reply = c("INFO")
    header, _, body = reply.partition(b"\r\n")
    assert header == b"$%d" % (len(body) - 2)
    text = body[:-2].decode()
    for line in ("# Server", "redis_version:7.2.0", "redis_mode:standalone", "tcp_port:6390",
                 "# Clients", "connected_clients:2", "# Persistence", "aof_enabled:0",
                 "# Stats", "keyspace_hits:1", "keyspace_misses:1", "# Keyspace",
                 "db0:keys=2,expires=1,avg_ttl=100000"):
        assert line in text.split("\r\n"), line
    assert "process_id:" in text and "uptime_in_seconds:" in text
    only = c("INFO", "keyspace")
    # avg_ttl: the mean time left of the keys with a TTL (the clock is fake).
    assert only == b"$49\r\n# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=100000\r\n\r\n"
    assert c3("INFO", "keyspace") == (
        b"=53\r\ntxt:# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=100000\r\n\r\n")
    assert c("INFO", "nosuchsection") == b"$0\r\n\r\n"


def test_client_commands(c: Client, c3: Client) -> None:
    assert c("CLIENT", "GETNAME") == b"$-1\r\n"
    assert c3("CLIENT", "GETNAME") == b"_\r\n"
    assert c("CLIENT", "SETNAME", "worker-1") == b"+OK\r\n"
    assert c("CLIENT", "GETNAME") == b"$8\r\nworker-1\r\n"
    assert c("CLIENT", "SETNAME", "has space") == (
        b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n")
    assert c("CLIENT", "ID") == b":%d\r\n" % c.session.client_id
    assert c3("CLIENT", "ID") != c("CLIENT", "ID")
    assert c("CLIENT", "SETINFO", "LIB-NAME", "redis-py") == b"+OK\r\n"
    assert c("CLIENT", "SETINFO", "lib-ver", "8.1.0") == b"+OK\r\n"
    assert c("CLIENT", "SETINFO", "COLOR", "x") == b"-ERR Unrecognized option 'COLOR'\r\n"
    info = c("CLIENT", "INFO")
    assert b"name=worker-1" in info and b"lib-name=redis-py" in info and b"resp=2" in info
    assert c3("CLIENT", "INFO").startswith(b"=")
    assert c("CLIENT", "LIST").count(b"id=") == 2
    assert c("CLIENT", "BOGUS") == b"-ERR unknown subcommand 'BOGUS'. Try CLIENT HELP.\r\n"
    assert c("CLIENT", "SETNAME") == (
        b"-ERR wrong number of arguments for 'client|setname' command\r\n")


def test_config_get(c: Client, c3: Client) -> None:
    assert c("CONFIG", "GET", "save") == b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"
    assert c3("CONFIG", "GET", "appendonly") == b"%1\r\n$10\r\nappendonly\r\n$2\r\nno\r\n"
    assert c("CONFIG", "GET", "databases") == b"*2\r\n$9\r\ndatabases\r\n$1\r\n1\r\n"
    assert c("CONFIG", "GET", "no-such-thing") == b"*0\r\n"
    assert c3("CONFIG", "GET", "no-such-thing") == b"%0\r\n"
    # maxmemory, -policy, -samples and (issue #10) -clients
    assert c("CONFIG", "GET", "maxmemory*").count(b"maxmemory") == 4
    assert c("CONFIG", "SET", "save", "") == b"+OK\r\n"  # no snapshots, none asked for
    assert c("CONFIG", "SET", "save", "60 1").startswith(b"-ERR CONFIG SET failed (possibly related to argument 'save') - can't set immutable config")
    assert c("CONFIG", "SET", "no-such", "1").startswith(b"-ERR Unknown option")
    assert c("CONFIG", "GET") == b"-ERR wrong number of arguments for 'config|get' command\r\n"


def test_command_docs_and_count(c: Client, c3: Client) -> None:
    assert c("COMMAND", "DOCS", "get", "nosuch") == (
        b"*2\r\n$3\r\nget\r\n*2\r\n$5\r\ngroup\r\n$6\r\nstring\r\n")
    assert c3("COMMAND", "DOCS", "hset") == (
        b"%1\r\n$4\r\nhset\r\n%1\r\n$5\r\ngroup\r\n$4\r\nhash\r\n")
    assert c3("COMMAND", "DOCS", "nosuch") == b"%0\r\n"
    count = int(c("COMMAND", "COUNT")[1:-2])
    assert count >= 30
    info = c("COMMAND", "INFO", "get", "nosuch")
    assert info.startswith(b"*2\r\n*10\r\n$3\r\nget\r\n:2\r\n") and info.endswith(b"$-1\r\n")
    assert c("COMMAND").startswith(b"*%d\r\n" % count)


def test_hello(c: Client) -> None:
    hello2 = c("HELLO")
    assert hello2.startswith(b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n")
    assert b"$5\r\nproto\r\n:2\r\n" in hello2
    hello3 = c("HELLO", "3", "SETNAME", "me")
    assert hello3.startswith(b"%7\r\n")
    assert b"$5\r\nproto\r\n:3\r\n" in hello3
    assert b"$2\r\nid\r\n:%d\r\n" % c.session.client_id in hello3
    assert c("CLIENT", "GETNAME") == b"$2\r\nme\r\n"
    assert c("GET", "nope") == b"_\r\n"
    assert c("HELLO", "4") == b"-NOPROTO unsupported protocol version\r\n"
    assert c("HELLO", "1") == b"-NOPROTO unsupported protocol version\r\n"
    assert c("HELLO", "x") == b"-ERR Protocol version is not an integer or out of range\r\n"
    # Stricter than Redis (docs/security.md): no password is configured, so
    # credentials for the default user are refused, not silently accepted.
    assert c("HELLO", "3", "AUTH", "default", "anything").startswith(b"-ERR AUTH <password>")
    assert c("HELLO", "3", "AUTH", "bob", "pw") == (
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
    assert c("HELLO", "2").startswith(b"*14\r\n")
    assert c("GET", "nope") == b"$-1\r\n"


def test_quit_closes_and_nothing_after_runs(c: Client) -> None:
    out = c.send(encode_command([b"QUIT"]) + encode_command([b"SET", b"k", b"v"]))
    assert out.data == b"+OK\r\n" and out.close
    other = Client(c.session.service)
    assert other("EXISTS", "k") == b":0\r\n"
    assert c.send(b"PING\r\n").close


@pytest.mark.parametrize("request_text", [
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\nSET pwned yes\r\n",
    b"GET / HTTP/1.1\r\nHost: example\r\n\r\n",
    b"post /x HTTP/1.0\r\n",
])
def test_http_request_closes_without_running_anything(c: Client, request_text: bytes) -> None:
    # A browser can be made to POST to the Redis port with commands in the
    # body (cross-protocol scripting): like Redis, POST or Host: closes at
    # once and nothing after them runs.
    out = c.send(request_text)
    assert out.close
    assert b"pwned" not in out.data and b"+OK" not in out.data
    other = Client(c.session.service)
    assert other("EXISTS", "pwned") == b":0\r\n"


def test_protocol_error_replies_then_closes(c: Client) -> None:
    out = c.send(encode_command([b"SET", b"k", b"v"]) + b"*1\r\n$blabla\r\n")
    assert out.data == b"+OK\r\n-ERR Protocol error: invalid bulk length\r\n"
    assert out.close
    later = c.send(b"PING\r\n")
    assert later.data == b"" and later.close


def test_negative_multibulk_then_ping(c: Client) -> None:
    out = c.send(b"*-10\r\n")
    assert out.data == b"" and not out.close
    assert c.send(b"*1\r\n$4\r\nPING\r\n").data == b"+PONG\r\n"


def test_pipeline_one_output_in_order(c: Client) -> None:
    data = b"".join(encode_command([b"INCR", b"n"]) for _ in range(100))
    out = c.send(data + encode_command([b"GET", b"n"]))
    assert out.data == b"".join(b":%d\r\n" % i for i in range(1, 101)) + b"$3\r\n100\r\n"


def test_partial_request_is_busy(c: Client) -> None:
    assert not c.session.busy
    assert c.send(b"*2\r\n$3\r\nGET\r\n").data == b""
    assert c.session.busy
    assert c.send(b"$1\r\nk\r\n").data == b"$-1\r\n"
    assert not c.session.busy


# -- transactions ----------------------------------------------------------------------

def test_multi_exec(c: Client, c3: Client) -> None:
    assert c("MULTI") == b"+OK\r\n"
    assert c("SET", "k", "1") == b"+QUEUED\r\n"
    assert c("INCR", "k") == b"+QUEUED\r\n"
    assert c("GET", "nope") == b"+QUEUED\r\n"
    assert c3("GET", "k") == b"_\r\n"  # nothing ran yet
    assert c("EXEC") == b"*3\r\n+OK\r\n:2\r\n$-1\r\n"
    assert c3("GET", "k") == b"$1\r\n2\r\n"
    assert c3("MULTI") == b"+OK\r\n"
    assert c3("GET", "nope") == b"+QUEUED\r\n"
    assert c3("EXEC") == b"*1\r\n_\r\n"


def test_exec_errors_stay_in_their_slot(c: Client) -> None:
    c("SET", "s", "abc")
    c("MULTI")
    c("INCR", "s")
    c("SET", "k", "v", "EX", "0")
    c("SET", "k", "v")
    assert c("EXEC") == (b"*3\r\n-ERR value is not an integer or out of range\r\n"
                         b"-ERR invalid expire time in 'set' command\r\n+OK\r\n")


def test_queueing_errors_abort_exec(c: Client) -> None:
    c("MULTI")
    assert c("SET", "k", "v") == b"+QUEUED\r\n"
    assert c("NOSUCH").startswith(b"-ERR unknown command 'NOSUCH'")
    assert c("GET") == b"-ERR wrong number of arguments for 'get' command\r\n"
    assert c("EXEC") == b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    assert c("EXISTS", "k") == b":0\r\n"
    assert c("EXEC") == b"-ERR EXEC without MULTI\r\n"


def test_multi_misuse(c: Client) -> None:
    assert c("EXEC") == b"-ERR EXEC without MULTI\r\n"
    assert c("DISCARD") == b"-ERR DISCARD without MULTI\r\n"
    c("MULTI")
    assert c("MULTI") == b"-ERR MULTI calls can not be nested\r\n"
    c("SET", "k", "v")
    assert c("DISCARD") == b"+OK\r\n"
    assert c("EXISTS", "k") == b":0\r\n"
    c("MULTI")
    assert c("RESET") == b"+RESET\r\n"
    assert c("EXEC") == b"-ERR EXEC without MULTI\r\n"


def test_exec_is_atomic(service: RespService) -> None:
    # One session moves a unit between two counters inside MULTI/EXEC while
    # another reads both: with EXEC atomic, the reader never sees them apart.
    writer, reader = Client(service), Client(service)
    writer("MSET", "a", "0", "b", "0")
    stop = threading.Event()
    seen: list[bytes] = []

    def read() -> None:
        while not stop.is_set() and len(seen) < 20000:
            seen.append(reader("MGET", "a", "b"))

    # Switch threads as often as possible, so a non-atomic EXEC would be
    # caught between its two INCRs (checked: without store.atomic() this
    # test fails most runs).
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    thread = threading.Thread(target=read)
    thread.start()
    try:
        txn = (encode_command([b"MULTI"]) + encode_command([b"INCR", b"a"])
               + encode_command([b"DECR", b"b"]) + encode_command([b"EXEC"]))
        for _ in range(20000):  # until the reader has sampled plenty
            writer.send(txn)
            if len(seen) >= 5000:
                break
    finally:
        stop.set()
        thread.join(30)
        sys.setswitchinterval(interval)
    assert seen
    for reply in seen:
        parts = reply.split(b"\r\n")
        assert int(parts[2]) == -int(parts[4]), reply


# -- service-level behaviour ---------------------------------------------------------------

def test_busy_reply(service: RespService) -> None:
    assert service.busy_reply() == b"-ERR max number of clients reached\r\n"


def test_counters_in_info(service: RespService) -> None:
    client = Client(service)
    client.send(b"PING\r\nPING\r\nNOSUCH\r\n")
    stats = client("INFO", "stats").decode()
    # NOSUCH was refused before it ran: an error reply, not a command
    # processed (Redis counts commands in call()).
    assert "total_commands_processed:2" in stats
    assert "total_error_replies:1" in stats


def test_session_close_forgets_client(service: RespService) -> None:
    a, b = Client(service), Client(service)
    assert b"connected_clients:2" in a("INFO", "clients")
    b.session.on_close()
    assert b"connected_clients:1" in a("INFO", "clients")
    assert a.session.on_eof().close


def test_writes_carry_the_durability_barrier(tmp_path: Path) -> None:
    store = open_embedded_store(str(tmp_path), "always", active_expiry=False)
    service = RespService(store, ServerStats(), owns_store=True)
    try:
        client = Client(service)
        write = client.send(encode_command([b"SET", b"k", b"v"]))
        assert write.data == b"+OK\r\n" and write.barrier is not None
        assert write.barrier.wait(10)
        read = client.send(encode_command([b"GET", b"k"]))
        assert read.data == b"$1\r\nv\r\n" and read.barrier is None
        client("MULTI")
        client("INCR", "n")
        out = client.send(encode_command([b"EXEC"]))
        assert out.data == b"*1\r\n:1\r\n" and out.barrier is not None
        assert client("CONFIG", "GET", "appendonly") == (
            b"*2\r\n$10\r\nappendonly\r\n$3\r\nyes\r\n")
        assert b"aof_enabled:1" in client("INFO", "persistence")
        assert client("COMPACT") == b"+compaction started\r\n"
    finally:
        service.close()
    # The data survived the rewrite and the restart.
    reopened = open_embedded_store(str(tmp_path), "always", active_expiry=False)
    try:
        assert reopened.get(b"k") == b"v" and reopened.get(b"n") == b"1"
    finally:
        reopened.close()


def test_shares_the_store_with_another_front_end(service: RespService) -> None:
    Client(service)("SET", "shared", "1")
    assert service.store.get(b"shared") == b"1"
    service.store.set(b"from-text-port", b"2")
    assert Client(service)("GET", "from-text-port") == b"$1\r\n2\r\n"


# -- a model check -----------------------------------------------------------------------------

keys = st.sampled_from([b"a", b"b", b"c"])
commands = st.one_of(
    st.tuples(st.just(b"SET"), keys, st.binary(max_size=5)),
    st.tuples(st.just(b"GET"), keys),
    st.tuples(st.just(b"DEL"), keys, keys),
    st.tuples(st.just(b"INCR"), keys),
    st.tuples(st.just(b"EXISTS"), keys, keys),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(commands, max_size=30), st.sampled_from([2, 3]))
def test_matches_a_dict_model(service: RespService, ops: list[tuple[bytes, ...]],
                              proto: int) -> None:
    service.store.flushdb()
    client = Client(service)
    client("HELLO", proto)
    null = b"$-1\r\n" if proto == 2 else b"_\r\n"
    model: dict[bytes, bytes] = {}
    expected: list[bytes] = []
    for op in ops:
        name = op[0]
        if name == b"SET":
            model[op[1]] = op[2]
            expected.append(b"+OK\r\n")
        elif name == b"GET":
            value = model.get(op[1])
            expected.append(null if value is None else b"$%d\r\n%b\r\n" % (len(value), value))
        elif name == b"DEL":
            removed = sum(model.pop(k, None) is not None for k in dict.fromkeys(op[1:]))
            expected.append(b":%d\r\n" % removed)
        elif name == b"EXISTS":
            expected.append(b":%d\r\n" % sum(k in model for k in op[1:]))
        else:
            try:
                number = int(model.get(op[1], b"0"))
                valid = b"%d" % number == model.get(op[1], b"0")
            except ValueError:
                valid = False
            if valid:
                model[op[1]] = b"%d" % (number + 1)
                expected.append(b":%d\r\n" % (number + 1))
            else:
                expected.append(b"-ERR value is not an integer or out of range\r\n")
    out = client.send(b"".join(encode_command(list(op)) for op in ops)) if ops else Output()
    assert out.data == b"".join(expected)


def test_expire_options(c: Client) -> None:
    c("SET", "k", "v")
    assert c("EXPIRE", "k", "10", "XX") == b":0\r\n"
    assert c("EXPIRE", "k", "10", "GT") == b":0\r\n"  # no TTL counts as infinite
    assert c("EXPIRE", "k", "10", "LT") == b":1\r\n"
    assert c("EXPIRE", "k", "20", "NX") == b":0\r\n"
    assert c("EXPIRE", "k", "20", "gt") == b":1\r\n"
    assert c("EXPIRE", "k", "5", "GT") == b":0\r\n"
    assert c("EXPIRE", "k", "5", "XX", "LT") == b":1\r\n"
    assert c("TTL", "k") == b":5\r\n"
    assert c("EXPIRE", "nope", "5", "NX") == b":0\r\n"
    assert c("EXPIRE", "k", "5", "NX", "XX") == (
        b"-ERR NX and XX, GT or LT options at the same time are not compatible\r\n")
    assert c("EXPIRE", "k", "5", "GT", "LT") == (
        b"-ERR GT and LT options at the same time are not compatible\r\n")
    assert c("EXPIRE", "k", "5", "SOON") == b"-ERR Unsupported option SOON\r\n"


def test_set_with_an_absolute_time_already_past(c: Client) -> None:
    c("SET", "k", "old")
    assert c("SET", "k", "new", "EXAT", "1", "GET") == b"$3\r\nold\r\n"
    assert c("EXISTS", "k") == b":0\r\n"
    c("SET", "k", "old")
    assert c("SET", "k", "new", "PXAT", "1") == b"+OK\r\n"
    assert c("EXISTS", "k") == b":0\r\n"
    assert c("SET", "k", "new", "NX", "EXAT", "1") == b"+OK\r\n"
    assert c("EXISTS", "k") == b":0\r\n"
    assert c("SET", "k", "new", "EXAT", "0") == b"-ERR invalid expire time in 'set' command\r\n"
    assert c("SET", "k", "new", "EXAT", str(2**40)) == b"+OK\r\n"
    assert c("EXISTS", "k") == b":1\r\n"


@pytest.mark.parametrize(("cursor", "valid"), [
    (b"0", True), (b"00", True), (b"", True), (b"+5", True), (b"-1", True),
    (str(2**64 - 1).encode(), True), (str(2**64).encode(), False), (b" 5", False),
    (b"5x", False), (b"0x10", False),
])
def test_scan_cursor_is_read_like_strtoull(c: Client, cursor: bytes, valid: bool) -> None:
    reply = c("SCAN", cursor)
    assert reply.startswith(b"*2\r\n") if valid else reply == b"-ERR invalid cursor\r\n"


def test_transaction_size_is_bounded(clock: FakeClock) -> None:
    service = RespService(MemoryStore(clock=clock), ServerStats(), max_bulk=1024,
                          owns_store=True)
    try:
        client = Client(service)
        limit = client.session._parser.max_query
        client("MULTI")
        reply = b"+QUEUED\r\n"
        for _ in range(limit // 1000 + 10):
            reply = client("SET", "k", b"x" * 1000)
            if reply != b"+QUEUED\r\n":
                break
        assert reply == b"-ERR Transaction discarded: queued commands exceed %d bytes\r\n" % limit
        assert client("EXEC") == b"-EXECABORT Transaction discarded because of previous errors.\r\n"
        assert client("EXISTS", "k") == b":0\r\n"
    finally:
        service.close()


def test_read_modify_write_strings(c: Client, c3: Client) -> None:
    assert c("SET", "s", "hello") == b"+OK\r\n"
    assert c("GETSET", "s", "world") == b"$5\r\nhello\r\n"
    assert c3("GETSET", "nope", "x") == b"_\r\n"
    assert c("APPEND", "s", "!") == b":6\r\n"
    assert c("STRLEN", "s") == b":6\r\n"
    assert c("GETRANGE", "s", "-3", "-1") == b"$3\r\nld!\r\n"
    assert c("SETRANGE", "s", "8", "x") == b":9\r\n"
    assert c("GET", "s") == b"$9\r\nworld!\x00\x00x\r\n"
    assert c("GETDEL", "s") == b"$9\r\nworld!\x00\x00x\r\n"
    assert c("GETDEL", "s") == b"$-1\r\n"
    assert c("INCRBYFLOAT", "f", "10.5") == b"$4\r\n10.5\r\n"
    assert c("INCRBYFLOAT", "f", "0.1") == b"$4\r\n10.6\r\n"
    assert c("INCRBYFLOAT", "f", "1e3") == b"$22\r\n1010.59999999999999998\r\n"  # as Redis
    assert c("INCRBYFLOAT", "f", "x") == b"-ERR value is not a valid float\r\n"
    assert c("INCRBYFLOAT", "f", "inf") == b"-ERR increment would produce NaN or Infinity\r\n"
    assert c("MSETNX", "a", "1", "b", "2") == b":1\r\n"
    assert c("MSETNX", "b", "3", "c", "4") == b":0\r\n"
    assert c("RENAME", "a", "z") == b"+OK\r\n"
    assert c("RENAME", "a", "z") == b"-ERR no such key\r\n"
    assert c("RENAMENX", "z", "b") == b":0\r\n"
    assert c("SET", "t", "v", "EX", "100") == b"+OK\r\n"
    assert c("RENAME", "t", "t2") == b"+OK\r\n"
    assert c("TTL", "t2") == b":100\r\n"
    assert c("GETEX", "t2", "PERSIST") == b"$1\r\nv\r\n"
    assert c("TTL", "t2") == b":-1\r\n"
    assert c("GETEX", "t2", "PX", "1500") == b"$1\r\nv\r\n"
    assert c("PTTL", "t2") == b":1500\r\n"
    assert c("EXPIREAT", "t2", "1") == b":1\r\n"
    assert c("EXISTS", "t2") == b":0\r\n"


def test_read_modify_write_inside_multi(c: Client) -> None:
    c("MULTI")
    c("APPEND", "k", "ab")
    c("APPEND", "k", "cd")
    c("INCRBYFLOAT", "n", "1.5")
    assert c("EXEC") == b"*3\r\n:2\r\n:4\r\n$3\r\n1.5\r\n"
    assert c("GET", "k") == b"$4\r\nabcd\r\n"


def test_a_command_that_raises_costs_one_reply_not_the_connection(
        c: Client, caplog: pytest.LogCaptureFixture) -> None:
    """A handler's unexpected exception (a bug) answers an error, logs the
    traceback once, and the pipeline and connection go on."""
    def boom(ctx: object, argv: list[bytes]) -> bytes:
        raise RuntimeError("a bug")
    commands = dict(c.session._commands)
    commands[b"echo"] = dataclasses.replace(commands[b"echo"], handler=boom)
    c.session._commands = commands
    pipeline = encode_command([b"ECHO", b"x"]) + encode_command([b"PING"])
    with caplog.at_level(logging.ERROR, logger="sockworks.services.resp"):
        out = c.send(pipeline)
    assert out.data == b"-ERR internal error running 'echo' (logged by the server)\r\n+PONG\r\n"
    assert not out.close
    assert "RuntimeError: a bug" in caplog.text and "command 'echo' failed" in caplog.text
    assert c("SET", "k", "v") == b"+OK\r\n"
