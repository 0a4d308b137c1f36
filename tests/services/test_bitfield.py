"""BITFIELD and BITFIELD_RO against a real redis-server, and on the log.

hypothesis generates sequences of BITFIELD commands (GET/SET/INCRBY over
every width, signed and unsigned, plain and ``#`` offsets, OVERFLOW
WRAP/SAT/FAIL, values at the edges of each width and of 64 bits, and some
malformed arguments), sends each to redis-server and to a RespSession on the
embedded store, compares the reply bytes, then compares the string itself
(GET) so a wrong write cannot hide behind a right reply. The log test replays
random BITFIELDs from the append-only log and expects the same strings.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sockworks.storage import records
from sockworks.storage.base import Store
from sockworks.storage.embedded import PersistentStore
from sockworks.storage.factory import open_store
from tests.redis_support import (  # noqa: F401 (fixtures)
    RedisServer,
    redis_call,
    redis_server_fixture,
    shared_redis_server_fixture,
)
from tests.services.session_pair import SessionPair

pytestmark = pytest.mark.redis


class Pair(SessionPair):
    """The same command to both, compared byte for byte."""

    def __init__(self, port: int, proto: int, store: Store | None = None) -> None:
        super().__init__(port, proto, store, max_bulk=512 * 1024 * 1024)
        self.reset()

    def reset(self) -> None:
        self.same(b"FLUSHALL")
        if self.proto == 3:
            self.same(b"HELLO", b"3", check=False)
        self.same(b"SET", b"s", b"\x00\xffsockworks\x81")
        self.same(b"RPUSH", b"list", b"x")

    def same(self, *argv: bytes, check: bool = True) -> bytes:
        expected, got = self.redis(list(argv)), self.ours(list(argv))
        if check:
            assert got == expected, (argv, expected, got)
        return got


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def pair(request: pytest.FixtureRequest, shared_redis_server: RedisServer) -> Iterator[Pair]:
    p = Pair(shared_redis_server.port, request.param)
    yield p
    p.close()


def _edges() -> list[int]:
    values = {0, 1, -1, 2, -2, 100, -100, 255, 256, -129, -128, 127, 128}
    for bits in (1, 7, 8, 15, 16, 31, 32, 33, 62, 63, 64):
        for base in (1 << (bits - 1), 1 << bits):
            values.update({base - 1, base, base + 1, -base, -base - 1, -base + 1})
    return sorted(v for v in values if -(1 << 63) <= v < (1 << 63))


VALUES = st.one_of(st.sampled_from(_edges()),
                   st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
TYPES = st.one_of(
    st.builds(lambda bits: b"i%d" % bits, st.integers(1, 64)),
    st.builds(lambda bits: b"u%d" % bits, st.integers(1, 63)),
    st.sampled_from([b"u64", b"i65", b"i0", b"x8", b"I8", b"u", b"i-1"]),  # refused
)
OFFSETS = st.one_of(
    st.integers(0, 90).map(lambda n: b"%d" % n),
    st.integers(0, 12).map(lambda n: b"#%d" % n),
    st.sampled_from([b"-1", b"#-1", b"#", b"x", b"4294967296", b"1.5"]),  # refused
)
OVERFLOW = st.sampled_from([b"WRAP", b"SAT", b"FAIL", b"wrap", b"sat", b"fail", b"BOUNCE"])


def _op() -> st.SearchStrategy[list[bytes]]:
    return st.one_of(
        st.tuples(st.sampled_from([b"GET", b"get"]), TYPES, OFFSETS).map(list),
        st.tuples(st.sampled_from([b"SET", b"INCRBY", b"incrby"]), TYPES, OFFSETS,
                  VALUES.map(lambda v: b"%d" % v)).map(list),
        st.tuples(st.just(b"OVERFLOW"), OVERFLOW).map(list),
    )


OPS = st.lists(_op(), max_size=5).map(lambda ops: [arg for op in ops for arg in op])
# Mostly well-formed: a malformed type/offset/overflow stops a whole command.
GOOD_TYPES = st.one_of(st.builds(lambda b: b"i%d" % b, st.integers(1, 64)),
                       st.builds(lambda b: b"u%d" % b, st.integers(1, 63)))
GOOD_OPS = st.lists(st.one_of(
    st.tuples(st.just(b"GET"), GOOD_TYPES, st.integers(0, 90).map(lambda n: b"%d" % n)),
    st.tuples(st.sampled_from([b"SET", b"INCRBY"]), GOOD_TYPES,
              st.one_of(st.integers(0, 90).map(lambda n: b"%d" % n),
                        st.integers(0, 12).map(lambda n: b"#%d" % n)),
              VALUES.map(lambda v: b"%d" % v)),
    st.tuples(st.just(b"OVERFLOW"), st.sampled_from([b"WRAP", b"SAT", b"FAIL"])),
), min_size=1, max_size=6).map(lambda ops: [arg for op in ops for arg in op])
KEYS = st.sampled_from([b"a", b"b", b"s", b"list"])
COMMAND = st.tuples(st.sampled_from([b"BITFIELD", b"BITFIELD", b"BITFIELD_RO"]), KEYS,
                    st.one_of(GOOD_OPS, GOOD_OPS, OPS))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commands=st.lists(COMMAND, min_size=1, max_size=8))
def test_random_bitfields_match_redis(pair: Pair,
                                      commands: list[tuple[bytes, bytes, list[bytes]]]) -> None:
    pair.reset()
    for name, key, ops in commands:
        pair.same(name, key, *ops)
        pair.same(b"GET", key) if key != b"list" else pair.same(b"TYPE", key)
    pair.same(b"DBSIZE")


ERRORS = [
    [b"BITFIELD"], [b"BITFIELD_RO"], [b"BITFIELD", b"k", b"GET"], [b"BITFIELD", b"k", b"GET", b"i8"],
    [b"BITFIELD", b"k", b"SET", b"u8", b"0"], [b"BITFIELD", b"k", b"SET", b"u8", b"0", b"x"],
    [b"BITFIELD", b"k", b"INCRBY", b"u8", b"0", b"1.5"], [b"BITFIELD", b"k", b"OVERFLOW"],
    [b"BITFIELD", b"k", b"OVERFLOW", b"foo", b"GET", b"u8", b"0"], [b"BITFIELD", b"k", b"foo"],
    [b"BITFIELD", b"k", b"GET", b"x8", b"0"], [b"BITFIELD", b"k", b"GET", b"u64", b"0"],
    [b"BITFIELD", b"k", b"GET", b"U8", b"0"], [b"BITFIELD", b"k", b"GET", b"u8", b"-1"],
    [b"BITFIELD", b"k", b"GET", b"u8", b"#"], [b"BITFIELD", b"k", b"GET", b"i8",
                                                b"#9223372036854775807"],
    [b"BITFIELD", b"k", b"GET", b"u8", b"4294967296"],
    [b"BITFIELD", b"k", b"GET", b"x8", b"0", b"GET", b"u8", b"4294967296"],
    [b"BITFIELD", b"list", b"GET", b"u8", b"0"], [b"BITFIELD", b"list", b"SET", b"u8", b"0", b"1"],
    [b"BITFIELD_RO", b"k", b"SET", b"u8", b"0", b"1"],
    [b"BITFIELD_RO", b"k", b"INCRBY", b"u8", b"0", b"1"],
    [b"BITFIELD_RO", b"list", b"GET", b"u8", b"0"],
]


@pytest.mark.parametrize("argv", ERRORS, ids=lambda a: " ".join(x.decode() for x in a))
def test_errors_are_redis_own(pair: Pair, argv: list[bytes]) -> None:
    assert pair.same(*argv).startswith(b"-")
    pair.same(b"EXISTS", b"k")


def test_hand_picked_edges(pair: Pair) -> None:
    run_edges(pair)


def test_redis_backend_passes_bitfield_through(shared_redis_server: RedisServer,
                                               redis_server: RedisServer) -> None:
    """With --store redis://, Redis runs BITFIELD (same replies, same state)."""
    for proto in (2, 3):
        pair = Pair(shared_redis_server.port, proto, open_store(redis_server.url, None, "no"))
        try:
            run_edges(pair)
            for argv in ERRORS:
                pair.same(*argv)
        finally:
            pair.close()


