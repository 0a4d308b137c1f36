"""Streams against a real redis-server: the same commands to both, replies
compared byte for byte in RESP2 and RESP3 (explicit IDs, so nothing depends
on the clock); replies holding times (XPENDING's idle, XINFO's seen-time)
are compared with those fields masked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sockworks.server import Server
from sockworks.services import lua_engine
from sockworks.services.kv import KvService
from sockworks.storage.factory import open_store
from tests.redis_support import (  # noqa: F401 (fixtures)
    RedisServer,
    redis_call,
    redis_server_fixture,
    shared_redis_server_fixture,
)
from tests.services.test_blocking_differential import Side, both
from tests.services.test_datamodel_differential import EXAMPLES, Pair, _parse
from tests.support import IN_CI

pytestmark = pytest.mark.redis

B = bytes


def cmd(text: str) -> list[bytes]:
    return [part.encode() for part in text.split()]


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def pair(request: pytest.FixtureRequest, shared_redis_server: RedisServer) -> Iterator[Pair]:
    p = Pair(shared_redis_server.port, request.param)
    yield p
    p.close()


BASIC = [
    "XADD s 1-1 a 1", "XADD s 1-1 a 1", "XADD s 0-0 a 1", "XADD s 1-* b 2", "XADD s 2 c 3",
    "XADD s 5-* d 4", "XADD s 5-* e 5", "XADD s a-1 x y", "XADD s 1-b x y", "XADD s - x y",
    "XADD s + x y", "XADD s 10-1 x", "XADD s", "XADD s 10-1", "XADD s NOMKSTREAM 10-1 f v",
    "XADD nokey NOMKSTREAM 10-1 f v", "EXISTS nokey", "XADD s MAXLEN -1 * f v",
    "XADD s MAXLEN x * f v", "XADD s MAXLEN 1 MINID 1 * f v", "XADD s LIMIT 10 * f v",
    "XADD s MAXLEN 2 LIMIT 10 * f v", "XADD s MINID + * f v",
    "XLEN s", "XLEN nokey", "XRANGE s - +", "XRANGE s - + COUNT 2", "XRANGE s - + COUNT 0",
    "XRANGE s - + COUNT -1", "XRANGE s (1-1 +", "XRANGE s - (5-1", "XRANGE s (- +",
    "XRANGE s (18446744073709551615-18446744073709551615 +", "XRANGE s - (0-0",
    "XRANGE s 2 5", "XRANGE s 5 2", "XRANGE s - + COUNT", "XRANGE s - + FOO 1",
    "XRANGE s x +", "XRANGE nokey - +", "XREVRANGE s + -", "XREVRANGE s + - COUNT 2",
    "XREVRANGE s (5-1 -", "XREVRANGE s 5 2", "XRANGE s 00001 5", "XRANGE s -1 5",
    "XDEL s 1-2 99-1 1-2", "XDEL s x", "XDEL nokey 1-1", "XLEN s", "XRANGE s - +",
    "XTRIM s", "XTRIM s MAXLEN", "XTRIM s MAXLEN 100", "XTRIM s MAXLEN = 3",
    "XTRIM s MAXLEN ~ 0 LIMIT 0", "XTRIM s MINID 5-0", "XTRIM s MINID ~ 0",
    "XTRIM s LIMIT 1 MAXLEN 1", "XTRIM s MAXLEN 1 LIMIT 1", "XTRIM nokey MAXLEN 1",
    "XRANGE s - +", "XSETID s 1-1", "XSETID s 100-1", "XSETID s 100-1 ENTRIESADDED 0",
    "XSETID s 200-1 ENTRIESADDED 100 MAXDELETEDID 300-0",
    "XSETID s 200-1 ENTRIESADDED 100 MAXDELETEDID 150-0", "XSETID nokey 1-1",
    "XSETID s 200-1 FOO", "XSETID s 200-1 ENTRIESADDED -1",
    "XADD s 150-1 f v", "XADD s 200-1 f v", "XADD s 200-2 f v",
    "SET str x", "XADD str * f v", "XLEN str", "XRANGE str - +", "TYPE s",
    "OBJECT ENCODING s",
]


def test_basic_commands_match_redis(pair: Pair) -> None:
    for line in BASIC:
        pair.run(cmd(line))


def test_exhausted_ids_and_wrapping_seq(pair: Pair) -> None:
    for line in ["XADD s 18446744073709551615-18446744073709551615 f v", "XADD s * f v",
                 "XADD t 5-18446744073709551615 f v", "XADD t 5-* f v"]:
        pair.run(cmd(line))
    # "*" after 5-<max seq> moves on to the clock's millisecond, sequence 0. The two
    # servers read their clocks a moment apart, so the millisecond is not compared.
    argv = cmd("XADD t * f v")
    for reply in (redis_call(pair.sock, argv), pair.ours(argv)):
        match = re.fullmatch(rb"\$\d+\r\n(\d+)-0\r\n", reply)
        assert match and int(match[1]) > 5, reply
    pair.run(cmd("XRANGE t - 5"))
    pair.run(cmd("XLEN t"))


def test_approximate_trims_remove_what_redis_removes(pair: Pair) -> None:
    pair.run(cmd("CONFIG SET stream-node-max-entries 10"))
    try:
        for i in range(1, 101):
            pair.run(cmd(f"XADD s {i}-1 xitem v"))
        for line in ["XADD s MAXLEN ~ 55 LIMIT 30 101-1 xitem v", "XLEN s",
                     "XADD s MAXLEN ~ 55 LIMIT 30 102-1 xitem v", "XLEN s",
                     "XDEL s 60-1 61-1", "XTRIM s MAXLEN ~ 20", "XLEN s",
                     "XTRIM s MINID ~ 85-0", "XRANGE s - + COUNT 3", "XTRIM s MINID 90-1",
                     "XRANGE s - + COUNT 2"]:
            pair.run(cmd(line))
        argv = cmd("XINFO STREAM s")
        assert _masked(pair.ours(argv)) == _masked(redis_call(pair.sock, argv))
    finally:
        pair.run(cmd("CONFIG SET stream-node-max-entries 100"))


def test_xread_without_block(pair: Pair) -> None:
    for line in ["XADD a 1-1 f 1", "XADD a 2-1 f 2", "XADD b 3-1 g 3",
                 "XREAD STREAMS a b 0 0", "XREAD COUNT 1 STREAMS a b 0 0",
                 "XREAD STREAMS a b $ $", "XREAD STREAMS a b 1-1 2", "XREAD STREAMS a nokey 0 0",
                 "XREAD STREAMS a", "XREAD STREAMS a b 0", "XREAD COUNT x STREAMS a 0",
                 "XREAD GROUP g c STREAMS a 0", "XREAD NOACK STREAMS a 0", "XREAD FOO STREAMS a 0",
                 "XREAD COUNT 1", "XREAD STREAMS a >", "XREAD STREAMS a +", "XREAD STREAMS a x",
                 "XREAD BLOCK x STREAMS a 0", "XREAD BLOCK -1 STREAMS a 0",
                 "XREAD BLOCK 10 STREAMS a 0", "SET str x", "XREAD STREAMS str 0",
                 "MULTI", "XREAD BLOCK 0 STREAMS a $", "EXEC"]:
        pair.run(cmd(line))


GROUPS = [
    "XGROUP CREATE s g $", "XGROUP CREATE s g $ MKSTREAM", "XGROUP CREATE s g $",
    "XGROUP CREATE s g2 0 ENTRIESREAD -2", "XGROUP CREATE s g2 0 ENTRIESREAD 5 FOO",
    "XGROUP CREATE s g2 x", "XGROUP FOO s g", "XGROUP CREATE s", "XGROUP DESTROY s",
    "XGROUP SETID s nog 0", "XGROUP SETID s g 0 ENTRIESREAD", "XGROUP CREATECONSUMER s nog c",
    "XGROUP HELP", "XADD s 1-1 a 1", "XADD s 2-1 b 2", "XADD s 3-1 c 3", "XADD s 4-1 d 4",
    "XGROUP CREATE s g0 0", "XINFO GROUPS s",
    "XREADGROUP GROUP g0 alice COUNT 1 STREAMS s >", "XREADGROUP GROUP g0 bob STREAMS s >",
    "XREADGROUP GROUP g0 bob STREAMS s >", "XREADGROUP GROUP g0 bob STREAMS s 0",
    "XREADGROUP GROUP g0 alice STREAMS s 0", "XREADGROUP GROUP nog alice STREAMS s >",
    "XREADGROUP GROUP g0 alice STREAMS s $", "XREADGROUP STREAMS s >",
    "XREADGROUP GROUP g0 alice STREAMS nokey >", "XPENDING s g0", "XPENDING s nog",
    "XPENDING s g0 - + 0", "XPENDING s g0 - +",
    "XPENDING s g0 x + 10", "XPENDING s g0 - + 10 carol", "XPENDING s g0 IDLE 0 - + 0",
    "XINFO GROUPS s", "XACK s g0 1-1 1-1 9-9", "XACK s g0 x", "XACK s nog 1-1",
    "XPENDING s g0", "XDEL s 3-1", "XREADGROUP GROUP g0 bob STREAMS s 0",
    "XINFO GROUPS s", "XCLAIM s g0 carol 0 2-1 JUSTID", "XCLAIM s g0 carol 0 3-1 4-1 JUSTID",
    "XPENDING s g0", "XCLAIM s g0 carol x 2-1", "XCLAIM s g0 carol 0 2-1 FOO",
    "XCLAIM s g0 carol 0 2-1 RETRYCOUNT x", "XCLAIM s nog carol 0 2-1",
    "XCLAIM s g0 dave 0 1-1 FORCE JUSTID", "XPENDING s g0",
    "XCLAIM s g0 dave 0 2-1 RETRYCOUNT 7 JUSTID LASTID 9-9", "XINFO GROUPS s",
    "XAUTOCLAIM s g0 erin 0 0 COUNT 1 JUSTID", "XAUTOCLAIM s g0 erin 0 0 JUSTID",
    "XAUTOCLAIM s g0 erin 0 0 COUNT 0", "XAUTOCLAIM s g0 erin 0 x", "XAUTOCLAIM s nog erin 0 0",
    "XAUTOCLAIM s g0 erin 0 0 FOO", "XPENDING s g0", "XGROUP CREATECONSUMER s g0 frank",
    "XGROUP CREATECONSUMER s g0 frank", "XGROUP DELCONSUMER s g0 erin",
    "XGROUP DELCONSUMER s g0 nobody", "XPENDING s g0", "XGROUP SETID s g0 $",
    "XGROUP SETID s g0 1-1 ENTRIESREAD 1", "XINFO GROUPS s", "XGROUP DESTROY s g0",
    "XGROUP DESTROY s g0", "XINFO GROUPS s", "XINFO FOO s", "XINFO STREAM nokey",
    "XINFO CONSUMERS s nog", "XINFO HELP", "XINFO STREAM s FULL COUNT", "XINFO STREAM s FOO",
    "SET str x", "XGROUP CREATE str g $", "XINFO STREAM str",
]


def test_consumer_groups_match_redis(pair: Pair) -> None:
    for line in GROUPS:
        pair.run(cmd(line))


def _masked(raw: bytes) -> Any:
    """XINFO/XPENDING without the fields that hold times or rax internals."""
    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()
                    if k not in (b"radix-tree-nodes", b"seen-time", b"idle", b"pending")}
        if isinstance(value, list):
            flat = [walk(v) for v in value]
            for i in range(0, len(flat) - 1, 2):
                if flat[i] in (b"radix-tree-nodes", b"seen-time", b"idle", b"pending"):
                    flat[i + 1] = None
            return flat
        return value
    return walk(_parse(raw))


def test_xinfo_stream_full_matches_redis_but_for_times(pair: Pair) -> None:
    for line in ["XADD s 1-1 a 1", "XADD s 2-1 b 2", "XADD s 3-1 c 3", "XGROUP CREATE s g 0",
                 "XGROUP CREATE s a 0", "XREADGROUP GROUP g c1 COUNT 1 STREAMS s >",
                 "XREADGROUP GROUP g c2 NOACK STREAMS s >", "XDEL s 2-1"]:
        pair.run(cmd(line))
    for line in ["XINFO STREAM s", "XINFO STREAM s FULL", "XINFO STREAM s FULL COUNT 1",
                 "XINFO CONSUMERS s g"]:
        argv = cmd(line)
        assert _masked(pair.ours(argv)) == _masked(redis_call(pair.sock, argv)), line


def test_xpending_extended_matches_redis_but_for_idle_times(pair: Pair) -> None:
    for line in ["XADD s 1-1 a 1", "XADD s 2-1 b 2", "XGROUP CREATE s g 0",
                 "XREADGROUP GROUP g alice COUNT 1 STREAMS s >",
                 "XREADGROUP GROUP g bob STREAMS s >"]:
        pair.run(cmd(line))
    for line in ["XPENDING s g - + 10", "XPENDING s g - + 10 alice", "XPENDING s g (1-1 + 10",
                 "XPENDING s g IDLE 0 - + 10", "XPENDING s g IDLE 3600000 - + 10"]:
        argv = cmd(line)
        ours, theirs = _parse(pair.ours(argv)), _parse(redis_call(pair.sock, argv))
        assert [e[:2] + e[3:] for e in ours] == [e[:2] + e[3:] for e in theirs], line



@pytest.fixture(scope="module")
def ours() -> Iterator[tuple[str, int]]:
    with Server(KvService(), model="thread", port=0, resp_port=0) as server:
        yield server.addresses[1]


def test_blocked_reads_and_scripts_match_redis(ours: tuple[str, int],
                                               shared_redis_server: RedisServer,
                                               proto: int) -> None:
    def scenario(side: Side) -> list[bytes]:
        reader, grouped, writer = side.client(), side.client(), side.client()
        replies = [writer.call("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")]
        reader.send("XREAD", "COUNT", "5", "BLOCK", "0", "STREAMS", "s", "t", "$", "$")
        side.wait_blocked(1)
        grouped.send("XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">")
        side.wait_blocked(2)
        replies.append(writer.call("XADD", "s", "1-1", "f", "v"))
        replies += [reader.reply(), grouped.reply()]
        replies.append(reader.call("XREAD", "BLOCK", "10", "STREAMS", "s", "$"))
        replies.append(writer.call("XPENDING", "s", "g"))
        replies.append(writer.call("MULTI"))
        replies.append(writer.call("XREAD", "BLOCK", "0", "STREAMS", "s", "$"))
        replies.append(writer.call("XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS",
                                   "s", ">"))
        replies.append(writer.call("EXEC"))
        if lua_engine.LUA_AVAILABLE or IN_CI:
            for script in ["return redis.pcall('xread','STREAMS','s','$')",
                           "return redis.pcall('xread','BLOCK',0,'STREAMS','s','$')",
                           "return redis.pcall('xreadgroup','group','g','c','STREAMS','s','>')",
                           "return redis.pcall('XREADGROUP','group','g','c','BLOCK',0,"
                           "'STREAMS','s','>')",
                           "redis.call('xadd', KEYS[1], '5-5', 'f', 'v') "
                           "return redis.call('xrange', KEYS[1], '-', '+')"]:
                replies.append(writer.call("EVAL", script, "1", "s"))
        return replies

    both(ours, shared_redis_server, proto, scenario)


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def proto(request: pytest.FixtureRequest) -> int:
    return int(request.param)


def test_each_blocked_reader_waits_for_its_own_id(ours: tuple[str, int],
                                                  shared_redis_server: RedisServer,
                                                  proto: int) -> None:
    def scenario(side: Side) -> list[bytes]:
        future, current, grouped, writer = (side.client(), side.client(), side.client(),
                                            side.client())
        replies = [writer.call("XADD", "s", "5-0", "f", "v"),
                   writer.call("XGROUP", "CREATE", "s", "g", "$")]
        future.send("XREAD", "BLOCK", "0", "STREAMS", "s", "100-0")
        side.wait_blocked(1)
        current.send("XREAD", "BLOCK", "0", "STREAMS", "s", "$")
        side.wait_blocked(2)
        grouped.send("XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">")
        side.wait_blocked(3)
        # Added and deleted in one transaction: Redis still serves the
        # readers whose ID the stream's last ID passed, with nothing.
        replies += [writer.call("MULTI"), writer.call("XADD", "s", "6-0", "f", "v"),
                    writer.call("XDEL", "s", "6-0"), writer.call("EXEC")]
        replies += [current.reply(), grouped.reply()]
        side.wait_blocked(1)
        replies.append(writer.call("XADD", "s", "101-0", "f", "w"))
        replies.append(future.reply())
        return replies

    both(ours, shared_redis_server, proto, scenario)


@pytest.mark.parametrize("proto", [2, 3])
def test_redis_backend_passes_streams_through(proto: int, shared_redis_server: RedisServer,
                                              redis_server: RedisServer) -> None:
    # --store redis://: stream commands go to a second redis-server through
    # the Redis backend; replies (retagged for RESP3) are the reference's.
    pair = Pair(shared_redis_server.port, proto, open_store(redis_server.url, None, "no"))
    try:
        for line in [*BASIC, *[g for g in GROUPS if "HELP" not in g]]:
            argv = cmd(line)
            if argv[0] == b"XINFO" and argv[1:2] == [b"STREAM"]:
                ours, theirs = pair.ours(argv), redis_call(pair.sock, argv)
                if theirs[:1] == b"-":
                    assert ours == theirs, line
                else:
                    assert _masked(ours) == _masked(theirs), line
            else:
                pair.run(argv)
        for argv in (cmd("XGROUP HELP"), cmd("XINFO HELP"), cmd("XREAD STREAMS s 0"),
                     cmd("XREADGROUP GROUP g c STREAMS s 0")):
            pair.run(argv)
    finally:
        pair.close()


def test_watch_sees_the_stream_changes_redis_signals(pair: Pair) -> None:
    # Redis's t_stream.c signals XADD, XDEL, XTRIM and XGROUP CREATE
    # MKSTREAM as changes; group and PEL changes do not abort EXEC.
    setup = ["XADD s 1-1 f v", "XADD s 2-1 f v", "XGROUP CREATE s g 0"]
    for line in setup:
        pair.run(cmd(line))
    changes = ["XADD s 3-1 f v", "XDEL s 3-1", "XTRIM s MAXLEN 1",
               "XGROUP CREATE fresh g $ MKSTREAM", "XGROUP CREATECONSUMER s g c2",
               "XREADGROUP GROUP g c STREAMS s >", "XACK s g 2-1", "XCLAIM s g c 0 2-1 FORCE",
               "XSETID s 99-1", "XGROUP SETID s g 0", "XGROUP DELCONSUMER s g c",
               "XGROUP DESTROY s g", "XGROUP CREATE s g $"]
    for change in changes:
        key = "fresh" if "fresh" in change else "s"
        for line in [f"WATCH {key}", change, "MULTI", "PING", "EXEC"]:
            pair.run(cmd(line))


# -- generated sequences -------------------------------------------------------------

SKEY = st.sampled_from([b"s", b"s", b"s", b"s", b"t", b"str"])
SID = st.sampled_from([b"1-1", b"1-2", b"2", b"2-*", b"3-0", b"5-1", b"5-*", b"7", b"0-1",
                       b"(1-1", b"(3-0", b"-", b"+", b"x", b"10-0", b"0"])
ADD_ID = st.sampled_from([b"1-1", b"1-2", b"2-*", b"3-0", b"5-1", b"5-*", b"7", b"8-*",
                          b"9-3", b"12", b"0-0", b"x"])
GROUP = st.sampled_from([b"g", b"g", b"g", b"h"])
CONSUMER = st.sampled_from([b"alice", b"bob"])
NUM = st.sampled_from([b"0", b"1", b"2", b"3", b"-1", b"x"])
TRIM = st.sampled_from([[], [b"MAXLEN", b"2"], [b"MAXLEN", b"~", b"1"], [b"MINID", b"=", b"5"],
                        [b"MINID", b"~", b"3-0", b"LIMIT", b"1"], [b"MAXLEN", b"1", b"LIMIT", b"1"]])


def scmd(*parts: Any) -> st.SearchStrategy[list[bytes]]:
    return st.tuples(*[p if isinstance(p, st.SearchStrategy) else st.just(p)
                       for p in parts]).map(lambda t: [x for p in t
                                                        for x in (p if isinstance(p, list)
                                                                  else [p])])


STREAM_COMMANDS = st.one_of(
    scmd(b"XADD", SKEY, TRIM, ADD_ID, b"f", st.sampled_from([b"a", b"b"])),
    scmd(b"XADD", SKEY, b"NOMKSTREAM", ADD_ID, b"f", b"v"),
    scmd(b"XDEL", SKEY, SID, SID),
    scmd(b"XTRIM", SKEY, TRIM),
    scmd(b"XLEN", SKEY),
    scmd(b"XRANGE", SKEY, SID, SID),
    scmd(b"XRANGE", SKEY, SID, SID, b"COUNT", NUM),
    scmd(b"XREVRANGE", SKEY, SID, SID, b"COUNT", NUM),
    scmd(b"XREAD", b"COUNT", NUM, b"STREAMS", SKEY, SID),
    scmd(b"XSETID", SKEY, SID),
    scmd(b"XGROUP", b"CREATE", SKEY, GROUP, st.sampled_from([b"$", b"0", b"2-0"]),
         st.sampled_from([[], [b"MKSTREAM"], [b"ENTRIESREAD", b"1"]])),
    scmd(b"XGROUP", b"SETID", SKEY, GROUP, st.sampled_from([b"$", b"0", b"3-0"])),
    scmd(b"XGROUP", b"DESTROY", SKEY, GROUP),
    scmd(b"XGROUP", b"CREATECONSUMER", SKEY, GROUP, CONSUMER),
    scmd(b"XGROUP", b"DELCONSUMER", SKEY, GROUP, CONSUMER),
    scmd(b"XREADGROUP", b"GROUP", GROUP, CONSUMER, st.sampled_from([[], [b"NOACK"]]),
         b"COUNT", st.sampled_from([b"1", b"2", b"0"]), b"STREAMS", SKEY,
         st.sampled_from([b">", b"0", b"3-0"])),
    scmd(b"XACK", SKEY, GROUP, SID, SID),
    scmd(b"XCLAIM", SKEY, GROUP, CONSUMER, b"0", SID, st.sampled_from(
        [[b"JUSTID"], [b"FORCE", b"JUSTID"], [b"JUSTID", b"RETRYCOUNT", b"5"],
         [b"JUSTID", b"LASTID", b"9-0"]])),
    scmd(b"XAUTOCLAIM", SKEY, GROUP, CONSUMER, b"0", SID, b"COUNT",
         st.sampled_from([b"1", b"3"]), b"JUSTID"),
    scmd(b"XPENDING", SKEY, GROUP),
    scmd(b"XPENDING", SKEY, GROUP, SID, SID, b"0"),
    scmd(b"XINFO", b"GROUPS", SKEY),
    scmd(b"DEL", SKEY),
    scmd(b"SET", b"str", b"x"),
)


def test_generated_stream_sequences(shared_redis_server: RedisServer) -> None:
    strategy = st.lists(STREAM_COMMANDS, min_size=10, max_size=40)
    # A stream with entries and a group (ENTRIESREAD known) to start from.
    setup = [cmd(line) for line in ("XADD s 1-1 f a", "XADD s 1-2 f b", "XADD s 3-0 f c",
                                    "XADD s 5-1 f d", "XGROUP CREATE s g 0 ENTRIESREAD 0")]

    @settings(max_examples=EXAMPLES, deadline=None,
              derandomize=os.environ.get("SOCKWORKS_DIFF_RANDOM") is None,
              suppress_health_check=list(HealthCheck))
    @given(commands=strategy, proto=st.sampled_from([2, 3]))
    def run(commands: list[list[bytes]], proto: int) -> None:
        pair = Pair(shared_redis_server.port, proto)
        try:
            for argv in setup + commands:
                pair.run(argv)
        finally:
            pair.close()
    run()


def test_over_maxmemory_only_commands_that_may_add_data_are_refused(
        redis_server: RedisServer) -> None:
    pair = Pair(redis_server.port, 2)
    try:
        for line in ["XADD s 1-1 f v", "XADD s 2-1 f v", "XGROUP CREATE s g 0",
                     "XGROUP CREATE s h 0", "XREADGROUP GROUP g c STREAMS s >",
                     "CONFIG SET maxmemory 1"]:
            pair.run(cmd(line))
        for line in ["XADD s 3-1 f v", "XGROUP CREATE s x 0", "XGROUP CREATECONSUMER s g d",
                     "XSETID s 9-9", "XGROUP SETID s g 0", "XGROUP DELCONSUMER s g c",
                     "XGROUP DESTROY s h", "XACK s g 1-1", "XDEL s 1-1", "XTRIM s MAXLEN 0",
                     "XLEN s", "XINFO GROUPS s"]:
            pair.run(cmd(line))
    finally:
        pair.run(cmd("CONFIG SET maxmemory 0"))
        pair.close()
