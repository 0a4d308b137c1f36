"""Pieces of Redis 7.0's RDB format that DUMP, RESTORE and FUNCTION DUMP share (sans-IO).

A DUMP payload is one serialized object, then the RDB version (2 bytes,
little-endian) and a CRC64 (Jones polynomial, reflected, as Redis's
crc64.c; 8 bytes little-endian) of everything before it. Here:

* :func:`crc64`, :data:`RDB_VERSION`, :func:`seal` (add the footer) and
  :func:`unseal` (check it: Redis's verifyDumpPayload);
* :class:`Reader`, a cursor over a payload that checks every length, count
  and offset against what is left *before* anything is read or built, and
  decodes RDB lengths, strings (plain, integer and LZF-compressed, the LZF
  output bounded by the declared size and by a budget for the whole
  payload), doubles and millisecond times;
* writers for lengths and strings (:func:`length`, :func:`string`);
* the packed containers found inside objects: listpacks (read, with the
  checks of Redis's deep sanitization, ``lpValidateIntegrity``, and
  written), ziplists (read, the pre-7.0 encodings) and intsets (read).

Every malformed input raises :class:`RdbError`; nothing here allocates in
proportion to a number read from the payload (a count is first checked
against the bytes left: every element takes at least one byte).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable, Sequence
from typing import Final

from sockworks.protocols import accel

__all__ = [
    "LZF_MAX_RATIO", "RDB_VERSION", "BudgetError", "RdbError", "Reader", "crc64", "crc64_pure",
    "length",
    "listpack", "read_intset", "read_listpack", "read_ziplist", "seal", "string", "unseal",
]

#: Redis 7.0's RDB_VERSION: what a dump carries, the newest one restored.
RDB_VERSION: Final = 10
_POLY: Final = 0x95AC9329AC4BC9B5  # 0xad93d23594c935a9 reflected
_FOOTER: Final = 10  # 2 bytes of version, 8 of CRC64


class RdbError(ValueError):
    """The bytes are not a valid RDB object (the message says where)."""


class BudgetError(RdbError):
    """Decompressing would make more bytes than the reader's budget."""


#: The most bytes LZF makes of one input byte: a 3-byte back reference
#: copies up to 264 bytes (lzf_d.c). A payload of n bytes decompresses to
#: at most n times this, so a budget above that needs no check.
LZF_MAX_RATIO: Final = 88


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE: Final = _table()


def crc64_pure(data: bytes, crc: int = 0) -> int:
    """Redis's crc64 (crc64.c) of ``data``: the reference (~14 MB/s) that
    the compiled one (_crc64.pyx, ~1 GB/s) must match."""
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


#: Redis's crc64 of ``data``: compiled when built and not disabled (accel.py).
crc64 = crc64_pure if accel.CRC64 is None else accel.CRC64.crc64


def seal(body: bytes) -> bytes:
    """``body`` with the DUMP footer: the RDB version and the CRC64."""
    body += struct.pack("<H", RDB_VERSION)
    return body + struct.pack("<Q", crc64(body))


def unseal(payload: bytes) -> bytes | None:
    """The body of a payload whose footer is valid (version not newer than
    ours, CRC64 right); None otherwise (Redis's verifyDumpPayload)."""
    if len(payload) < _FOOTER:
        return None
    (version,) = struct.unpack_from("<H", payload, len(payload) - _FOOTER)
    (crc,) = struct.unpack_from("<Q", payload, len(payload) - 8)
    if version > RDB_VERSION or crc64(payload[:-8]) != crc:
        return None
    return payload[:-_FOOTER]


# -- writing --------------------------------------------------------------------------

def length(n: int) -> bytes:
    """An RDB length (rdbSaveLen)."""
    if n < 1 << 6:
        return bytes((n,))
    if n < 1 << 14:
        return bytes((0x40 | (n >> 8), n & 0xFF))
    if n <= 0xFFFFFFFF:
        return b"\x80" + struct.pack(">I", n)
    return b"\x81" + struct.pack(">Q", n)


def string(data: bytes) -> bytes:
    """An RDB string, stored plain (every Redis reads it)."""
    return length(len(data)) + data


