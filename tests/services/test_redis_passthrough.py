"""Pub/sub, WATCH/MULTI/EXEC and scripting passed through to ``--store redis://``
(issue 13 on the Redis backend).

Real processes: a redis-server (and a 3-master cluster) from
tests/redis_support.py, ``sockworks serve kv --store ... --resp-port 0`` in a
child process, redis-py clients on both. Checked: clients of sockworks and
clients of the backend see each other's messages, in order with replies, in
RESP2 and RESP3; a slow subscriber is cut off at its output limit; losing the
backend disconnects subscribers; redis-py's ``transaction()`` under
contention loses no update and a backend client's write aborts EXEC; the
pinned-connection bound; redis-py's ``Lock``; scripting replies and errors
compared with talking to the backend directly.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sockworks.storage.redis_pinned import PING_AFTER
from tests.conftest import ServerProcess, spawn_server
from tests.redis_support import (  # noqa: F401  (the *_fixture functions are fixtures)
    RedisCluster,
    RedisServer,
    redis_cluster_fixture,
    redis_server_fixture,
)
from tests.support import SHARED_MEMORY_MODELS, recv_until

redis = pytest.importorskip("redis")

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

#: Bounded waits for pushed messages (seconds).
DEADLINE = 10.0


def start(url: str, *extra: str, model: str = "thread") -> ServerProcess:
    return spawn_server("serve", "kv", "--port", "0", "--resp-port", "0", "--store", url,
                        "--model", model, *extra, expect_listeners=2)


@pytest.fixture
def sockworks(redis_server: RedisServer) -> Iterator[ServerProcess]:
    proc = start(redis_server.url)
    yield proc
    proc.stop()


def ours(server: ServerProcess, protocol: int = 2, **options: Any) -> Any:
    return redis.Redis(port=server.addresses[1][1], protocol=protocol, socket_timeout=10,
                       **options)


def backend(server: RedisServer, protocol: int = 2) -> Any:
    return redis.Redis(port=server.port, protocol=protocol, socket_timeout=10)


def next_message(pubsub: Any, deadline: float = DEADLINE) -> Any:
    """The next message (not a confirmation), waiting at most ``deadline``."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            return message
    raise AssertionError("no message within the deadline")


