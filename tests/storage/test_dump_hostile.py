"""RESTORE against hostile payloads: a client can compute a valid CRC over
anything, so every mutation of a valid payload (re-sealed with a correct
footer) must get an error or a value, never an exception, a hang or an
allocation sized by a forged number; a refused payload leaves the store as
it was. Also: the payload codec's own pieces (CRC64, listpack, LZF), and
RESTORE's effect surviving the append-only log.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sockworks.protocols import rdb
from sockworks.protocols.resp import SimpleString
from sockworks.storage.embedded import PersistentStore
from sockworks.storage.memory import MemoryStore
from sockworks.storage.model import dump as D
from sockworks.storage.model.common import CommandError
from sockworks.storage.model.values import Encodings, HashValue, SetValue, Value, ZSetValue

ENC = Encodings()


def _store_with_everything() -> MemoryStore:
    store = MemoryStore()
    store.set(b"str", b"hello")
    store.set(b"int", b"-123456")
    for argv in (
        [b"RPUSH", b"list", b"a", b"1", b"x" * 70, b""],
        [b"SADD", b"intset", b"1", b"2", b"-3"], [b"SADD", b"set", b"a", b"b"],
        [b"ZADD", b"zset", b"1.5", b"a", b"-inf", b"b"],
        [b"HSET", b"hash", b"f", b"v", b"g", b"12"],
        [b"XADD", b"stream", b"1-1", b"a", b"1"], [b"XADD", b"stream", b"2-1", b"a", b"2"],
        [b"XADD", b"stream", b"3-1", b"b", b"3", b"c", b"4"],
        [b"XGROUP", b"CREATE", b"stream", b"g", b"0"],
        [b"XREADGROUP", b"GROUP", b"g", b"alice", b"COUNT", b"2", b"STREAMS", b"stream", b">"],
    ):
        store.execute_command(argv)
    return store


def _dumped(store: MemoryStore, key: bytes) -> bytes:
    value = store.lookup(key)
    assert value is not None
    return D.serialize(value, ENC)


def _canonical(store: MemoryStore, key: bytes) -> object:
    value = store.lookup(key)
    assert value is not None
    return _canonical_of(value)


def _canonical_of(value: Value) -> object:
    """A value in a comparable form (a set's order is Python's own)."""
    if isinstance(value, SetValue):
        return sorted(value)
    if isinstance(value, HashValue):
        return dict(value)
    if isinstance(value, ZSetValue):
        return list(value.order)
    return D.serialize(value, ENC)


_SOURCE = _store_with_everything()
SEEDS = [_dumped(_SOURCE, k)
         for k in (b"str", b"int", b"list", b"intset", b"set", b"zset", b"hash", b"stream")]
# Redis's compact encodings too (as redis-server 7.0 writes them).
SEEDS += [
    rdb.seal(b"\x00\xc3" + rdb.length(5) + rdb.length(40) + b"\x01ab\xe0\x1f\x01"
             + b"\x40\x01"),  # an LZF string
    rdb.seal(bytes((D.HASH_LISTPACK,)) + rdb.string(rdb.listpack([b"f", b"v", b"n", 7]))),
    rdb.seal(bytes((D.ZSET_LISTPACK,)) + rdb.string(rdb.listpack([b"m", b"1.5", b"n", 2]))),
    rdb.seal(bytes((D.SET_INTSET,)) + rdb.string(struct.pack("<II3h", 2, 3, -1, 5, 9))),
    rdb.seal(bytes((D.LIST_QUICKLIST_2,)) + rdb.length(2) + rdb.length(1) + rdb.string(b"pl")
             + rdb.length(2) + rdb.string(rdb.listpack([b"a", 5]))),
]


def _restore(store: MemoryStore, payload: bytes) -> object:
    return store.execute_command([b"RESTORE", b"target", b"0", payload, b"REPLACE"])


def _mutate(seed: bytes, data: st.DataObject) -> bytes:
    body = bytearray(seed[:-10])
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if not body:
            break
        at = data.draw(st.integers(0, len(body) - 1))
        if kind == "flip":
            body[at] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set":
            body[at] = data.draw(st.sampled_from([0x00, 0x3F, 0x40, 0x7F, 0x80, 0x81, 0xC0,
                                                  0xC3, 0xF0, 0xF4, 0xFE, 0xFF]))
        elif kind == "insert":
            body[at:at] = data.draw(st.binary(min_size=1, max_size=9))
        elif kind == "delete":
            del body[at:at + data.draw(st.integers(1, 8))]
        else:
            del body[at:]
    return rdb.seal(bytes(body))  # a valid footer over whatever is left


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), data=st.data())
def test_mutated_payloads_get_an_error_or_a_value(seed: bytes, data: st.DataObject) -> None:
    store = MemoryStore()
    store.set(b"target", b"before")
    used = store.used_memory()
    payload = _mutate(seed, data)
    started = time.monotonic()
    try:
        reply = _restore(store, payload)
    except CommandError as exc:
        assert str(exc) == D.BAD_FORMAT
        # Refused: the store is as it was.
        assert store.lookup(b"target") == b"before"
        assert store.used_memory() == used
    else:
        assert reply == SimpleString("OK")
        value = store.lookup(b"target")
        assert value is not None
        # What was restored dumps and restores again to the same value.
        again = D.serialize(value, ENC)
        assert _restore(store, again) == SimpleString("OK")
        assert _canonical(store, b"target") == _canonical_of(value)
    # Bounded: a mutated payload of a few hundred bytes is done at once.
    assert time.monotonic() - started < 5


def _bad(body: bytes) -> None:
    store = MemoryStore()
    with pytest.raises(CommandError, match=D.BAD_FORMAT):
        _restore(store, rdb.seal(body))
    assert store.lookup(b"target") is None


def test_forged_counts_are_refused_before_anything_is_built() -> None:
    huge = rdb.length((1 << 64) - 1)
    for kind in (D.LIST, D.SET, D.ZSET_2, D.HASH, D.LIST_QUICKLIST_2, D.STREAM_2):
        _bad(bytes((kind,)) + huge + b"\x01a")
    _bad(b"\x00" + rdb.length(1 << 40) + b"abc")  # a string longer than the payload


def test_lzf_output_is_bounded_by_the_declared_size_and_the_budget() -> None:
    # Declares 1 TiB of output from 3 bytes: refused without allocating it.
    _bad(b"\x00\xc3" + rdb.length(3) + rdb.length(1 << 40) + b"\x00ab")
    # Makes more than it declares, or less.
    _bad(b"\x00\xc3" + rdb.length(5) + rdb.length(3) + b"\x01ab\x20\x01")
    _bad(b"\x00\xc3" + rdb.length(3) + rdb.length(9) + b"\x01ab")
    # A back reference before the start.
    _bad(b"\x00\xc3" + rdb.length(2) + rdb.length(3) + b"\x20\x05")
    # The budget spans the whole payload, not one string.
    one = b"\xc3" + rdb.length(5) + rdb.length(265) + b"\x00a\xe0\xff\x00"
    assert D.deserialize(bytes((D.LIST,)) + rdb.length(1) + one, ENC, budget=500) == \
        D.deserialize(bytes((D.LIST,)) + rdb.length(1) + rdb.string(b"a" * 265), ENC)
    with pytest.raises(rdb.BudgetError):
        D.deserialize(bytes((D.LIST,)) + rdb.length(2) + one + one, ENC, budget=500)


def test_containers_are_validated_deeply() -> None:
    good = rdb.listpack([b"f", b"v"])
    _bad(bytes((D.HASH_LISTPACK,)) + rdb.string(good[:-1] + b"\x00"))  # no terminator
    _bad(bytes((D.HASH_LISTPACK,)) + rdb.string(good[:4] + b"\x09\x00" + good[6:]))  # count
    wrong_back = bytearray(good)
    wrong_back[8] = 9  # the first entry's back length
    _bad(bytes((D.HASH_LISTPACK,)) + rdb.string(bytes(wrong_back)))
    _bad(bytes((D.HASH_LISTPACK,)) + rdb.string(rdb.listpack([b"f", b"v", b"f", b"w"])))
    _bad(bytes((D.HASH_LISTPACK,)) + rdb.string(rdb.listpack([b"f"])))  # odd
    _bad(bytes((D.ZSET_LISTPACK,)) + rdb.string(rdb.listpack([b"m", b"nan"])))
    _bad(bytes((D.SET_INTSET,)) + rdb.string(struct.pack("<II2h", 2, 2, 5, 1)))  # unsorted
    _bad(bytes((D.SET_INTSET,)) + rdb.string(struct.pack("<II2h", 3, 2, 1, 5)))  # width
    _bad(bytes((D.SET,)) + rdb.length(0))  # empty keys are refused, as in Redis
    _bad(bytes((D.LIST_QUICKLIST_2,)) + rdb.length(1) + rdb.length(3) + rdb.string(b"x"))
    _bad(bytes((D.ZSET_2,)) + rdb.length(1) + rdb.string(b"m") + struct.pack("<d", float("nan")))
    _bad(b"\x09" + rdb.string(b"zipmap"))  # Redis 2.x zipmaps are not read
    _bad(b"\x07\x01")  # module values


def _stream_body(items: list[bytes | int], length: int, master: int = 1 << 64) -> bytes:
    return (bytes((D.STREAM_2,)) + rdb.length(1) + rdb.string(master.to_bytes(16, "big"))
            + rdb.string(rdb.listpack(items)) + rdb.length(length)
            + b"".join(rdb.length(n) for n in (5, 0, 1, 0, 0, 0, 1)) + rdb.length(0))


def test_stream_listpacks_are_validated_deeply() -> None:
    entry: list[bytes | int] = [2, 0, 0, b"v", 4]  # SAMEFIELDS, +0-0, value, lp-count
    good = [1, 0, 1, b"f", 0, *entry]
    store = MemoryStore()
    assert _restore(store, rdb.seal(_stream_body(good, 1))) == SimpleString("OK")
    assert store.execute_command([b"XRANGE", b"target", b"-", b"+"]) == [[b"1-0", [b"f", b"v"]]]
    _bad(_stream_body([1, 0, 1, b"f", 0, 2, 0, 0, b"v", 5], 1))  # lp-count wrong
    _bad(_stream_body([1, 0, 1, b"f", 1, *entry], 1))  # master terminator not 0
    _bad(_stream_body([2, 0, 1, b"f", 0, *entry], 2))  # count says two entries
    _bad(_stream_body(good, 2))  # the stream's length disagrees
    _bad(_stream_body([b"x", 0, 1, b"f", 0, *entry], 1))  # a count that is not a number
    _bad(_stream_body([2, 0, 1, b"f", 0, *entry, *entry], 2))  # the same ID twice
    short_key = _stream_body(good, 1).replace(rdb.string((1 << 64).to_bytes(16, "big")),
                                              rdb.string(b"\x00" * 8))
    _bad(short_key)


def test_a_refused_payload_changes_nothing_and_replace_is_atomic() -> None:
    store = _store_with_everything()
    before = {k: _dumped(store, k)
              for k in store.keys(b"*")}
    used = store.used_memory()
    for key in before:
        with pytest.raises(CommandError):
            store.execute_command([b"RESTORE", key, b"0", rdb.seal(b"\x02\x05"), b"REPLACE"])
    assert {k: _dumped(store, k)
            for k in store.keys(b"*")} == before
    assert store.used_memory() == used


def test_memory_accounting_matches_the_same_value_built_by_commands() -> None:
    restored = MemoryStore()
    for key in _SOURCE.keys(b"*"):
        payload = _dumped(_SOURCE, key)
        restored.execute_command([b"RESTORE", key, b"0", payload])
    assert restored.used_memory() == _SOURCE.used_memory()


def test_restore_replays_from_the_log_to_the_same_values(tmp_path: Path) -> None:
    store = PersistentStore(str(tmp_path), "no")
    for key in _SOURCE.keys(b"*"):
        payload = _dumped(_SOURCE, key)
        store.execute_command([b"RESTORE", b"r:" + key, b"0", payload])
    store.set(b"old", b"x")
    payload = D.serialize(b"v", ENC)
    store.execute_command([b"RESTORE", b"old", b"99999999999999", payload, b"ABSTTL",
                           b"REPLACE"])
    store.execute_command([b"RESTORE", b"ttl", b"100000", payload])
    store.set(b"gone", b"x")
    store.execute_command([b"RESTORE", b"gone", b"1", payload, b"ABSTTL", b"REPLACE"])
    before = {k: (_dumped(store, k), store.expire_at(k))
              for k in store.keys(b"*")}
    used = store.used_memory()
    store.close()
    again = PersistentStore(str(tmp_path), "no")
    try:
        assert {k: (_dumped(again, k), again.expire_at(k))
                for k in again.keys(b"*")} == before
        assert again.lookup(b"gone") is None
        assert again.expire_at(b"old") == 99999999999999
        assert again.used_memory() == used
    finally:
        again.close()


def test_crc64_and_listpack_match_redis_definitions() -> None:
    # crc64.c's own test vector.
    assert rdb.crc64(b"123456789") == 0xE9C6D914C4B8D9CA
    items: list[bytes | int] = [0, 127, 128, -4096, 4095, 4096, -(1 << 15), (1 << 15) - 1,
                                1 << 23, -(1 << 31), 1 << 40, -(1 << 63), b"", b"x" * 63,
                                b"y" * 64, b"z" * 4095, b"w" * 4096, b"q" * 20000]
    assert rdb.read_listpack(rdb.listpack(items)) == items