def _backlen(n: int) -> bytes:
    """A listpack entry's size written to be read backwards (lpEncodeBacklen):
    the rightmost byte holds the lowest 7 bits, and every byte but the
    leftmost has the high bit set."""
    if n <= 127:
        return bytes((n,))
    size = 2 if n < 16383 else 3 if n < 2097151 else 4 if n < 268435455 else 5
    groups = [(n >> (7 * i)) & 127 for i in range(size)]
    groups[-1] = n >> (7 * (size - 1))
    return bytes((groups[-1],)) + bytes(g | 128 for g in reversed(groups[:-1]))


def _lp_entry(item: bytes | int) -> bytes:
    if isinstance(item, int):
        if 0 <= item < 128:
            body = bytes((item,))
        elif -4096 <= item < 4096:
            u = item & 0x1FFF
            body = bytes((0xC0 | (u >> 8), u & 0xFF))
        elif -(1 << 15) <= item < 1 << 15:
            body = b"\xf1" + struct.pack("<h", item)
        elif -(1 << 23) <= item < 1 << 23:
            body = b"\xf2" + (item & 0xFFFFFF).to_bytes(3, "little")
        elif -(1 << 31) <= item < 1 << 31:
            body = b"\xf3" + struct.pack("<i", item)
        else:
            body = b"\xf4" + struct.pack("<q", item)
    else:
        n = len(item)
        if n < 64:
            body = bytes((0x80 | n,)) + item
        elif n < 4096:
            body = bytes((0xE0 | (n >> 8), n & 0xFF)) + item
        else:
            body = b"\xf0" + struct.pack("<I", n) + item
    return body + _backlen(len(body))


def listpack(items: Iterable[bytes | int]) -> bytes:
    """A listpack of ``items`` (ints stored as integers)."""
    entries = [_lp_entry(item) for item in items]
    count = len(entries) if len(entries) < 0xFFFF else 0xFFFF
    body = b"".join(entries)
    return struct.pack("<IH", 6 + len(body) + 1, count) + body + b"\xff"


# -- reading --------------------------------------------------------------------------

