"""Redis's encoding thresholds through CONFIG SET/GET, against a real
redis-server: the parameters (and their 7.0 ``ziplist`` aliases), their
errors, and the OBJECT ENCODING each threshold makes Redis report. Redis's
own test units set them in every ``start_server`` of the type tests, so a
server that refused them could not even start those units.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_support import RedisServer, redis_server_fixture  # noqa: F401 (fixture)
from tests.services.test_datamodel_differential import Pair

pytestmark = pytest.mark.redis

THRESHOLDS = [b"hash-max-listpack-entries", b"hash-max-listpack-value",
              b"hash-max-ziplist-entries", b"hash-max-ziplist-value",
              b"zset-max-listpack-entries", b"zset-max-listpack-value",
              b"zset-max-ziplist-entries", b"zset-max-ziplist-value",
              b"set-max-intset-entries", b"list-max-listpack-size",
              b"list-max-ziplist-size", b"list-compress-depth", b"stream-node-max-bytes",
              b"stream-node-max-entries"]


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def pair(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[Pair]:
    # A private redis-server: these tests change its configuration.
    p = Pair(redis_server.port, request.param)
    yield p
    p.close()


def test_defaults_and_aliases_read_as_redis(pair: Pair) -> None:
    for name in THRESHOLDS:
        pair.run([b"CONFIG", b"GET", name])


@pytest.mark.parametrize("argv", [
    [b"hash-max-listpack-entries", b"x"],
    [b"hash-max-listpack-entries", b"-1"],
    [b"hash-max-ziplist-entries", b"-1"],
    [b"hash-max-listpack-value", b"x"],
    [b"zset-max-listpack-value", b"99999999999999999999"],
    [b"set-max-intset-entries", b"1.5"],
    [b"list-max-listpack-size", b"2147483648"],
    [b"list-compress-depth", b"-1"],
    [b"hash-max-listpack-entries", b"5", b"list-compress-depth", b"-1"],
])
def test_bad_values_fail_with_redis_errors_and_change_nothing(pair: Pair,
                                                              argv: list[bytes]) -> None:
    pair.run([b"CONFIG", b"SET", *argv])
    pair.run([b"CONFIG", b"GET", b"hash-max-listpack-entries"])


def test_an_alias_sets_the_parameter(pair: Pair) -> None:
    pair.run([b"CONFIG", b"SET", b"hash-max-ziplist-entries", b"3", b"zset-max-ziplist-value", b"5"])
    pair.run([b"CONFIG", b"GET", b"hash-max-listpack-entries"])
    pair.run([b"CONFIG", b"GET", b"zset-max-listpack-value"])


def test_thresholds_decide_object_encoding(pair: Pair) -> None:
    pair.run([b"CONFIG", b"SET", b"hash-max-listpack-entries", b"2",
              b"zset-max-listpack-value", b"3", b"set-max-intset-entries", b"2"])
    pair.run([b"HSET", b"h", b"a", b"1", b"b", b"2"])
    pair.run([b"OBJECT", b"ENCODING", b"h"])
    pair.run([b"HSET", b"h", b"c", b"3"])
    pair.run([b"OBJECT", b"ENCODING", b"h"])
    pair.run([b"HDEL", b"h", b"c"])
    pair.run([b"OBJECT", b"ENCODING", b"h"])  # never converted back
    pair.run([b"ZADD", b"z", b"1", b"abc"])
    pair.run([b"OBJECT", b"ENCODING", b"z"])
    pair.run([b"ZADD", b"z", b"2", b"abcd"])
    pair.run([b"OBJECT", b"ENCODING", b"z"])
    pair.run([b"SADD", b"s", b"1", b"2"])
    pair.run([b"OBJECT", b"ENCODING", b"s"])
    pair.run([b"SADD", b"s", b"3"])
    pair.run([b"OBJECT", b"ENCODING", b"s"])


def test_save_takes_only_the_empty_schedule(pair: Pair) -> None:
    pair.run([b"CONFIG", b"SET", b"save", b""])
    # Redis would schedule RDB snapshots; there are none here, so it is refused.
    got = pair.ours([b"CONFIG", b"SET", b"save", b"100 100"])
    assert got.startswith(b"-ERR CONFIG SET failed (possibly related to argument 'save')")


def test_strings_changed_in_place_are_raw(pair: Pair) -> None:
    """Redis reports a string changed in place (SETRANGE, APPEND to an
    existing key, SETBIT, BITFIELD writes, BITOP's result) as ``raw`` even
    when short or numeric, until a SET-like write replaces it."""
    for argv in ([b"SET", b"k", b"1234"], [b"SETRANGE", b"k", b"0", b""],
                 [b"SETRANGE", b"k", b"0", b"2"], [b"SET", b"k", b"1234"],
                 [b"SETRANGE", b"k", b"5", b"2"], [b"SETRANGE", b"new", b"1", b"x"],
                 [b"APPEND", b"a", b"12"], [b"APPEND", b"b", b"hello"], [b"APPEND", b"a", b"3"],
                 [b"SETBIT", b"bits", b"3", b"1"], [b"SET", b"n", b"1"],
                 [b"SETBIT", b"n", b"6", b"1"], [b"BITFIELD", b"bf", b"GET", b"u8", b"0"],
                 [b"SET", b"bf", b"7"], [b"BITFIELD", b"bf", b"GET", b"u8", b"0"],
                 [b"BITFIELD", b"bf2", b"SET", b"u8", b"0", b"65"],
                 [b"BITOP", b"OR", b"dest", b"bf", b"bf2"], [b"INCR", b"a"],
                 [b"SETRANGE", b"b", b"0", b"j"], [b"SET", b"b", b"x"],
                 [b"SETRANGE", b"c", b"0", b"abc"], [b"DEL", b"c"], [b"SET", b"c", b"abc"]):
        pair.run(argv)
        pair.run([b"OBJECT", b"ENCODING", argv[2] if argv[0] == b"BITOP" else argv[1]])
    for key in (b"k", b"new", b"a", b"b", b"bits", b"n", b"bf", b"bf2", b"dest", b"c"):
        pair.run([b"OBJECT", b"ENCODING", key])
