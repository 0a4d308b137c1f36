"""Blocking pops on real servers: every model, redis-py, the log, shutdown, limits.

What each reply must be is checked against redis-server in
test_blocking_differential.py; here the concern is the machinery: a wait
ends by a push (from a connection served by another thread), by its
timeout and by SIGTERM under every shared-memory model; the forking models
(which need the Redis backend) refuse blocking commands clearly; a wake-up
is logged as the plain pop it amounts to; a client that floods requests
while it waits is closed at the query limit.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sockworks.core.stats import ServerStats
from sockworks.models import FORKING_MODELS
from sockworks.protocols.resp import encode_command
from sockworks.server import Server
from sockworks.services.kv import KvService
from sockworks.services.resp import RespService
from sockworks.services.resp_blocking import registry_for
from sockworks.storage.memory import MemoryStore
from tests.conftest import ServerProcess
from tests.redis_support import RedisServer, redis_server_fixture  # noqa: F401 (fixture)
from tests.support import SHARED_MEMORY_MODELS, StartServer, recv_all

redis = pytest.importorskip("redis")
import redis.asyncio as aioredis  # noqa: E402 (after the importorskip above)

pytestmark = pytest.mark.timeout(60)


def start_kv(start_server: StartServer, model: str, *extra: str) -> ServerProcess:
    args = ["serve", "kv", "--resp-port", "0", "--model", model, *extra]
    if model == "prefork":
        args += ["--workers", "2"]
    return start_server(*args, process=True, expect_listeners=2)


def blocked_clients(client: Any) -> int:
    return int(client.info("clients")["blocked_clients"])


def wait_blocked(client: Any, count: int) -> None:
    wait_until(lambda: blocked_clients(client) == count, f"{count} blocked client(s)")


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"


@pytest.mark.parametrize("model", SHARED_MEMORY_MODELS)
def test_a_wait_ends_by_a_push_and_by_its_timeout_under_every_model(
        start_server: StartServer, model: str) -> None:
    server = start_kv(start_server, model)
    port = server.addresses[1][1]
    waiter = redis.Redis(port=port, socket_timeout=20)
    pusher = redis.Redis(port=port, socket_timeout=20)
    try:
        started = time.monotonic()
        assert waiter.blpop(["nothing"], timeout=0.2) is None
        assert time.monotonic() - started >= 0.2
        result: list[Any] = []
        thread = threading.Thread(target=lambda: result.append(
            waiter.brpop(["k1", "k2"], timeout=0)))
        thread.start()
        wait_until(lambda: blocked_clients(pusher) == 1, "the client is blocked")
        assert pusher.lpush("k2", "a", "b") == 2
        thread.join(20)
        assert result == [(b"k2", b"a")]
        assert pusher.lrange("k2", 0, -1) == [b"b"]
        assert blocked_clients(pusher) == 0
    finally:
        waiter.close()
        pusher.close()


@pytest.mark.parametrize("model", SHARED_MEMORY_MODELS)
def test_sigterm_answers_blocked_clients_with_a_null_and_exits(
        start_server: StartServer, model: str) -> None:
    server = start_kv(start_server, model, "--grace", "60")
    port = server.addresses[1][1]
    admin = redis.Redis(port=port, socket_timeout=20)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(encode_command([b"BLPOP", b"k", b"0"]))
        wait_until(lambda: blocked_clients(admin) == 1, "the client is blocked")
        admin.close()
        server.signal(signal.SIGTERM)
        assert recv_all(sock) == b"*-1\r\n"
    assert server.wait(timeout=30) == 0  # without waiting for the 60 s grace


@pytest.mark.redis
@pytest.mark.parametrize("model", FORKING_MODELS)
def test_forking_models_on_the_redis_backend_wait_in_redis(
        start_server: StartServer, redis_server: RedisServer, model: str) -> None:
    # The waits happen in Redis (more in test_redis_passthrough.py), so the
    # forking models, which cannot run the embedded store, serve them too.
    server = start_kv(start_server, model, "--store", redis_server.url)
    client = redis.Redis(port=server.addresses[1][1], socket_timeout=20)
    try:
        client.rpush("k", "x")
        assert client.blpop(["empty"], timeout=0.05) is None
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            client.bzpopmin(["k"], timeout=0)
        # In a transaction nothing blocks, in Redis too: passed through.
        with client.pipeline(transaction=True) as pipe:
            pipe.blpop(["k"], timeout=0).blpop(["k"], timeout=0)
            assert pipe.execute() == [(b"k", b"x"), None]
    finally:
        client.close()


def test_redis_py_blpop_brpop_with_timeouts_sync_and_asyncio_resp2_and_resp3() -> None:
    with Server(KvService(), model="asyncio", port=0, resp_port=0) as server:
        host, port = server.addresses[1]
        for protocol in (2, 3):
            client = redis.Redis(host=host, port=port, protocol=protocol, socket_timeout=20)
            try:
                client.delete("q")
                assert client.blpop(["q"], timeout=0.05) is None
                assert client.brpop(["q"], timeout=0.05) is None
                client.rpush("q", "1", "2", "3")
                assert tuple(client.blpop(["q"], timeout=1)) == (b"q", b"1")
                assert tuple(client.brpop(["q"], timeout=0.05)) == (b"q", b"3")
            finally:
                client.close()

        async def scenario() -> list[Any]:
            waiter = aioredis.Redis(host=host, port=port, protocol=3)
            pusher = aioredis.Redis(host=host, port=port)
            try:
                timed_out = await waiter.blpop(["aq"], timeout=0.05)
                pending = asyncio.ensure_future(waiter.blpop(["aq"], timeout=10))
                while int((await pusher.info("clients"))["blocked_clients"]) == 0:
                    await asyncio.sleep(0)
                await pusher.rpush("aq", "v")
                return [timed_out, await asyncio.wait_for(pending, 20)]
            finally:
                await waiter.aclose()
                await pusher.aclose()

        timed_out, woken = asyncio.run(scenario())
        assert timed_out is None
        assert list(woken) == [b"aq", b"v"]


def test_a_wake_up_is_logged_as_the_plain_pop_and_replays(tmp_path: Path) -> None:
    with Server(KvService(data_dir=str(tmp_path), fsync="always"), model="thread",
                port=0, resp_port=0) as server:
        host, port = server.addresses[1]
        waiters = [redis.Redis(host=host, port=port, socket_timeout=20) for _ in range(3)]
        pusher = redis.Redis(host=host, port=port, socket_timeout=20)
        results: dict[str, Any] = {}
        calls: list[tuple[str, Callable[[Any], Any]]] = [
            ("blmove", lambda c: c.blmove("src", "dst", 0, "RIGHT", "LEFT")),
            ("bzpopmax", lambda c: c.bzpopmax(["z"], 0)),
            ("blmpop", lambda c: c.blmpop(0, 1, "m", direction="LEFT", count=2)),
        ]
        threads = []

        def run(name: str, call: Callable[[Any], Any], client: Any) -> None:
            results[name] = call(client)

        for n, ((name, call), client) in enumerate(zip(calls, waiters)):
            thread = threading.Thread(target=run, args=(name, call, client))
            thread.start()
            threads.append(thread)
            wait_blocked(pusher, n + 1)
        pusher.rpush("src", "a", "b")
        pusher.zadd("z", {"low": 1, "high": 2})
        pusher.rpush("m", "1", "2", "3")
        for thread in threads:
            thread.join(20)
        for client in (*waiters, pusher):
            client.close()
    assert results["blmove"] == b"b"
    assert tuple(results["bzpopmax"]) == (b"z", b"high", 2.0)
    assert list(results["blmpop"]) == [b"m", [b"1", b"2"]]
    log = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for blocking in (b"BLMOVE", b"BZPOPMAX", b"BLMPOP"):
        assert blocking not in log.upper()
    # Replay: the data as the clients left it.
    with Server(KvService(data_dir=str(tmp_path), fsync="always"), model="thread",
                port=0, resp_port=0) as server:
        host, port = server.addresses[1]
        client = redis.Redis(host=host, port=port, socket_timeout=20)
        try:
            assert client.lrange("src", 0, -1) == [b"a"]
            assert client.lrange("dst", 0, -1) == [b"b"]
            assert client.zrange("z", 0, -1) == [b"low"]
            assert client.lrange("m", 0, -1) == [b"3"]
        finally:
            client.close()


def test_requests_flooded_while_blocked_close_the_client_at_the_query_limit(
        start_server: StartServer) -> None:
    server = start_kv(start_server, "thread", "--max-bulk", "1024")
    port = server.addresses[1][1]
    admin = redis.Redis(port=port, socket_timeout=20)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(encode_command([b"BLPOP", b"k", b"0"]))
            wait_until(lambda: blocked_clients(admin) == 1, "the client is blocked")
            echo = encode_command([b"ECHO", b"x" * 1000])
            try:
                for _ in range(300):  # 300,000 bytes held, past the 263,168-byte limit
                    sock.sendall(echo)
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed while we were still sending: the outcome under test
            try:
                assert recv_all(sock) == b""  # closed without running any of it
            except ConnectionResetError:
                pass
        server.wait_for_log(b"over the query buffer limit")
        assert blocked_clients(admin) == 0
        assert admin.ping()
    finally:
        admin.close()


def test_waits_with_long_timeouts_served_over_and_over_keep_the_heap_bounded() -> None:
    """A client that waits with a day-long timeout and is served at once,
    ten thousand times, leaves stale heap entries: they are dropped."""
    store = MemoryStore()
    service = RespService(store, ServerStats(), owns_store=True)
    waiter, pusher = service.new_session("127.0.0.1:1"), service.new_session("127.0.0.1:2")
    registry = registry_for(store)
    assert registry is not None
    try:
        for _ in range(10_000):
            assert waiter.on_data(encode_command([b"BLPOP", b"k", b"86400"])).data == b""
            assert waiter.expects_deliveries
            pusher.on_data(encode_command([b"RPUSH", b"k", b"v"]))
            assert not waiter.expects_deliveries
        assert registry.blocked == 0
        assert registry.scheduled <= 3 * 1024
    finally:
        waiter.on_close()
        pusher.on_close()
        service.close()


def test_blocked_clients_count_against_max_connections(start_server: StartServer) -> None:
    server = start_kv(start_server, "thread", "--max-connections", "2")
    port = server.addresses[1][1]
    admin = redis.Redis(port=port, socket_timeout=20)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(encode_command([b"BLPOP", b"k", b"0"]))
            wait_blocked(admin, 1)
            # The two slots are the waiter's and admin's: a third is refused.
            with socket.create_connection(("127.0.0.1", port), timeout=30) as third:
                assert recv_all(third).startswith(b"-ERR max number of clients reached")
    finally:
        admin.close()


def test_a_wait_served_during_a_call_keeps_the_calls_failed_batch_replies() -> None:
    """A wait served while the same session's call ran (a thread model's
    pusher, concurrently) follows the call's replies; if the call's log
    batch fails, its writes' errors still come first, then the wait's
    reply (never a close that drops the served pop's reply)."""
    from sockworks.core.service import Output

    session = KvService(MemoryStore()).resp_service().new_session("127.0.0.1:1")
    session._stash = b"*2\r\n$1\r\nl\r\n$1\r\nx\r\n"
    out = session._end_call(Output(b"+OK\r\n", False, None, lambda error: b"-ERR " +
                                   error.encode() + b"\r\n"))
    assert out.data == b"+OK\r\n*2\r\n$1\r\nl\r\n$1\r\nx\r\n"
    assert out.failed is not None
    assert out.failed("disk full") == b"-ERR disk full\r\n*2\r\n$1\r\nl\r\n$1\r\nx\r\n"
