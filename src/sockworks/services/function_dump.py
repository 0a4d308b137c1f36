"""FUNCTION DUMP / RESTORE payloads in Redis 7's format (sans-IO).

Redis's payload is a piece of RDB: per library the opcode
``RDB_OPCODE_FUNCTION2`` (245) and the library's code as an RDB string,
then the RDB footer (version and CRC64, protocols/rdb.py, which DUMP and
RESTORE share). :func:`dump` writes that (strings uncompressed, which
every Redis reads); :func:`parse` reads it, including the LZF-compressed
strings Redis writes for code longer than 20 bytes when compression saves
space, so payloads go both ways between this server and Redis 7.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from sockworks.protocols import rdb
from sockworks.protocols.rdb import RDB_VERSION, crc64
from sockworks.storage.model.dump import MAX_DECODED

__all__ = ["PayloadError", "RDB_VERSION", "crc64", "dump", "parse"]

_FUNCTION2: Final = 245
_FUNCTION: Final = 246  # 7.0 release candidates' format: refused here


class PayloadError(ValueError):
    """The payload does not parse: ``str(exc)`` is Redis's error text."""


def dump(codes: Iterable[bytes]) -> bytes:
    return rdb.seal(b"".join(bytes((_FUNCTION2,)) + rdb.string(code) for code in codes))


def parse(payload: bytes) -> list[bytes]:
    """The libraries' code in ``payload``; PayloadError with Redis's text."""
    body = rdb.unseal(payload)
    if body is None:
        raise PayloadError("DUMP payload version or checksum are wrong")
    codes: list[bytes] = []
    reader = rdb.Reader(body, MAX_DECODED)
    while reader.left():
        if reader.byte() != _FUNCTION2:
            raise PayloadError("given type is not a function")
        try:
            codes.append(reader.string())
        except rdb.RdbError:
            raise PayloadError("Failed loading library payload") from None
    return codes
