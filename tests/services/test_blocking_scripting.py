"""Blocking pops meet Lua scripts and WATCH, against a real redis-server.

Each scenario runs on redis-server and on ``sockworks serve kv`` (thread and
asyncio models; the thread model on the persistent store too) and every
client's bytes must be the same, RESP2 and RESP3:

* a script's push serves a blocked client, after the script (Redis serves
  blocked clients once the script is over: inside it the list still holds
  the element, and a script that pushes then pops leaves the waiter waiting);
* a blocking command called by a script is refused at once (Redis 7.0
  flags them noscript), also inside MULTI/EXEC;
* a wake-up's pop (and a BLMOVE's push) is a change for WATCH: the
  watcher's EXEC is aborted;
* while a script is busy past busy-reply-threshold, a new BLPOP is answered
  -BUSY, and a client already blocked stays blocked and is served later.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from sockworks.server import Server
from sockworks.services.kv import KvService
from tests.redis_support import (  # noqa: F401 (fixtures)
    RedisServer,
    shared_redis_server_fixture,
)
from tests.services.test_blocking_differential import Side, both
from tests.support import require_lua

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

require_lua()

LOOP = "local i = 0 while true do i = i + 1 end"
BUSY = (b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or "
        b"SHUTDOWN NOSAVE.\r\n")


@pytest.fixture(scope="module", params=["thread", "asyncio", "thread-aof"])
def ours(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    # thread-aof: the persistent store, whose scripts and transactions log
    # their writes as one record (its own run_isolated), fsync always.
    model, _, store = str(request.param).partition("-")
    service = (KvService(data_dir=str(tmp_path_factory.mktemp("aof")), fsync="always")
               if store else KvService())
    with Server(service, model=model, port=0, resp_port=0) as server:
        yield server.addresses[1]


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def proto(request: pytest.FixtureRequest) -> int:
    return int(request.param)


def test_a_scripts_push_serves_a_blocked_client_after_the_script(
        ours: tuple[str, int], shared_redis_server: RedisServer, proto: int) -> None:
    def scenario(side: Side) -> list[bytes]:
        waiter, other, pusher = side.client(), side.client(), side.client()
        waiter.send("BLPOP", "q", "0")
        side.wait_blocked(1)
        other.send("BRPOP", "q", "0")
        side.wait_blocked(2)
        # Inside the script the elements are still there: nobody is served
        # before it ends. Then both waiters are, first come first served.
        replies = [pusher.call("EVAL", "redis.call('lpush', KEYS[1], 'a', 'b', 'c');"
                               "return redis.call('lrange', KEYS[1], 0, -1)", "1", "q")]
        replies += [waiter.reply(), other.reply(), pusher.call("LRANGE", "q", "0", "-1")]
        # A script that pushes and pops again leaves the waiter waiting.
        waiter.send("BLPOP", "q2", "0")
        side.wait_blocked(1)
        replies.append(pusher.call("EVAL", "redis.call('rpush', KEYS[1], 'x');"
                                   "return redis.call('lpop', KEYS[1])", "1", "q2"))
        assert side.blocked() == 1
        # A sorted set made by a script serves a BZPOPMIN.
        replies.append(pusher.call("EVAL", "return redis.call('zadd', KEYS[1], 1, 'm')",
                                   "1", "z"))
        replies.append(pusher.call("RPUSH", "q2", "y"))
        replies.append(waiter.reply())
        waiter.send("BZPOPMIN", "z2", "0")
        side.wait_blocked(1)
        replies.append(pusher.call("EVAL", "return redis.call('zadd', KEYS[1], 2, 'n')",
                                   "1", "z2"))
        replies.append(waiter.reply())
        assert side.blocked() == 0
        return replies

    replies = both(ours, shared_redis_server, proto, scenario)
    assert replies[1] == b"*2\r\n$1\r\nq\r\n$1\r\nc\r\n"  # the script ran first
    assert replies[2] == b"*2\r\n$1\r\nq\r\n$1\r\na\r\n"


def test_a_blocking_command_in_a_script_is_refused_at_once(
        ours: tuple[str, int], shared_redis_server: RedisServer, proto: int) -> None:
    # Redis 7.0 flags every blocking command noscript: redis.call refuses it
    # (older Redis ran it as its non-blocking form). Either way the script,
    # and the client, never wait, empty key or not, in MULTI/EXEC too.
    calls = [
        "return redis.call('blpop', KEYS[1], 0)",
        "return redis.pcall('brpop', KEYS[1], KEYS[2], 0)",
        "return redis.call('blmove', KEYS[1], KEYS[2], 'LEFT', 'RIGHT', 0)",
        "return redis.call('brpoplpush', KEYS[1], KEYS[2], 0)",
        "return redis.call('blmpop', 0, 1, KEYS[1], 'LEFT')",
        "return redis.call('bzpopmin', KEYS[1], 0)",
        "return redis.call('bzmpop', 0, 2, KEYS[1], KEYS[2], 'MAX')",
        "redis.call('rpush', KEYS[1], 'a', 'b'); return redis.call('brpop', KEYS[1], 0)",
        "redis.call('zadd', KEYS[1], 1, 'm'); return redis.call('bzpopmax', KEYS[1], 0)",
        "return redis.pcall('blpop', KEYS[1], -1)",
    ]

    def scenario(side: Side) -> list[bytes]:
        c = side.client()
        started = time.monotonic()
        replies = [c.call("EVAL", body, "2", "k1", "k2") for body in calls]
        replies += [c.call("MULTI"), c.call("EVAL", calls[0], "1", "e"), c.call("EXEC")]
        replies.append(c.call("LRANGE", "k1", "0", "-1"))
        assert time.monotonic() - started < 5  # a wait here would be forever (timeout 0)
        assert side.blocked() == 0
        return replies

    replies = both(ours, shared_redis_server, proto, scenario)
    assert replies[0].startswith(b"-ERR This Redis command is not allowed from script")
    assert replies[1] == b"-ERR This Redis command is not allowed from script\r\n"


def test_a_wake_up_is_a_change_for_watch(
        ours: tuple[str, int], shared_redis_server: RedisServer, proto: int) -> None:
    def scenario(side: Side) -> list[bytes]:
        waiter, watcher, pusher = side.client(), side.client(), side.client()
        replies = []
        # The watched list is popped by the woken client.
        waiter.send("BLPOP", "q", "0")
        side.wait_blocked(1)
        replies += [watcher.call("WATCH", "q"), watcher.call("MULTI"),
                    watcher.call("LLEN", "q")]
        replies += [pusher.call("RPUSH", "q", "a"), waiter.reply()]
        replies.append(watcher.call("EXEC"))
        # The watched key is written by the wake-up alone (a BLMOVE's
        # destination): the push touched only the source.
        waiter.send("BLMOVE", "src", "dst", "LEFT", "RIGHT", "0")
        side.wait_blocked(1)
        replies += [watcher.call("WATCH", "dst"), watcher.call("MULTI"),
                    watcher.call("LLEN", "dst")]
        replies += [pusher.call("RPUSH", "src", "x"), waiter.reply()]
        replies.append(watcher.call("EXEC"))
        # Served by a script's push: the same.
        waiter.send("BLMOVE", "src", "dst", "LEFT", "RIGHT", "0")
        side.wait_blocked(1)
        replies += [watcher.call("WATCH", "dst"), watcher.call("MULTI"),
                    watcher.call("LLEN", "dst")]
        replies += [pusher.call("EVAL", "return redis.call('rpush', KEYS[1], 'y')", "1", "src"),
                    waiter.reply()]
        replies.append(watcher.call("EXEC"))
        # Control: a watch nothing touches still executes.
        replies += [watcher.call("WATCH", "other"), watcher.call("MULTI"),
                    watcher.call("LLEN", "dst"), watcher.call("EXEC")]
        return replies

    replies = both(ours, shared_redis_server, proto, scenario)
    aborted = b"*-1\r\n" if proto == 2 else b"_\r\n"
    assert [replies[5], replies[11], replies[17]] == [aborted] * 3
    assert replies[-1] == b"*1\r\n:2\r\n"


def test_a_blpop_while_a_script_is_busy_gets_busy(
        ours: tuple[str, int], shared_redis_server: RedisServer) -> None:
    def scenario(side: Side) -> list[bytes]:
        runner, other, waiter = side.client(), side.client(), side.client()
        side.admin.call("CONFIG", "SET", "busy-reply-threshold", "100")
        try:
            waiter.send("BLPOP", "q", "0")  # blocked before the script starts
            side.wait_blocked(1)
            runner.send("EVAL", LOOP, "0")
            deadline = time.monotonic() + 10
            while (reply := other.call("PING")) != BUSY:
                assert time.monotonic() < deadline, f"never busy: {reply!r}"
            replies = [other.call("BLPOP", "q", "0"), other.call("BRPOP", "q", "0.01"),
                       other.call("BLMOVE", "q", "r", "LEFT", "LEFT", "0"),
                       other.call("RPUSH", "q", "a"), other.call("SCRIPT", "KILL")]
            replies.append(runner.reply())
            # The waiter was left waiting; a push now serves it.
            replies.append(b"%d" % side.admin.call("CLIENT", "LIST").count(b"flags=b "))
            replies += [other.call("RPUSH", "q", "b"), waiter.reply()]
            replies.append(other.call("BLPOP", "q", "0.01"))
        finally:
            side.admin.call("CONFIG", "SET", "busy-reply-threshold", "5000")
        return replies

    replies = both(ours, shared_redis_server, 2, scenario)
    assert replies[:4] == [BUSY] * 4
    assert replies[4] == b"+OK\r\n"
    assert replies[-2] == b"*2\r\n$1\r\nq\r\n$1\r\nb\r\n"
