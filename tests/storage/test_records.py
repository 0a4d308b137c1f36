"""The log record codec (sans-IO): encode/decode round trips and how a
damaged image is classified, torn tail vs corruption, at every cut point."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockworks.storage import records
from sockworks.storage.records import (
    MAGIC,
    OP_DEL,
    OP_EXPIREAT,
    OP_FLUSH,
    OP_PERSIST,
    OP_SET,
    RecordError,
    frame,
    iter_ops,
    scan_log,
)


def image_of(payloads: list[bytes]) -> tuple[bytes, list[int]]:
    """A log image and the offset where each record starts (plus the end)."""
    parts = [MAGIC]
    starts = []
    offset = len(MAGIC)
    for payload in payloads:
        starts.append(offset)
        rec = frame(payload)
        parts.append(rec)
        offset += len(rec)
    starts.append(offset)
    return b"".join(parts), starts


PAYLOADS = [
    records.encode_set(b"k%d" % i, b"v" * i, 0 if i % 2 else 1_700_000_000_000 + i)
    for i in range(12)
] + [records.encode_del([b"a", b"b"]), records.encode_flush()]


def test_ops_round_trip() -> None:
    payload = b"".join([
        records.encode_set(b"\x00key\n", bytes(range(256)), 123),
        records.encode_sets([(b"a", b"1"), (b"b", b"")]),
        records.encode_del([b"x", b"y"]),
        records.encode_expireat(b"k", 2**62),
        records.encode_persist(b"k"),
        records.encode_flush(),
    ])
    assert list(iter_ops(payload)) == [
        (OP_SET, b"\x00key\n", bytes(range(256)), 123),
        (OP_SET, b"a", b"1", 0),
        (OP_SET, b"b", b"", 0),
        (OP_DEL, b"x", b"", 0),
        (OP_DEL, b"y", b"", 0),
        (OP_EXPIREAT, b"k", b"", 2**62),
        (OP_PERSIST, b"k", b"", 0),
        (OP_FLUSH, b"", b"", 0),
    ]


@pytest.mark.parametrize("bad", [b"Z", b"S\x05\x00\x00\x00ab", b"S\x01\x00\x00\x00k\x09\x00",
                                 b"E\x01\x00\x00\x00k\x01"])
def test_malformed_ops_raise(bad: bytes) -> None:
    with pytest.raises(RecordError):
        list(iter_ops(bad))


@given(st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=50),
                          st.integers(0, 2**63 - 1)), max_size=10))
def test_set_round_trip_property(items: list[tuple[bytes, bytes, int]]) -> None:
    payload = b"".join(records.encode_set(k, v, at) for k, v, at in items)
    assert list(iter_ops(payload)) == [(OP_SET, k, v, at) for k, v, at in items]


def test_clean_image() -> None:
    image, starts = image_of(PAYLOADS)
    scan = scan_log(image)
    assert scan.good_end == len(image)
    assert not scan.torn and scan.corrupt_at is None
    assert [p - records.HEADER.size for p, _ in scan.records] == starts[:-1]


def test_every_cut_point_is_a_torn_tail() -> None:
    image, starts = image_of(PAYLOADS)
    for cut in range(len(MAGIC), len(image)):
        scan = scan_log(image[:cut])
        complete = sum(1 for end in starts[1:] if end <= cut)
        assert len(scan.records) == complete, cut
        assert scan.good_end == starts[complete]
        assert scan.torn == (cut != starts[complete])
        assert scan.corrupt_at is None


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300))
def test_garbage_after_the_end_is_torn(garbage: bytes) -> None:
    image, _ = image_of(PAYLOADS)
    scan = scan_log(image + garbage)
    # Unless the garbage happens to hold a whole valid record (2**-32 odds),
    # every original record survives and the garbage is the torn tail.
    assert len(scan.records) >= len(PAYLOADS)
    assert scan.corrupt_at is None


def test_each_damaged_record_before_the_last_is_corruption() -> None:
    image, starts = image_of(PAYLOADS)
    rng = random.Random(7)
    for index in range(len(PAYLOADS) - 1):
        start, end = starts[index], starts[index + 1]
        damaged = bytearray(image)
        pos = rng.randrange(start, end)
        damaged[pos] ^= 1 << rng.randrange(8)
        scan = scan_log(bytes(damaged))
        assert scan.corrupt_at == start, (index, pos)
        assert len(scan.records) == index
        assert not scan.torn


def test_damaged_last_record_is_torn() -> None:
    image, starts = image_of(PAYLOADS)
    for pos in range(starts[-2], starts[-1]):
        damaged = bytearray(image)
        damaged[pos] ^= 0x40
        scan = scan_log(bytes(damaged))
        assert scan.torn and scan.corrupt_at is None, pos
        assert scan.good_end == starts[-2]