def wait_for(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- pub/sub ------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("model", SHARED_MEMORY_MODELS)
def test_messages_cross_between_sockworks_and_backend_clients(
        redis_server: RedisServer, protocol: int, model: str) -> None:
    sockworks = start(redis_server.url, model=model)
    try:
        _cross(sockworks, redis_server, protocol)
    finally:
        sockworks.stop()


def _cross(sockworks: ServerProcess, redis_server: RedisServer, protocol: int) -> None:
    client, direct = ours(sockworks, protocol), backend(redis_server, protocol)
    sub = client.pubsub()
    sub.subscribe("news")
    sub.psubscribe("n*")
    # The confirmations come from sockworks only after Redis has them, so a
    # message published right after the reply is received.
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    assert sub.get_message(timeout=5)["type"] == "psubscribe"
    # Redis counts each sockworks subscriber as one of its own.
    assert direct.execute_command("PUBSUB", "NUMSUB", "news") == [b"news", 1]
    assert client.execute_command("PUBSUB", "NUMSUB", "news") == [b"news", 1]
    assert client.execute_command("PUBSUB", "NUMPAT") == 1
    assert direct.publish("news", "from-redis") == 2    # channel + pattern
    assert next_message(sub)["data"] == b"from-redis"
    assert next_message(sub)["type"] == "pmessage"
    # A backend subscriber hears a sockworks PUBLISH.
    theirs = direct.pubsub()
    theirs.subscribe("alerts")
    assert theirs.get_message(timeout=5)["type"] == "subscribe"
    assert client.publish("alerts", "from-sockworks") == 1
    assert next_message(theirs)["data"] == b"from-sockworks"
    sub.unsubscribe("news")
    sub.punsubscribe("n*")
    # Once sockworks confirms, Redis has dropped the subscriptions too.
    seen = set()
    for _ in range(100):
        message = sub.get_message(timeout=0.1)
        if message is not None:
            seen.add(message["type"])
        if seen >= {"unsubscribe", "punsubscribe"}:
            break
    assert seen >= {"unsubscribe", "punsubscribe"}, seen
    assert client.execute_command("PUBSUB", "NUMSUB", "news") == [b"news", 0]
    assert direct.execute_command("PUBSUB", "NUMPAT") == 0
    sub.close()
    theirs.close()


def test_redis_py_pubsub_run_in_thread_and_asyncio(sockworks: ServerProcess,
                                                   redis_server: RedisServer) -> None:
    import asyncio

    import redis.asyncio as aioredis

    direct = backend(redis_server)
    got: list[bytes] = []
    done = threading.Event()

    def handler(message: dict[str, Any]) -> None:
        got.append(message["data"])
        if len(got) == 3:
            done.set()
    sub = ours(sockworks, 3).pubsub()
    sub.subscribe(jobs=handler)
    worker = sub.run_in_thread(sleep_time=0.05, daemon=True)
    try:
        wait_for(lambda: direct.execute_command("PUBSUB", "NUMSUB", "jobs") == [b"jobs", 1],
                 "the subscription to reach Redis")
        for i in range(3):
            direct.publish("jobs", f"j{i}")
        assert done.wait(DEADLINE)
        assert got == [b"j0", b"j1", b"j2"]
    finally:
        worker.stop()
        worker.join(DEADLINE)

    async def listen() -> list[bytes]:
        client = aioredis.Redis(port=sockworks.addresses[1][1], protocol=2)
        pubsub = client.pubsub()
        out = []
        try:
            await pubsub.subscribe("aio")
            # subscribe() does not wait for the confirmation: publish after it.
            confirmed = await pubsub.get_message(timeout=DEADLINE)
            assert confirmed is not None and confirmed["type"] == "subscribe"
            await client.publish("aio", "a1")
            async for message in pubsub.listen():
                if message["type"] == "message":
                    out.append(message["data"])
                    break
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
            await client.aclose()
        return out
    assert asyncio.run(asyncio.wait_for(listen(), DEADLINE)) == [b"a1"]


def test_messages_arrive_in_order_between_replies(sockworks: ServerProcess,
                                                  redis_server: RedisServer) -> None:
    # RESP3: a subscribed client may run commands; pushes and replies share
    # one ordered stream.
    raw = socket.create_connection(sockworks.addresses[1], timeout=10)
    direct = backend(redis_server)
    buf = bytearray()

    def read_until(marker: bytes) -> bytes:
        end = time.monotonic() + DEADLINE
        while marker not in buf:
            assert time.monotonic() < end, bytes(buf)
            chunk = raw.recv(65536)
            assert chunk, bytes(buf)
            buf.extend(chunk)
        index = buf.index(marker) + len(marker)
        out = bytes(buf[:index])
        del buf[:index]
        return out

    raw.sendall(b"HELLO 3\r\n")
    read_until(b"modules\r\n*0\r\n")
    raw.sendall(b"SUBSCRIBE c\r\n")
    assert read_until(b":1\r\n") == b">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"
    for i in range(50):
        direct.publish("c", f"p{i}")
    raw.sendall(b"SET k v\r\nGET k\r\n")
    got = read_until(b"$1\r\nv\r\n")
    messages = [int(part[1:]) for part in got.split(b"\r\n") if part.startswith(b"p")]
    assert messages == list(range(len(messages)))   # in publication order
    rest = b""
    if len(messages) < 50:
        rest = read_until(b"p49\r\n")
    tail = [int(part[1:]) for part in rest.split(b"\r\n") if part.startswith(b"p")]
    assert messages + tail == list(range(50))
    assert b"+OK\r\n" in got
    raw.close()


def test_slow_subscriber_is_disconnected_at_the_pubsub_limit(redis_server: RedisServer) -> None:
    proc = start(redis_server.url, "--client-output-buffer-limit", "pubsub 64kb 32kb 60")
    try:
        slow = socket.create_connection(proc.addresses[1], timeout=10)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.sendall(b"SUBSCRIBE flood\r\n")
        reply = b""
        while b":1\r\n" not in reply:
            reply += slow.recv(4096)
        direct = backend(redis_server)
        payload = b"x" * 65536
        # Never read: past the hard limit sockworks resets the subscriber
        # and its backend connection goes away (the count falls to 0).
        for _ in range(400):
            direct.publish("flood", payload)
            if direct.execute_command("PUBSUB", "NUMSUB", "flood") == [b"flood", 0]:
                break
        wait_for(lambda: direct.execute_command("PUBSUB", "NUMSUB", "flood")
                 == [b"flood", 0], "the slow subscriber's backend connection to close")
        proc.wait_for_log(b"client-output-buffer-limit", timeout=10)
        info = ours(proc).info("clients")
        assert info["connected_clients"] <= 1   # only the INFO client itself
        slow.close()
    finally:
        proc.stop()


def test_losing_the_backend_disconnects_subscribers(redis_server: RedisServer) -> None:
    proc = start(redis_server.url)
    try:
        raw = socket.create_connection(proc.addresses[1], timeout=10)
        raw.sendall(b"SUBSCRIBE c\r\n")
        reply = recv_until(raw, b":1\r\n")
        assert b":1\r\n" in reply, reply  # subscribed, not closed
        redis_server.kill()
        proc.wait_for_log(b"closing subscriber", timeout=10)
        # Disconnected, not left subscribed to nothing: EOF (or a reset).
        try:
            assert raw.recv(4096) == b""
        except ConnectionResetError:
            pass
        raw.close()
    finally:
        proc.stop()


def test_a_frozen_backend_disconnects_subscribers(redis_server: RedisServer) -> None:
    # SIGSTOP: the socket stays open and silent, as in a network partition.
    # The subscriber connection's PING goes unanswered and the client is
    # disconnected instead of waiting forever for messages.
    import signal

    proc = start(redis_server.url)
    try:
        raw = socket.create_connection(proc.addresses[1], timeout=30)
        raw.sendall(b"SUBSCRIBE c\r\n")
        reply = recv_until(raw, b":1\r\n")
        assert b":1\r\n" in reply, reply  # subscribed, not closed
        redis_server.signal(signal.SIGSTOP)
        try:
            proc.wait_for_log(b"no answer to PING", timeout=PING_AFTER + 15)
            try:
                assert raw.recv(4096) == b""
            except ConnectionResetError:
                pass
        finally:
            redis_server.signal(signal.SIGCONT)
        raw.close()
    finally:
        proc.stop()


def test_pinned_connections_are_bounded(redis_server: RedisServer) -> None:
    proc = start(redis_server.url, "--store-pinned-connections", "2")
    try:
        subs = []
        for i in range(2):
            sub = ours(proc).pubsub()
            sub.subscribe(f"c{i}")
            assert sub.get_message(timeout=5)["type"] == "subscribe"
            subs.append(sub)
        third = ours(proc)
        with pytest.raises(redis.ResponseError, match="max number of dedicated Redis"):
            third.execute_command("WATCH", "k")
        with pytest.raises(redis.ResponseError, match="max number of dedicated Redis"):
            third.execute_command("SUBSCRIBE", "c9")
        subs[0].unsubscribe("c0")
        wait_for(lambda: subs[0].get_message(timeout=0.1) is None, "the unsubscribe")
        # Released: a WATCH now gets a connection.
        assert third.execute_command("WATCH", "k") is True
        third.execute_command("UNWATCH")
        for sub in subs:
            sub.close()
    finally:
        proc.stop()


# -- WATCH / MULTI / EXEC ---------------------------------------------------------------

def test_a_backend_client_touching_a_watched_key_aborts_exec(
        sockworks: ServerProcess, redis_server: RedisServer) -> None:
    client, direct = ours(sockworks), backend(redis_server)
    client.set("k", "1")
    pipe = client.pipeline()
    pipe.watch("k")
    assert pipe.get("k") == b"1"
    direct.set("k", "2")         # another client of the backend Redis
    pipe.multi()
    pipe.set("k", "3")
    with pytest.raises(redis.WatchError):
        pipe.execute()
    assert client.get("k") == b"2"
    # Not touched: EXEC runs.
    pipe = client.pipeline()
    pipe.watch("k")
    pipe.multi()
    pipe.incr("n")
    assert pipe.execute() == [1]


def test_exec_replies_null_and_unwatch_releases(sockworks: ServerProcess,
                                                 redis_server: RedisServer) -> None:
    raw = socket.create_connection(sockworks.addresses[1], timeout=10)
    direct = backend(redis_server)

    def ask(command: bytes) -> bytes:
        raw.sendall(command)
        return raw.recv(65536)

    assert ask(b"WATCH a\r\n") == b"+OK\r\n"
    direct.set("a", "x")
    assert ask(b"MULTI\r\n") == b"+OK\r\n"
    assert ask(b"SET a y\r\n") == b"+QUEUED\r\n"
    assert ask(b"EXEC\r\n") == b"*-1\r\n"
    assert direct.get("a") == b"x"
    assert ask(b"WATCH a\r\n") == b"+OK\r\n"
    assert ask(b"UNWATCH\r\n") == b"+OK\r\n"
    direct.set("a", "z")
    assert ask(b"MULTI\r\nSET a w\r\nEXEC\r\n").endswith(b"*1\r\n+OK\r\n")
    raw.close()


@pytest.mark.parametrize("model", ["thread", "asyncio"])
def test_transaction_under_contention_loses_no_update(redis_server: RedisServer,
                                                       model: str) -> None:
    proc = start(redis_server.url, model=model)
    try:
        threads, per_thread = 6, 40
        errors: list[BaseException] = []

        def work() -> None:
            try:
                client = ours(proc)

                def bump(pipe: Any) -> None:
                    value = int(pipe.get("counter") or 0)
                    pipe.multi()
                    pipe.set("counter", value + 1)
                for _ in range(per_thread):
                    client.transaction(bump, "counter")
            except BaseException as exc:  # reported below
                errors.append(exc)
        workers = [threading.Thread(target=work) for _ in range(threads)]
        # Half the contention comes from clients of the backend itself.
        direct = backend(redis_server)

        def direct_work() -> None:
            try:
                def bump(pipe: Any) -> None:
                    value = int(pipe.get("counter") or 0)
                    pipe.multi()
                    pipe.set("counter", value + 1)
                for _ in range(per_thread):
                    direct.transaction(bump, "counter")
            except BaseException as exc:
                errors.append(exc)
        workers.append(threading.Thread(target=direct_work))
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert not errors, errors
        assert int(direct.get("counter")) == (threads + 1) * per_thread
    finally:
        proc.stop()


def test_watch_on_cluster_needs_one_slot(redis_cluster: RedisCluster) -> None:
    proc = start(redis_cluster.url)
    try:
        client = ours(proc)
        raw = socket.create_connection(proc.addresses[1], timeout=10)

        def ask(command: bytes) -> bytes:
            raw.sendall(command)
            return raw.recv(65536)
        assert ask(b"WATCH a b\r\n") == (b"-CROSSSLOT Keys in request don't hash to the same "
                                         b"slot\r\n")
        assert ask(b"WATCH {u}a\r\n") == b"+OK\r\n"
        assert ask(b"MULTI\r\nSET {u}b 1\r\nSET other 2\r\nEXEC\r\n").endswith(
            b"-CROSSSLOT Keys in request don't hash to the same slot\r\n")
        assert ask(b"WATCH {u}a\r\n") == b"+OK\r\n"
        client.set("{u}a", "changed")
        assert ask(b"MULTI\r\nSET {u}b 1\r\nEXEC\r\n") == b"+OK\r\n+QUEUED\r\n*-1\r\n"
        assert ask(b"WATCH {u}a\r\n") == b"+OK\r\n"
        assert ask(b"MULTI\r\nSET {u}b 2\r\nGET {u}b\r\nEXEC\r\n") == (
            b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n$1\r\n2\r\n")
        raw.close()
    finally:
        proc.stop()


# -- scripting ----------------------------------------------------------------------------

SCRIPTS: list[list[bytes]] = [
    [b"EVAL", b"return {1, 'two', {3}}", b"0"],
    [b"EVAL", b"return redis.call('INCRBY', KEYS[1], ARGV[1])", b"1", b"n", b"5"],
    [b"EVAL", b"return redis.call('GET', KEYS[1])", b"1", b"n"],
    [b"EVAL", b"return redis.error_reply('MY bad')", b"0"],
    [b"EVAL", b"return redis.call('SET', KEYS[1], 'v')", b"1", b"k"],     # a status
    [b"EVAL", b"return {redis.status_reply('FINE'), 1.5, false, true}", b"0"],
    [b"EVAL", b"return redis.pcall('INCR', KEYS[1])", b"1", b"k"],        # an error
    [b"EVAL", b"return redis.call('nosuch')", b"0"],
    [b"EVAL", b"syntax error here", b"0"],
    [b"EVAL_RO", b"return redis.call('SET', KEYS[1], 'x')", b"1", b"k"],
    [b"EVALSHA", b"ffffffffffffffffffffffffffffffffffffffff", b"0"],
    [b"SCRIPT", b"LOAD", b"return 42"],
    [b"SCRIPT", b"EXISTS", b"1fa00e76656cc152ad327c13fe365858fd7be306", b"ffff"],
    [b"EVALSHA", b"1fa00e76656cc152ad327c13fe365858fd7be306", b"0"],
    [b"SCRIPT", b"KILL"],
    [b"SCRIPT", b"FLUSH"],
    [b"EVALSHA", b"1fa00e76656cc152ad327c13fe365858fd7be306", b"0"],
    [b"EVAL", b"return 1", b"notanumber"],
    [b"FUNCTION", b"LOAD", b"#!lua name=lib\nredis.register_function('f', "
     b"function(keys, args) return #keys end)"],
    [b"FCALL", b"f", b"2", b"a", b"b"],
    [b"FCALL_RO", b"f", b"0"],
    [b"FCALL", b"nosuch", b"0"],
    [b"FUNCTION", b"DELETE", b"lib"],
    [b"FUNCTION", b"FLUSH"],
]


def _exchange(sock: socket.socket, argv: list[bytes]) -> bytes:
    from sockworks.protocols.resp import encode_command

    hiredis = pytest.importorskip("hiredis")
    sock.sendall(encode_command(argv))
    reader = hiredis.Reader()
    raw = b""
    for _ in range(1000):
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        raw += chunk
        reader.feed(chunk)
        if reader.gets() is not False:
            return raw
    raise AssertionError("no complete reply")


@pytest.mark.parametrize("protocol", [2, 3])
def test_scripting_replies_are_the_backends(redis_server: RedisServer, protocol: int) -> None:
    proc = start(redis_server.url)
    try:
        mine = socket.create_connection(proc.addresses[1], timeout=10)
        theirs = socket.create_connection(redis_server.address, timeout=10)
        if protocol == 3:
            _exchange(mine, [b"HELLO", b"3"])
            _exchange(theirs, [b"HELLO", b"3"])
        for argv in SCRIPTS:
            # The same command twice on the same Redis: first through
            # sockworks, then directly (each reply on the state it found).
            got = _exchange(mine, argv)
            if argv[:2] in ([b"FUNCTION", b"LOAD"], [b"FUNCTION", b"DELETE"]):
                # Loading/deleting twice would fail the second time: undo.
                expected = got
            elif argv[0] == b"EVAL" and b"INCRBY" in argv[1]:
                expected = _exchange(theirs, [b"EVAL", argv[1], b"1", b"n", b"0"])
                assert got == b":5\r\n" and expected == b":5\r\n"
                continue
            else:
                expected = _exchange(theirs, argv)
            assert got == expected, (argv, got, expected)
        mine.close()
        theirs.close()
    finally:
        proc.stop()


def test_redis_py_lock(sockworks: ServerProcess, redis_server: RedisServer) -> None:
    client, direct = ours(sockworks), backend(redis_server)
    lock = client.lock("resource", timeout=5)
    assert lock.acquire(blocking=False)
    assert direct.get("resource") == lock.local.token   # held in the backend
    assert lock.extend(10)
    assert 5000 < direct.pttl("resource") <= 15000
    # Another holder waits, then gives up at its blocking timeout.
    other = client.lock("resource", timeout=5, thread_local=False)
    assert not other.acquire(blocking=True, blocking_timeout=0.3)
    assert direct.get("resource") == lock.local.token
    # A blocking acquire gets the lock once its holder releases it.
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(
        other.acquire(blocking=True, blocking_timeout=10)))
    waiter.start()
    lock.release()
    waiter.join(15)
    assert got == [True]
    assert direct.get("resource") == other.local.token
    # A holder whose token is not the stored one: the release script refuses.
    stale = client.lock("resource", thread_local=False)
    stale.local.token = b"not-the-token"
    with pytest.raises(redis.exceptions.LockNotOwnedError):
        stale.release()
    other.release()
    assert direct.get("resource") is None


def test_scripts_pubsub_and_blocking_on_cluster(redis_cluster: RedisCluster) -> None:
    proc = start(redis_cluster.url)
    try:
        client = ours(proc)
        sha = client.script_load("return redis.call('GET', KEYS[1])")
        for key in ("a", "b", "c", "{x}1"):
            client.set(key, key)
            # EVALSHA works on every slot: SCRIPT LOAD went to every primary.
            assert client.evalsha(sha, 1, key) == key.encode()
        assert client.script_exists(sha) == [True]
        with pytest.raises(redis.exceptions.ClusterCrossSlotError):
            client.eval("return 1", 2, "a", "b")
        assert client.eval("return 7", 0) == 7
        lock = client.lock("{x}lock", timeout=5)
        assert lock.acquire(blocking=True, blocking_timeout=2)
        assert lock.extend(5)
        lock.release()
        sub = client.pubsub()
        sub.subscribe("cc")
        assert sub.get_message(timeout=5)["type"] == "subscribe"
        assert client.publish("cc", "hi") >= 1
        assert next_message(sub)["data"] == b"hi"
        sub.ssubscribe("{x}shard")
        assert sub.get_message(timeout=5)["type"] == "ssubscribe"
        assert client.spublish("{x}shard", "s") == 1
        assert next_message(sub)["data"] == b"s"
        sub.close()
        # The data model passed through as it is, alone and in MULTI/EXEC
        # (redis-py 8's cluster client cannot route those by itself).
        assert client.rpush("{p}l", "a", "b") == 2
        pipe = client.pipeline(transaction=True)
        pipe.lrange("{p}l", 0, -1).hset("{p}h", "f", "v").hgetall("{p}h")
        assert pipe.execute() == [[b"a", b"b"], 1, {b"f": b"v"}]
        pipe = client.pipeline(transaction=True)
        pipe.rpush("a", "1").rpush("b", "1")
        with pytest.raises(redis.ResponseError, match="same slot"):
            pipe.execute()
        # Blocking pops wait on their slot's primary.
        assert client.blpop(["{q}a", "{q}b"], timeout=0.05) is None
        client.rpush("{q}b", "v")
        assert tuple(client.blpop(["{q}a", "{q}b"], timeout=1)) == (b"{q}b", b"v")
        with pytest.raises(redis.exceptions.ClusterCrossSlotError):
            client.blpop(["a", "b"], timeout=1)
    finally:
        proc.stop()


# -- blocking commands ------------------------------------------------------------------

class Raw:
    """A raw RESP connection reading whole replies (hiredis)."""

    def __init__(self, address: tuple[str, int]) -> None:
        hiredis = pytest.importorskip("hiredis")
        self.sock = socket.create_connection(address, timeout=15)
        self.reader = hiredis.Reader()
        self.raw = b""

    def send(self, *argv: bytes) -> None:
        from sockworks.protocols.resp import encode_command

        self.sock.sendall(encode_command(list(argv)))

    def reply(self) -> bytes:
        """The next whole reply's bytes."""
        for _ in range(1000):
            if self.reader.gets() is not False:
                break
            chunk = self.sock.recv(65536)
            assert chunk, "connection closed"
            self.reader.feed(chunk)
            self.raw += chunk
        else:
            raise AssertionError("no complete reply")
        # hiredis has consumed exactly one reply: find its end in raw.
        check = pytest.importorskip("hiredis").Reader()
        for end in range(1, len(self.raw) + 1):
            check.feed(self.raw[end - 1:end])
            if check.gets() is not False:
                out, self.raw = self.raw[:end], self.raw[end:]
                return out
        raise AssertionError("unreachable")

    def run(self, *argv: bytes) -> bytes:
        self.send(*argv)
        return self.reply()

    def close(self) -> None:
        self.sock.close()


BLOCKING: list[tuple[list[bytes], list[bytes]]] = [
    # (setup on the backend, blocking command): answered at once.
    ([b"RPUSH", b"bl", b"a", b"b"], [b"BLPOP", b"nothing", b"bl", b"1"]),
    ([b"RPUSH", b"bl", b"c"], [b"BRPOP", b"bl", b"1"]),
    ([b"ZADD", b"bz", b"1.5", b"m", b"2", b"n"], [b"BZPOPMIN", b"bz", b"1"]),
    ([b"ZADD", b"bz", b"3", b"o"], [b"BZMPOP", b"1", b"1", b"bz", b"MAX", b"COUNT", b"5"]),
    ([b"RPUSH", b"bl", b"x", b"y"], [b"BLMPOP", b"1", b"2", b"q", b"bl", b"LEFT"]),
    ([b"RPUSH", b"src", b"s"], [b"BLMOVE", b"src", b"dst", b"LEFT", b"RIGHT", b"1"]),
    ([b"RPUSH", b"src", b"t"], [b"BRPOPLPUSH", b"src", b"dst", b"1"]),
    # Timing out (0.01 s), and errors Redis answers.
    ([b"DEL", b"none"], [b"BLPOP", b"none", b"0.01"]),
    ([b"DEL", b"none"], [b"BLMOVE", b"none", b"dst", b"LEFT", b"LEFT", b"0.01"]),
    ([b"SET", b"str", b"v"], [b"BLPOP", b"str", b"1"]),
]


@pytest.mark.parametrize("protocol", [2, 3])
def test_blocking_commands_answer_as_redis(redis_server: RedisServer, protocol: int) -> None:
    proc = start(redis_server.url)
    mine, theirs = Raw(proc.addresses[1]), Raw(redis_server.address)
    try:
        if protocol == 3:
            mine.run(b"HELLO", b"3")
            theirs.run(b"HELLO", b"3")
        for setup, argv in BLOCKING:
            # The same state for each side: through sockworks, then directly.
            theirs.run(b"FLUSHALL")
            theirs.run(*setup)
            got = mine.run(*argv)
            theirs.run(b"FLUSHALL")
            theirs.run(*setup)
            expected = theirs.run(*argv)
            assert got == expected, (argv, got, expected)
    finally:
        mine.close()
        theirs.close()
        proc.stop()


@pytest.mark.parametrize("model", SHARED_MEMORY_MODELS)
def test_a_blocked_client_is_served_by_a_backend_push(redis_server: RedisServer,
                                                      model: str) -> None:
    proc = start(redis_server.url, "--store-pinned-connections", "1", model=model)
    direct = backend(redis_server)
    waiter, other = Raw(proc.addresses[1]), Raw(proc.addresses[1])
    try:
        waiter_id = int(waiter.run(b"CLIENT", b"ID")[1:-2])
        waiter.send(b"BLPOP", b"jobs", b"0")
        waiter.send(b"PING")        # held until the wait ends, then answered
        wait_for(lambda: direct.info("clients")["blocked_clients"] == 1, "the wait in Redis")
        # The bound: the waiting client holds the only dedicated connection.
        assert other.run(b"BLPOP", b"jobs", b"0").startswith(
            b"-ERR max number of dedicated Redis connections reached")
        direct.rpush("jobs", "j1")
        assert waiter.reply() == b"*2\r\n$4\r\njobs\r\n$2\r\nj1\r\n"
        assert waiter.reply() == b"+PONG\r\n"
        # CLIENT UNBLOCK (Redis's own, on that connection): TIMEOUT, ERROR.
        waiter.send(b"BLPOP", b"jobs", b"0")
        wait_for(lambda: direct.info("clients")["blocked_clients"] == 1, "the wait in Redis")
        assert other.run(b"CLIENT", b"UNBLOCK", b"%d" % waiter_id) == b":1\r\n"
        assert waiter.reply() == b"*-1\r\n"
        waiter.send(b"BLPOP", b"jobs", b"0")
        wait_for(lambda: direct.info("clients")["blocked_clients"] == 1, "the wait in Redis")
        assert other.run(b"CLIENT", b"UNBLOCK", b"%d" % waiter_id, b"ERROR") == b":1\r\n"
        assert waiter.reply() == b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"
        # A client that leaves while waiting takes its wait in Redis with it.
        waiter.send(b"BLPOP", b"jobs", b"0")
        wait_for(lambda: direct.info("clients")["blocked_clients"] == 1, "the wait in Redis")
        waiter.close()
        wait_for(lambda: direct.info("clients")["blocked_clients"] == 0, "the wait to go")
        direct.rpush("jobs", "kept")
        assert direct.lrange("jobs", 0, -1) == [b"kept"]   # nobody popped it
        # Its dedicated connection is free again.
        assert other.run(b"BLPOP", b"jobs", b"1") == b"*2\r\n$4\r\njobs\r\n$4\r\nkept\r\n"
    finally:
        other.close()
        proc.stop()


def test_shutdown_answers_a_client_waiting_in_the_backend(redis_server: RedisServer) -> None:
    import signal

    proc = start(redis_server.url)
    direct = backend(redis_server)
    waiter = Raw(proc.addresses[1])
    try:
        waiter.send(b"BLPOP", b"never", b"0")
        wait_for(lambda: direct.info("clients")["blocked_clients"] == 1, "the wait in Redis")
        proc.signal(signal.SIGTERM)
        assert waiter.reply() == b"*-1\r\n"
        assert proc.wait(30) == 0
        wait_for(lambda: direct.info("clients")["blocked_clients"] == 0, "the wait to go")
    finally:
        waiter.close()
        proc.stop()


def test_config_set_of_memory_and_events_reaches_the_backend(sockworks: ServerProcess,
                                                             redis_server: RedisServer) -> None:
    client, direct = ours(sockworks), backend(redis_server)
    try:
        assert client.config_set("maxmemory", "10mb") is True
        assert direct.config_get("maxmemory") == {"maxmemory": str(10 * 1024 * 1024)}
        assert client.config_get("maxmemory") == {"maxmemory": str(10 * 1024 * 1024)}
        # Redis checks the values (and applies all of one CONFIG SET or none).
        with pytest.raises(redis.ResponseError, match="argument must be a memory value"):
            client.execute_command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru",
                                   "maxmemory", "lots")
        assert direct.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        client.execute_command("CONFIG", "SET", "notify-keyspace-events", "Eg",
                               "maxmemory", "0")
        assert direct.config_get("notify-keyspace-events") == {"notify-keyspace-events": "gE"}
        assert direct.config_get("maxmemory") == {"maxmemory": "0"}
    finally:
        direct.config_set("notify-keyspace-events", "")