class Reader:
    """A bounded cursor over ``data``. ``budget``: how many bytes LZF
    decompression may produce in all (a payload of a few bytes cannot make
    the server allocate gigabytes)."""

    __slots__ = ("budget", "data", "end", "pos")

    def __init__(self, data: bytes, budget: int) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.budget = budget

    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.end - self.pos:
            raise RdbError("read past the end of the payload")
        start = self.pos
        self.pos += n
        return self.data[start:self.pos]

    def byte(self) -> int:
        if self.pos >= self.end:
            raise RdbError("read past the end of the payload")
        self.pos += 1
        return self.data[self.pos - 1]

    def _length(self) -> tuple[int, bool]:
        first = self.byte()
        kind = first >> 6
        if kind == 0:
            return first & 0x3F, False
        if kind == 1:
            return ((first & 0x3F) << 8) | self.byte(), False
        if kind == 3:
            return first & 0x3F, True
        if first == 0x80:
            return struct.unpack(">I", self.take(4))[0], False
        if first == 0x81:
            return struct.unpack(">Q", self.take(8))[0], False
        raise RdbError("unknown length encoding")

    def length(self) -> int:
        """An RDB length (an 'encoded' one reads as its 6 bits, as Redis's
        rdbLoadLen without isencoded)."""
        return self._length()[0]

    def count(self, min_size: int) -> int:
        """A count of elements of at least ``min_size`` bytes each, refused
        if what is left cannot hold that many (so no loop runs longer than
        the payload and nothing is sized by a forged count)."""
        n = self.length()
        if n * min_size > self.end - self.pos:
            raise RdbError("count larger than the payload")
        return n

    def string(self) -> bytes:
        """An RDB string: plain, an integer (1, 2 or 4 bytes) or LZF."""
        n, encoded = self._length()
        if not encoded:
            return self.take(n)
        if n in (0, 1, 2):
            size = 1 << n
            return b"%d" % int.from_bytes(self.take(size), "little", signed=True)
        if n == 3:
            clen = self.length()
            ulen = self.length()
            if clen > self.end - self.pos:
                raise RdbError("compressed string longer than the payload")
            if ulen > self.budget:
                raise BudgetError("compressed string larger than allowed")
            self.budget -= ulen
            return lzf_decompress(self.take(clen), ulen)
        raise RdbError("unknown string encoding")

    def binary_double(self) -> float:
        return float(struct.unpack("<d", self.take(8))[0])

    def text_double(self) -> float:
        """The pre-RDB-8 double: a length byte (253 nan, 254 inf, 255 -inf)
        and the number as text (sscanf %lg)."""
        n = self.byte()
        if n == 255:
            return float("-inf")
        if n == 254:
            return float("inf")
        if n == 253:
            return float("nan")
        text = self.take(n)
        try:
            return float(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise RdbError("bad double") from None

    def millis(self) -> int:
        return int(struct.unpack("<q", self.take(8))[0])


def lzf_decompress(data: bytes, size: int) -> bytes:
    """LZF (lzf_d.c) of exactly ``size`` bytes; RdbError if the input runs
    out, refers before the start, or makes more or fewer bytes."""
    out = bytearray()
    pos, end = 0, len(data)
    while pos < end:
        ctrl = data[pos]
        pos += 1
        if ctrl < 32:  # a literal run of ctrl + 1 bytes
            run = ctrl + 1
            if pos + run > end:
                raise RdbError("LZF literal past the input")
            if len(out) + run > size:
                raise RdbError("LZF output larger than declared")
            out += data[pos:pos + run]
            pos += run
            continue
        n = ctrl >> 5  # a back reference of n + 2 bytes
        if n == 7:
            if pos >= end:
                raise RdbError("LZF reference past the input")
            n += data[pos]
            pos += 1
        if pos >= end:
            raise RdbError("LZF reference past the input")
        ref = len(out) - ((ctrl & 0x1F) << 8) - data[pos] - 1
        pos += 1
        n += 2
        if len(out) + n > size:
            raise RdbError("LZF output larger than declared")
        if ref < 0:
            raise RdbError("LZF reference before the start")
        if ref + n <= len(out):
            out += out[ref:ref + n]
        else:  # overlapping: a repeated pattern
            for i in range(n):
                out.append(out[ref + i])
    if len(out) != size:
        raise RdbError("Invalid LZF compressed string")
    return bytes(out)


_LP_INT_SIZES: Final = {0xF1: 2, 0xF2: 3, 0xF3: 4, 0xF4: 8}


def _decode_backlen(data: bytes, last: int) -> tuple[int, int]:
    """(value, bytes used) of the backlen ending at ``last``."""
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


def _backlen_size(n: int) -> int:
    """How many bytes lpEncodeBacklen takes for an entry of ``n`` bytes."""
    return 1 if n <= 127 else 2 if n < 16383 else 3 if n < 2097151 else 4 if n < 268435455 else 5


def read_listpack(data: bytes) -> list[bytes | int]:
    """The items of a listpack (integers as ints), with Redis's deep
    checks: header size, terminator, every entry inside the buffer with a
    back length equal to its size, the element count.

    One loop, no call per entry for the common ones: a small integer or a
    string of up to 63 bytes (an entry under 128 bytes, so its back length
    is one byte equal to its size) is checked and sliced in place; the
    other encodings take the general path below."""
    if len(data) < 7:
        raise RdbError("listpack too short")
    total, numele = struct.unpack_from("<IH", data, 0)
    if total != len(data) or data[-1] != 0xFF:
        raise RdbError("listpack header does not match its size")
    items: list[bytes | int] = []
    append = items.append
    pos, end = 6, len(data) - 1
    while pos < end:
        b = data[pos]
        if b < 0xC0:
            # 0xxxxxxx: a 7-bit integer (1 byte); 10nnnnnn: a string of n bytes.
            back = pos + 1 + (b & 0x3F) if b & 0x80 else pos + 1
            # The back length byte must be inside and say the entry's size
            # (a byte with the high bit set would be a longer back length).
            if back >= end or data[back] != back - pos:
                raise RdbError("listpack back length does not match its entry")
            append(data[pos + 1:back] if b & 0x80 else b)
            pos = back + 1
            continue
        item: bytes | int
        if b < 0xE0:
            if pos + 2 > end:
                raise RdbError("listpack entry past the end")
            u = ((b & 0x1F) << 8) | data[pos + 1]
            size, item = 2, u - (1 << 13) if u >= 1 << 12 else u
        elif b < 0xF0:
            if pos + 2 > end:
                raise RdbError("listpack entry past the end")
            size = 2 + (((b & 0x0F) << 8) | data[pos + 1])
            item = data[pos + 2:pos + size]
        elif b == 0xF0:
            if pos + 5 > end:
                raise RdbError("listpack entry past the end")
            (n,) = struct.unpack_from("<I", data, pos + 1)
            size = 5 + n
            item = data[pos + 5:pos + size]
        elif b in _LP_INT_SIZES:
            size = 1 + _LP_INT_SIZES[b]
            if pos + size > end:
                raise RdbError("listpack entry past the end")
            item = int.from_bytes(data[pos + 1:pos + size], "little", signed=True)
        else:
            raise RdbError("bad listpack entry encoding")
        # The back length follows the entry: find how many bytes it takes
        # for this size and check that it says this size.
        want = _backlen_size(size)
        if pos + size + want > end:
            raise RdbError("listpack entry past the end")
        back, used = _decode_backlen(data, pos + size + want - 1)
        if back != size or used != want:
            raise RdbError("listpack back length does not match its entry")
        append(item)
        pos += size + want
    if pos != end:
        raise RdbError("listpack entries past the end")
    if numele != 0xFFFF and numele != len(items):
        raise RdbError("listpack element count is wrong")
    return items


def read_ziplist(data: bytes) -> list[bytes]:
    """The items of a ziplist (Redis before 7.0), with ziplist.c's deep
    checks: header size, tail offset, terminator, each entry's prevlen."""
    if len(data) < 11:
        raise RdbError("ziplist too short")
    total, tail, count = struct.unpack_from("<IIH", data, 0)
    if total != len(data) or data[-1] != 0xFF or tail > len(data) - 1:
        raise RdbError("ziplist header does not match its size")
    items: list[bytes] = []
    pos, end, prev, last = 10, len(data) - 1, 0, 10
    while pos < end:
        start = pos
        if data[pos] < 0xFE:
            prevlen, pos = data[pos], pos + 1
        elif data[pos] == 0xFE and pos + 5 <= end:
            (prevlen,) = struct.unpack_from("<I", data, pos + 1)
            pos += 5
        else:
            raise RdbError("bad ziplist prevlen")
        if prevlen != prev or pos >= end:
            raise RdbError("ziplist prevlen does not match")
        b = data[pos]
        kind = b >> 6
        if kind == 0:
            n, pos = b & 0x3F, pos + 1
        elif kind == 1:
            if pos + 2 > end:
                raise RdbError("ziplist entry past the end")
            n, pos = ((b & 0x3F) << 8) | data[pos + 1], pos + 2
        elif b == 0x80:
            if pos + 5 > end:
                raise RdbError("ziplist entry past the end")
            (n,) = struct.unpack_from(">I", data, pos + 1)
            pos += 5
        elif kind == 2:
            raise RdbError("bad ziplist encoding")
        else:
            n = -1
        if n >= 0:
            if pos + n > end:
                raise RdbError("ziplist entry past the end")
            items.append(data[pos:pos + n])
            pos += n
        else:
            width = {0xC0: 2, 0xD0: 4, 0xE0: 8, 0xF0: 3, 0xFE: 1}.get(b)
            if width is None:
                if not 0xF1 <= b <= 0xFD:
                    raise RdbError("bad ziplist encoding")
                items.append(b"%d" % ((b & 0x0F) - 1))
                pos += 1
            else:
                if pos + 1 + width > end:
                    raise RdbError("ziplist entry past the end")
                number = int.from_bytes(data[pos + 1:pos + 1 + width], "little", signed=True)
                items.append(b"%d" % number)
                pos += 1 + width
        prev, last = pos - start, start
    if pos != end or (items and tail != last) or (not items and tail != 10):
        raise RdbError("ziplist tail offset is wrong")
    if count != 0xFFFF and count != len(items):
        raise RdbError("ziplist element count is wrong")
    return items


def read_intset(data: bytes) -> list[int]:
    """The members of an intset, checked as intsetValidateIntegrity (deep):
    a valid width, the size it implies, strictly increasing members."""
    if len(data) < 8:
        raise RdbError("intset too short")
    width, count = struct.unpack_from("<II", data, 0)
    if width not in (2, 4, 8) or 8 + width * count != len(data):
        raise RdbError("intset header does not match its size")
    fmt = {2: "<%dh", 4: "<%di", 8: "<%dq"}[width] % count
    members: Sequence[int] = struct.unpack_from(fmt, data, 8)
    for a, b in itertools.pairwise(members):
        if a >= b:
            raise RdbError("intset not sorted")
    return list(members)
