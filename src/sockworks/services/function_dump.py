"""FUNCTION DUMP / RESTORE payloads in Redis 7's format (sans-IO).

Redis's payload is a piece of RDB: per library the opcode
``RDB_OPCODE_FUNCTION2`` (245) and the library's code as an RDB string,
then the RDB version (2 bytes, little-endian; 10 for Redis 7.0) and a CRC64
(Jones polynomial, reflected, as Redis's crc64.c; 8 bytes little-endian) of
everything before it. :func:`dump` writes that (strings uncompressed, which
every Redis reads); :func:`parse` reads it, including the LZF-compressed
strings Redis writes for code longer than 20 bytes when compression saves
space, so payloads go both ways between this server and Redis 7.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

__all__ = ["PayloadError", "RDB_VERSION", "crc64", "dump", "parse"]

#: Redis 7.0's RDB_VERSION: what a dump carries, the newest one restored.
RDB_VERSION: Final = 10
_FUNCTION2: Final = 245
_FUNCTION: Final = 246  # 7.0 release candidates' format: refused here
_POLY: Final = 0x95AC9329AC4BC9B5  # 0xad93d23594c935a9 reflected


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE: Final = _table()


class PayloadError(ValueError):
    """The payload does not parse: ``str(exc)`` is Redis's error text."""


def crc64(data: bytes, crc: int = 0) -> int:
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def _rdb_string(data: bytes) -> bytes:
    n = len(data)
    if n < 1 << 6:
        head = bytes((n,))
    elif n < 1 << 14:
        head = bytes((0x40 | (n >> 8), n & 0xFF))
    elif n <= 0xFFFFFFFF:
        head = b"\x80" + struct.pack(">I", n)
    else:
        head = b"\x81" + struct.pack(">Q", n)
    return head + data


def dump(codes: Iterable[bytes]) -> bytes:
    body = b"".join(bytes((_FUNCTION2,)) + _rdb_string(code) for code in codes)
    body += struct.pack("<H", RDB_VERSION)
    return body + struct.pack("<Q", crc64(body))


def parse(payload: bytes) -> list[bytes]:
    """The libraries' code in ``payload``; PayloadError with Redis's text."""
    if len(payload) < 10:
        raise PayloadError("DUMP payload version or checksum are wrong")
    (version,) = struct.unpack_from("<H", payload, len(payload) - 10)
    (crc,) = struct.unpack_from("<Q", payload, len(payload) - 8)
    if version > RDB_VERSION or crc64(payload[:-8]) != crc:
        raise PayloadError("DUMP payload version or checksum are wrong")
    codes: list[bytes] = []
    pos, end = 0, len(payload) - 10
    while pos < end:
        kind = payload[pos]
        pos += 1
        if kind != _FUNCTION2:
            raise PayloadError("given type is not a function")
        try:
            code, pos = _read_string(payload, pos, end)
        except (IndexError, struct.error, ValueError):
            raise PayloadError("Failed loading library payload") from None
        codes.append(code)
    return codes


def _read_length(data: bytes, pos: int) -> tuple[int, bool, int]:
    """(length or encoding, whether it is an encoding, new pos)."""
    first = data[pos]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, False, pos + 1
    if kind == 1:
        return ((first & 0x3F) << 8) | data[pos + 1], False, pos + 2
    if kind == 3:
        return first & 0x3F, True, pos + 1
    if first == 0x80:
        return struct.unpack_from(">I", data, pos + 1)[0], False, pos + 5
    if first == 0x81:
        return struct.unpack_from(">Q", data, pos + 1)[0], False, pos + 9
    raise ValueError("bad length")


def _read_string(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    length, encoded, pos = _read_length(data, pos)
    if not encoded:
        if pos + length > end:
            raise ValueError("short")
        return data[pos:pos + length], pos + length
    if length in (0, 1, 2):  # integers stored as 1, 2, 4 bytes
        size = 1 << length
        number = int.from_bytes(data[pos:pos + size], "little", signed=True)
        return b"%d" % number, pos + size
    if length == 3:  # LZF
        clen, _, pos = _read_length(data, pos)
        ulen, _, pos = _read_length(data, pos)
        if pos + clen > end:
            raise ValueError("short")
        return _lzf_decompress(data[pos:pos + clen], ulen), pos + clen
    raise ValueError("unknown string encoding")


def _lzf_decompress(data: bytes, size: int) -> bytes:
    out = bytearray()
    pos = 0
    while pos < len(data):
        ctrl = data[pos]
        pos += 1
        if ctrl < 32:  # a literal run of ctrl + 1 bytes
            out += data[pos:pos + ctrl + 1]
            pos += ctrl + 1
        else:  # a back reference
            length = ctrl >> 5
            if length == 7:
                length += data[pos]
                pos += 1
            ref = len(out) - ((ctrl & 0x1F) << 8) - data[pos] - 1
            pos += 1
            if ref < 0:
                raise ValueError("bad back reference")
            for _ in range(length + 2):
                out.append(out[ref])
                ref += 1
        if len(out) > size:
            raise ValueError("too long")
    if len(out) != size:
        raise ValueError("wrong size")
    return bytes(out)
