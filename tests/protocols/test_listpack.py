"""rdb.read_listpack's tight loop against a plain reference decoder (the
per-entry implementation it replaced): the same items from any listpack
rdb.listpack writes, and the same verdict -- the same items or RdbError --
on every corruption of one (a flipped, cut, inserted or removed byte)."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from sockworks.protocols import rdb
from sockworks.protocols.rdb import RdbError

_INT_SIZES = {0xF1: 2, 0xF2: 3, 0xF3: 4, 0xF4: 8}


def _backlen_size(n: int) -> int:
    return len(rdb._backlen(n))


def _decode_backlen(data: bytes, last: int) -> tuple[int, int]:
    value, shift, used = 0, 0, 0
    while True:
        if last - used < 0 or used >= 5:
            raise RdbError("bad listpack back length")
        b = data[last - used]
        value |= (b & 127) << shift
        used += 1
        shift += 7
        if not b & 128:
            return value, used


def reference(data: bytes) -> list[bytes | int]:
    """One entry at a time, every check spelled out (the previous code)."""
    if len(data) < 7:
        raise RdbError("listpack too short")
    total, numele = struct.unpack_from("<IH", data, 0)
    if total != len(data) or data[-1] != 0xFF:
        raise RdbError("listpack header does not match its size")
    items: list[bytes | int] = []
    pos, end = 6, len(data) - 1
    while pos < end:
        b = data[pos]
        item: bytes | int
        if b < 0x80:
            size, item = 1, b
        elif b < 0xC0:
            size = 1 + (b & 0x3F)
            item = data[pos + 1:pos + size]
        elif b < 0xE0:
            if pos + 2 > end:
                raise RdbError("past the end")
            u = ((b & 0x1F) << 8) | data[pos + 1]
            size, item = 2, u - (1 << 13) if u >= 1 << 12 else u
        elif b < 0xF0:
            if pos + 2 > end:
                raise RdbError("past the end")
            size = 2 + (((b & 0x0F) << 8) | data[pos + 1])
            item = data[pos + 2:pos + size]
        elif b == 0xF0:
            if pos + 5 > end:
                raise RdbError("past the end")
            size = 5 + struct.unpack_from("<I", data, pos + 1)[0]
            item = data[pos + 5:pos + size]
        elif b in _INT_SIZES:
            size = 1 + _INT_SIZES[b]
            item = int.from_bytes(data[pos + 1:pos + size], "little", signed=True)
        else:
            raise RdbError("bad encoding")
        if pos + size > end:
            raise RdbError("past the end")
        want = _backlen_size(size)
        if pos + size + want > end:
            raise RdbError("past the end")
        back, used = _decode_backlen(data, pos + size + want - 1)
        if back != size or used != want:
            raise RdbError("back length")
        items.append(item)
        pos += size + want
    if pos != end:
        raise RdbError("past the end")
    if numele != 0xFFFF and numele != len(items):
        raise RdbError("count")
    return items


def _verdict(fn: object, data: bytes) -> object:
    try:
        return fn(data)  # type: ignore[operator]  # one of the two decoders
    except RdbError:
        return RdbError


_ITEMS = st.lists(st.one_of(
    st.integers(0, 127), st.integers(-4096, 4095), st.integers(-(1 << 15), (1 << 15) - 1),
    st.integers(-(1 << 23), (1 << 23) - 1), st.integers(-(1 << 31), (1 << 31) - 1),
    st.integers(-(1 << 63), (1 << 63) - 1),
    st.binary(max_size=70), st.binary(min_size=120, max_size=300),
), max_size=30)


@settings(max_examples=300, deadline=None)
@given(_ITEMS)
def test_what_listpack_writes_reads_back(items: list[bytes | int]) -> None:
    data = rdb.listpack(items)
    assert rdb.read_listpack(data) == items == reference(data)


def test_long_strings_read_back() -> None:
    items: list[bytes | int] = [b"x" * 4095, b"y" * 4096, b"z" * 20000, 5, b""]
    assert rdb.read_listpack(rdb.listpack(items)) == items


@settings(max_examples=500, deadline=None)
@given(_ITEMS, st.integers(0, 1 << 20), st.integers(0, 255), st.sampled_from(
    ["flip", "set", "cut", "insert", "remove"]), st.booleans())
def test_a_corrupted_listpack_gets_the_reference_verdict(
        items: list[bytes | int], where: int, byte: int, how: str, fix_header: bool) -> None:
    data = bytearray(rdb.listpack(items))
    i = where % len(data)
    if how == "flip":
        data[i] ^= 1 << (byte % 8)
    elif how == "set":
        data[i] = byte
    elif how == "cut":
        del data[i:]
    elif how == "insert":
        data.insert(i, byte)
    else:
        del data[i]
    if fix_header and len(data) >= 6:
        # Keep the total size right, so the entries themselves are checked.
        data[0:4] = struct.pack("<I", len(data))
    raw = bytes(data)
    assert _verdict(rdb.read_listpack, raw) == _verdict(reference, raw)