def run_edges(pair: Pair) -> None:
    for argv in (
        [b"BITFIELD", b"k", b"SET", b"i8", b"0", b"-9223372036854775808", b"OVERFLOW", b"SAT",
         b"SET", b"i8", b"8", b"-9223372036854775808", b"OVERFLOW", b"FAIL", b"SET", b"i8",
         b"16", b"-9223372036854775808"],
        [b"BITFIELD", b"k", b"GET", b"i8", b"0", b"GET", b"i8", b"8", b"GET", b"i8", b"16"],
        [b"BITFIELD", b"u", b"SET", b"u8", b"0", b"-1", b"OVERFLOW", b"SAT", b"SET", b"u8",
         b"8", b"-1", b"OVERFLOW", b"FAIL", b"SET", b"u8", b"16", b"-1"],
        [b"BITFIELD", b"f", b"OVERFLOW", b"FAIL", b"SET", b"u8", b"100", b"300"],
        [b"STRLEN", b"f"],  # FAIL wrote nothing, but the string was grown (as Redis)
        [b"BITFIELD", b"w", b"INCRBY", b"i64", b"0", b"9223372036854775807", b"INCRBY", b"i64",
         b"0", b"1", b"OVERFLOW", b"SAT", b"INCRBY", b"i64", b"0", b"-1", b"OVERFLOW", b"FAIL",
         b"INCRBY", b"i64", b"0", b"-9223372036854775808"],
        [b"BITFIELD", b"v", b"INCRBY", b"u63", b"0", b"-1", b"OVERFLOW", b"SAT", b"INCRBY",
         b"u63", b"0", b"-5", b"OVERFLOW", b"WRAP", b"INCRBY", b"u63", b"0",
         b"-9223372036854775808"],
        [b"BITFIELD", b"s", b"GET", b"u8", b"#1", b"GET", b"i64", b"0", b"GET", b"u63", b"3"],
        [b"BITFIELD", b"s", b"GET", b"u8", b"1000"],  # past the end: zeros
        [b"BITFIELD", b"nosuch"], [b"BITFIELD_RO", b"nosuch", b"GET", b"i64", b"3"],
        [b"EXISTS", b"nosuch"],
        [b"SET", b"t", b"x", b"EX", b"100"], [b"BITFIELD", b"t", b"SET", b"u8", b"16", b"7"],
        [b"TTL", b"t"], [b"GET", b"t"],  # the TTL survives a BITFIELD
    ):
        pair.same(*argv)