def test_exec_says_why_redis_refused_a_queued_command(sockworks: ServerProcess,
                                                      redis_server: RedisServer) -> None:
    # The queue is sockworks' (QUEUED here), so a command Redis refuses to
    # queue (OOM at its maxmemory) aborts EXEC, which says why; nothing ran.
    raw = Raw(sockworks.addresses[1])
    direct = backend(redis_server)
    try:
        direct.config_set("maxmemory", "1")
        assert raw.run(b"MULTI") == b"+OK\r\n"
        assert raw.run(b"SET", b"oom", b"v") == b"+QUEUED\r\n"
        assert raw.run(b"EXEC") == (
            b"-EXECABORT Transaction discarded because of: redis refused the write: OOM "
            b"command not allowed when used memory > 'maxmemory'.\r\n")
        assert direct.get("oom") is None
    finally:
        direct.config_set("maxmemory", "0")
        raw.close()


def test_a_long_script_runs_until_script_kill(sockworks: ServerProcess,
                                              redis_server: RedisServer) -> None:
    # Past the backend's busy-reply-threshold Redis answers others BUSY
    # (passed on as it is); SCRIPT KILL through sockworks stops the script;
    # the script's client waits past the 2 s read timeout of ordinary calls.
    direct = backend(redis_server)
    runner, other = ours(sockworks), ours(sockworks)
    # Set through sockworks: the backend's, where the scripts run.
    assert other.config_set("lua-time-limit", 100) is True
    assert direct.config_get("busy-reply-threshold") == {"busy-reply-threshold": "100"}
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            runner.eval("while true do end", 0)
        except BaseException as exc:  # reported below
            outcome.append(exc)
    thread = threading.Thread(target=run)
    started = time.monotonic()
    thread.start()
    try:
        def busy() -> bool:
            try:
                other.get("x")
            except redis.exceptions.BusyLoadingError:
                return False
            except redis.ResponseError as exc:
                return str(exc).startswith("BUSY Redis is busy running a script")
            return False
        wait_for(busy, "BUSY from the backend")
        # Longer than an ordinary call's read timeout (2 s), still running.
        wait_for(lambda: time.monotonic() - started > 2.5, "2.5 s", deadline=5)
        assert busy()
        assert other.script_kill() is True
        thread.join(DEADLINE)
        assert len(outcome) == 1 and "Script killed by user" in str(outcome[0]), outcome
        assert other.get("x") is None     # Redis serves again
    finally:
        direct.config_set("busy-reply-threshold", 5000)
        thread.join(DEADLINE)


def test_dump_and_restore_are_the_backends(sockworks: ServerProcess,
                                           redis_server: RedisServer) -> None:
    client, direct = ours(sockworks), backend(redis_server)
    direct.rpush("l", "a", "b")
    payload = client.dump("l")
    assert payload == direct.dump("l")  # the backend's own bytes
    assert client.restore("l2", 0, payload) == b"OK"
    assert direct.lrange("l2", 0, -1) == [b"a", b"b"]
    with pytest.raises(redis.ResponseError, match=r"^BUSYKEY"):
        client.restore("l2", 0, payload)
    with pytest.raises(redis.ResponseError, match="DUMP payload version or checksum are wrong"):
        client.restore("l3", 0, b"nope")
