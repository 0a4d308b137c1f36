"""The compiled CRC64 (protocols/_crc64.pyx) against the pure-Python reference.

The suite runs twice in CI (.ci/run): compiled, then with
``SOCKWORKS_NO_EXTENSIONS=1``; each run checks that ``rdb.crc64`` is the one
asked for, and under CI=true that the extension was built.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockworks.protocols import accel, rdb

COMPILED = accel.compiled("sockworks.protocols._crc64")


def test_the_requested_crc64_is_the_one_in_use() -> None:
    if accel.disabled():
        assert accel.CRC64 is None
        assert rdb.crc64 is rdb.crc64_pure
        return
    if os.environ.get("CI") == "true":
        assert COMPILED is not None, "the CRC64 extension was not built"
    if COMPILED is None:
        assert rdb.crc64 is rdb.crc64_pure
    else:
        assert accel.CRC64 is COMPILED
        assert rdb.crc64 is COMPILED.crc64


def test_the_crc64_test_vector() -> None:
    # crc64.c's own test vector, on both implementations.
    assert rdb.crc64_pure(b"123456789") == 0xE9C6D914C4B8D9CA
    assert rdb.crc64(b"123456789") == 0xE9C6D914C4B8D9CA
    assert rdb.crc64(b"") == 0
    if COMPILED is not None:
        assert COMPILED.crc64(b"123456789") == 0xE9C6D914C4B8D9CA


needs_compiled = pytest.mark.skipif(
    COMPILED is None and os.environ.get("CI") != "true",
    reason="the CRC64 extension was not built (no C compiler)")


@needs_compiled
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, (1 << 64) - 1), st.integers(0, 7))
def test_compiled_equals_pure(data: bytes, seed: int, skip: int) -> None:
    """Every length (the 8-byte steps and the tail), any starting CRC,
    any alignment of the buffer (a memoryview slice)."""
    assert COMPILED is not None
    view = memoryview(data)[skip:]
    assert COMPILED.crc64(view, seed) == rdb.crc64_pure(bytes(view), seed)
    assert COMPILED.crc64(data) == rdb.crc64_pure(data)
    assert COMPILED.crc64(bytearray(data)) == rdb.crc64_pure(data)


@needs_compiled
def test_compiled_equals_pure_on_a_long_buffer_and_in_pieces() -> None:
    assert COMPILED is not None
    data = bytes(range(256)) * 257 + b"tail"
    whole = rdb.crc64_pure(data)
    assert COMPILED.crc64(data) == whole
    # Chaining: the CRC of the rest continues from the CRC of the start.
    assert COMPILED.crc64(data[1001:], COMPILED.crc64(data[:1001])) == whole