# -- the append-only log ------------------------------------------------------------------------

def random_bitfield(rng: random.Random) -> list[bytes]:
    argv = [b"BITFIELD", rng.choice([b"a", b"b", b"c"])]
    for _ in range(rng.randrange(1, 5)):
        kind = rng.choice([b"GET", b"SET", b"INCRBY", b"OVERFLOW"])
        if kind == b"OVERFLOW":
            argv += [kind, rng.choice([b"WRAP", b"SAT", b"FAIL"])]
            continue
        signed = rng.random() < 0.5
        bits = rng.randrange(1, 65 if signed else 64)
        argv += [kind, b"%s%d" % (b"i" if signed else b"u", bits), b"%d" % rng.randrange(200)]
        if kind != b"GET":
            argv.append(b"%d" % rng.randrange(-(1 << 63), 1 << 63))
    return argv


def test_log_replays_bitfields(tmp_path: Path) -> None:
    store = PersistentStore(str(tmp_path), "no")
    rng = random.Random(13)
    for _ in range(300):
        store.execute_command(random_bitfield(rng))
    before = {key: store.get(key) for key in (b"a", b"b", b"c")}
    used = store.used_memory()
    store.close()
    image = (tmp_path / "sockworks.aof").read_bytes()
    logged = [records.decode_args(value)[0]
              for offset, length in records.scan_log(image).records
              for op, _, value, _ in records.iter_ops(image[offset:offset + length])
              if op == records.OP_CMD]
    assert logged and set(logged) == {b"BITFIELD"}  # the command as written
    again = PersistentStore(str(tmp_path), "no")
    try:
        assert {key: again.get(key) for key in (b"a", b"b", b"c")} == before
        assert again.used_memory() == used
        again.compact()
    finally:
        again.close()
    compacted = PersistentStore(str(tmp_path), "no")
    try:
        assert {key: compacted.get(key) for key in (b"a", b"b", b"c")} == before
    finally:
        compacted.close()
