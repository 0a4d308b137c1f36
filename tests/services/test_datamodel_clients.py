"""The data model through real clients on the RESP port of a real server
process: redis-benchmark's default run, redis-py (sync and asyncio, RESP2
and RESP3) over every type with pipelines and MULTI/EXEC, redis-cli
``--scan --type``, and the text port's ``ERROR: wrong type``.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ServerProcess, spawn_server
from tests.support import require_binary

redis = pytest.importorskip("redis")
import redis.asyncio as aioredis  # noqa: E402 (after the importorskip above)

pytestmark = pytest.mark.redis

#: redis-benchmark's default test list (redis-benchmark -q, Redis 7.0).
BENCHMARK_TESTS = ("PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "LPUSH", "RPUSH", "LPOP",
                   "RPOP", "SADD", "HSET", "SPOP", "ZADD", "ZPOPMIN", "LRANGE_100",
                   "LRANGE_300", "LRANGE_500", "LRANGE_600", "MSET")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = spawn_server("serve", "kv", "--resp-port", "0", expect_listeners=2)
    yield proc
    proc.stop()


@pytest.fixture
def port(server: ServerProcess) -> int:
    return server.addresses[1][1]


def test_redis_benchmark_default_run(port: int) -> None:
    binary = require_binary("redis-benchmark")
    done = subprocess.run([binary, "-p", str(port), "-q", "-n", "2000"], capture_output=True,
                          timeout=300, text=True)
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "ERR" not in output and "error" not in output.lower(), output
    # Every test of the default list reported its figure (the last line of each).
    for name in BENCHMARK_TESTS:
        assert f"{name}: " in output or f"{name} (" in output, (name, output)


def exercise(client: Any) -> None:
    """Every type, plain calls, a pipeline and a MULTI/EXEC (sync redis-py)."""
    client.flushdb()
    assert client.hset("h", mapping={"a": "1", "b": "2"}) == 2
    assert client.hgetall("h") == {b"a": b"1", b"b": b"2"}
    assert client.hincrby("h", "a", 5) == 6
    assert client.rpush("l", "x", "y", "z") == 3
    assert client.lrange("l", 0, -1) == [b"x", b"y", b"z"]
    assert client.lpop("l", 2) == [b"x", b"y"]
    assert client.sadd("s", "1", "2", "3") == 3
    assert client.smembers("s") == {b"1", b"2", b"3"}
    assert client.zadd("z", {"a": 1.5, "b": 2}) == 2
    assert client.zscore("z", "a") == 1.5
    # redis-py gives pairs as tuples in RESP2 and lists in RESP3 (with Redis too).
    assert [tuple(p) for p in client.zrange("z", 0, -1, withscores=True)] == [
        (b"a", 1.5), (b"b", 2.0)]
    # With a count: redis-py 8 parses Redis 7.0's RESP3 reply without one wrongly.
    assert [tuple(p) for p in client.zpopmin("z", 1)] == [(b"a", 1.5)]
    assert client.type("h") == b"hash" and client.type("z") == b"zset"
    assert client.setbit("bits", 7, 1) == 0 and client.bitcount("bits") == 1
    try:
        client.get("h")
    except redis.ResponseError as exc:
        assert str(exc).startswith("WRONGTYPE")
    else:
        raise AssertionError("GET on a hash must fail")
    pipe = client.pipeline(transaction=False)
    pipe.hset("h2", "f", "v").lpush("l2", "a").sadd("s2", "m").zadd("z2", {"m": 3})
    pipe.hget("h2", "f").llen("l2").scard("s2").zcard("z2")
    assert pipe.execute() == [1, 1, 1, 1, b"v", 1, 1, 1]
    tx = client.pipeline(transaction=True)
    tx.hset("h3", "f", "v").rpush("l3", "a", "b").sadd("s3", "m").zincrby("z3", 2.5, "m")
    tx.hgetall("h3").lrange("l3", 0, -1).smembers("s3").zscore("z3", "m")
    assert tx.execute() == [1, 2, 1, 2.5, {b"f": b"v"}, [b"a", b"b"], {b"m"}, 2.5]
    assert client.dbsize() == 13


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_every_type(port: int, protocol: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, socket_timeout=10)
    try:
        exercise(client)
    finally:
        client.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_asyncio_every_type(port: int, protocol: int) -> None:
    async def main() -> None:
        client = aioredis.Redis(host="127.0.0.1", port=port, protocol=protocol,
                                socket_timeout=10)
        try:
            await client.flushdb()
            await client.hset("h", mapping={"a": "1"})
            await client.rpush("l", "a", "b")
            await client.sadd("s", "m")
            await client.zadd("z", {"m": 2})
            assert await client.hgetall("h") == {b"a": b"1"}
            assert await client.zscore("z", "m") == 2.0
            async with client.pipeline(transaction=True) as tx:
                tx.lpop("l")
                tx.smembers("s")
                tx.zrange("z", 0, -1, withscores=True)
                tx.hlen("h")
                popped, members, pairs, length = await tx.execute()
                assert (popped, members, length) == (b"a", {b"m"}, 1)
                assert [tuple(p) for p in pairs] == [(b"m", 2.0)]
            async with client.pipeline(transaction=False) as pipe:
                for key in ("l", "s", "z", "h", "nosuch"):
                    pipe.type(key)
                assert await pipe.execute() == [b"list", b"set", b"zset", b"hash", b"none"]
        finally:
            await client.aclose()
    asyncio.run(main())


def test_redis_cli_scan_type(port: int) -> None:
    # redis-cli 7.0 has --scan but not --type (7.2 added it): where it is
    # missing, the same SCAN ... TYPE goes through redis-cli as a command.
    binary = require_binary("redis-cli")
    has_type = "--type" in subprocess.run([binary, "--help"], capture_output=True, text=True,
                                          timeout=30).stderr
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    try:
        client.flushdb()
        client.hset("h1", "f", "v")
        client.hset("h2", "f", "v")
        client.set("s1", "v")
        client.rpush("l1", "x")
        for kind, expected in (("hash", {"h1", "h2"}), ("string", {"s1"}),
                               ("list", {"l1"}), ("zset", set())):
            if has_type:
                argv = ["--scan", "--type", kind]
            else:
                argv = ["SCAN", "0", "COUNT", "1000", "TYPE", kind]
            done = subprocess.run([binary, "-p", str(port), *argv], capture_output=True,
                                  timeout=30, text=True, check=True)
            keys = done.stdout.split()
            assert set(keys if has_type else keys[1:]) == expected, (kind, done.stdout)
        done = subprocess.run([binary, "-p", str(port), "--scan"], capture_output=True,
                              timeout=30, text=True, check=True)
        assert set(done.stdout.split()) == {"h1", "h2", "s1", "l1"}
        # --bigkeys asks TYPE, then HLEN / LLEN / STRLEN... per key.
        done = subprocess.run([binary, "-p", str(port), "--bigkeys"], capture_output=True,
                              timeout=30, text=True, check=True)
        assert "2 hashs with 2 fields" in done.stdout, done.stdout
        assert "1 lists with 1 items" in done.stdout, done.stdout
    finally:
        client.close()


def test_text_port_get_of_a_hash(server: ServerProcess, port: int) -> None:
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    try:
        client.hset("texthash", "f", "v")
    finally:
        client.close()
    with server.connect(index=0) as sock:
        sock.sendall(b"GET texthash\n")
        reply = b""
        while b"ERROR" not in reply or not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            assert chunk
            reply += chunk
    assert reply.endswith(b"ERROR: wrong type\n"), reply  # after the READY banner
