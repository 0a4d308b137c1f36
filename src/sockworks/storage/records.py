"""The append-only log's record format: encode writes, decode a log image.

Sans-IO: bytes in, operations out; no files here (aof.py does the I/O). The
format is documented in docs/storage.md; in short::

    file    := MAGIC record*
    record  := u32 payload_len | u32 crc32(payload) | payload     (little-endian)
    payload := op+
    op      := 'S' u32 klen key u32 vlen value i64 expire_at_ms   SET (0 = no expiry)
             | 'D' u32 klen key                                   DEL
             | 'E' u32 klen key i64 expire_at_ms                  EXPIREAT
             | 'P' u32 klen key                                   PERSIST
             | 'F'                                                FLUSHDB
             | 'C' u32 argc (u32 len arg)*                        a command (data model)

A 'C' op holds one data-model command as its argv (``HSET key f v``,
``RPUSH key a b``, ``ZADD key 1 m``, ``DEL key``, ``RENAME a b``...): replay
runs it through the same code as a client's command (storage/model). A
command is logged in a form whose replay is deterministic: SPOP logs the
``SREM`` of what it removed, the *STORE commands ``DEL dst`` plus the
result. Logs written before 'C' existed hold only S/D/E/P/F ops and still
load. A compacted log writes each key in its shortest form
(:func:`value_commands`: one SET, RPUSH, HSET, SADD or ZADD with every
element, then its expiry).

A record holds the *effects* of one write (INCR logs the resulting SET; MSET
logs all its SETs in one record, so it replays all-or-nothing). Expiry times
are absolute wall-clock milliseconds, so a TTL keeps counting across restarts.

:func:`scan_log` splits an image into records and classifies a bad one: a bad
record with nothing valid after it is a *torn tail* (a crash mid-write; cut it
off), a bad record followed by a valid one is *corruption* (refuse to start).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HEADER",
    "MAGIC",
    "MAX_PAYLOAD",
    "OP_DEL",
    "OP_EXPIREAT",
    "OP_CMD",
    "OP_FLUSH",
    "OP_PERSIST",
    "OP_SET",
    "LogScan",
    "RecordError",
    "decode_args",
    "encode_command",
    "encode_del",
    "encode_expireat",
    "encode_flush",
    "encode_persist",
    "encode_set",
    "encode_sets",
    "frame",
    "iter_ops",
    "scan_log",
    "value_commands",
]

#: File signature and format version; a file without it is not our log.
MAGIC = b"SWAOF\x00\x01\n"
HEADER = struct.Struct("<II")
#: Largest payload accepted on replay. Redis caps a value at 512 MiB
#: (proto-max-bulk-len); a record holds one write, so twice that is generous,
#: and a length field above it can only be damage.
MAX_PAYLOAD = 1 << 30

OP_SET = 0x53  # 'S'
OP_DEL = 0x44  # 'D'
OP_EXPIREAT = 0x45  # 'E'
OP_PERSIST = 0x50  # 'P'
OP_FLUSH = 0x46  # 'F'
OP_CMD = 0x43  # 'C'

_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_SET_HEAD = struct.Struct("<BI")


class RecordError(ValueError):
    """A record with a valid checksum whose content does not parse."""


def encode_set(key: bytes, value: bytes, expire_at: int) -> bytes:
    """One SET op; ``expire_at`` is absolute wall-clock ms, 0 for none."""
    return b"".join(
        (_SET_HEAD.pack(OP_SET, len(key)), key, _U32.pack(len(value)), value, _I64.pack(expire_at))
    )


def encode_sets(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(encode_set(k, v, 0) for k, v in pairs)


def encode_del(keys: list[bytes]) -> bytes:
    return b"".join(_SET_HEAD.pack(OP_DEL, len(k)) + k for k in keys)


def encode_expireat(key: bytes, expire_at: int) -> bytes:
    return _SET_HEAD.pack(OP_EXPIREAT, len(key)) + key + _I64.pack(expire_at)


def encode_persist(key: bytes) -> bytes:
    return _SET_HEAD.pack(OP_PERSIST, len(key)) + key


def encode_flush() -> bytes:
    return bytes([OP_FLUSH])


def encode_command(argv: Sequence[bytes]) -> bytes:
    """One 'C' op: a command's argv."""
    return b"".join((_SET_HEAD.pack(OP_CMD, len(argv)),
                     *(_U32.pack(len(arg)) + arg for arg in argv)))


def decode_args(encoded: bytes) -> list[bytes]:
    """The argv of an OP_CMD op as :func:`iter_ops` yields it (its value)."""
    args: list[bytes] = []
    pos, end = 0, len(encoded)
    while pos < end:
        (alen,) = _U32.unpack_from(encoded, pos)
        args.append(encoded[pos + 4 : pos + 4 + alen])
        pos += 4 + alen
    return args


def value_commands(key: bytes, value: Any) -> list[tuple[bytes, ...]]:
    """The shortest commands that build ``value`` (a model value) under ``key``."""
    from sockworks.storage.model.common import format_double
    from sockworks.storage.model.values import (
        HashValue,
        ListValue,
        SetValue,
        StreamValue,
        ZSetValue,
    )
    if isinstance(value, bytes):
        return [(b"SET", key, value)]
    if isinstance(value, HashValue):
        return [(b"HSET", key, *[x for item in value.items() for x in item])]
    if isinstance(value, ListValue):
        return [(b"RPUSH", key, *value)]
    if isinstance(value, SetValue):
        return [(b"SADD", key, *value)]
    if isinstance(value, StreamValue):
        return _stream_commands(key, value)
    assert isinstance(value, ZSetValue)
    return [(b"ZADD", key, *[x for score, member in value.order
                             for x in (format_double(score), member)])]


def _stream_commands(key: bytes, stream: Any) -> list[tuple[bytes, ...]]:
    """A stream: its entries (XADD with their IDs), its counters (XSTATE,
    which also makes an empty stream), its groups, consumers and pending
    entries (XGROUP CREATE, CREATECONSUMER, and XCLAIM ... FORCE JUSTID as
    Redis's AOF rewrite writes them; a pending entry whose entry was
    deleted is not kept, as in Redis's rewrite)."""
    from sockworks.storage.model.streamvalue import format_id
    out: list[tuple[bytes, ...]] = [
        (b"XADD", key, format_id(sid), *fields) for sid, (fields, _) in
        ((sid, stream.data[sid]) for sid in stream.ids)]
    out.append((b"XSTATE", key, format_id(stream.last_id), b"%d" % stream.entries_added,
                format_id(stream.max_deleted)))
    for name, group in stream.groups.items():
        out.append((b"XGROUP", b"CREATE", key, name, format_id(group.last_id), b"ENTRIESREAD",
                    b"%d" % group.entries_read))
        out.extend((b"XGROUP", b"CREATECONSUMER", key, name, cname) for cname in group.consumers)
        out.extend((b"XCLAIM", key, name, nack.consumer.name, b"0", format_id(sid), b"TIME",
                    b"%d" % nack.time, b"RETRYCOUNT", b"%d" % nack.count, b"FORCE", b"JUSTID")
                   for sid, nack in group.pel.items())
    return out


def frame(payload: bytes) -> bytes:
    """Wrap a payload (one or more ops) into a checksummed record."""
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


Op = tuple[int, bytes, bytes, int]  # (opcode, key, value, expire_at)


def iter_ops(payload: bytes) -> Iterator[Op]:
    """Decode a payload into ``(opcode, key, value, expire_at)`` tuples.

    Unused fields are ``b""`` / 0. Raises RecordError on malformed content.
    """
    pos, end = 0, len(payload)
    try:
        while pos < end:
            op = payload[pos]
            if op == OP_FLUSH:
                pos += 1
                yield (OP_FLUSH, b"", b"", 0)
                continue
            (klen,) = _U32.unpack_from(payload, pos + 1)
            pos += 5
            key = payload[pos : pos + klen]
            pos += klen
            if op == OP_SET:
                (vlen,) = _U32.unpack_from(payload, pos)
                value = payload[pos + 4 : pos + 4 + vlen]
                pos += 4 + vlen
                (at,) = _I64.unpack_from(payload, pos)
                pos += 8
                yield (OP_SET, key, value, at)
            elif op in (OP_DEL, OP_PERSIST):
                yield (op, key, b"", 0)
            elif op == OP_EXPIREAT:
                (at,) = _I64.unpack_from(payload, pos)
                pos += 8
                yield (OP_EXPIREAT, key, b"", at)
            elif op == OP_CMD:
                # klen is argc here: the args follow, each u32 len + bytes.
                # Yields (OP_CMD, b"", encoded args, argc): decode_args().
                pos -= klen
                begin = pos
                for _ in range(klen):
                    (alen,) = _U32.unpack_from(payload, pos)
                    pos += 4 + alen
                    if pos > end:
                        raise RecordError("op runs past the end of its record")
                if not klen:
                    raise RecordError("empty command")
                yield (OP_CMD, b"", payload[begin:pos], klen)
            else:
                raise RecordError(f"unknown op 0x{op:02x}")
            if pos > end:
                raise RecordError("op runs past the end of its record")
    except struct.error as exc:
        raise RecordError(f"truncated op: {exc}") from None


@dataclass(frozen=True, slots=True)
class LogScan:
    """Where an image's records are, and what (if anything) is wrong.

    ``good_end`` is the offset just past the last good record. ``torn`` is
    True when bytes after it form no valid record (cut them off);
    ``corrupt_at`` is the offset of a bad record that valid data follows.
    """

    records: list[tuple[int, int]]  # (payload offset, payload length)
    good_end: int
    torn: bool
    corrupt_at: int | None


_OPCODES = frozenset((OP_SET, OP_DEL, OP_EXPIREAT, OP_PERSIST, OP_FLUSH, OP_CMD))


def _valid_at(image: bytes | memoryview, off: int, size: int) -> bool:
    if size - off < HEADER.size:
        return False
    length, crc = HEADER.unpack_from(image, off)
    start = off + HEADER.size
    if length == 0 or length > MAX_PAYLOAD or start + length > size:
        return False
    # Cheap plausibility first (an opcode, a key that fits), so the search
    # rarely pays for a CRC over a long stretch that is not a record.
    if image[start] not in _OPCODES:
        return False
    if image[start] != OP_FLUSH and (
        length < 5 or _U32.unpack_from(image, start + 1)[0] + 5 > length
    ):
        return False
    return bool(zlib.crc32(image[start : start + length]) == crc)


def _find_valid_after(image: bytes | memoryview, bad: int, size: int) -> int | None:
    """Offset of a valid record after the bad one at ``bad``, if any.

    First the place the bad record's own length points to (only its payload
    was damaged), then every later byte offset. A random 8-byte header passes
    the length and CRC-32 checks with odds around 2**-32, so a hit means real
    data survives beyond the damage. Only runs when a log is damaged.
    """
    if size - bad >= HEADER.size:
        length = int(HEADER.unpack_from(image, bad)[0])
        nxt = bad + HEADER.size + length
        if length <= MAX_PAYLOAD and nxt < size and _valid_at(image, nxt, size):
            return nxt
    for off in range(bad + 1, size - HEADER.size + 1):
        if _valid_at(image, off, size):
            return off
    return None


def scan_log(image: bytes | memoryview, start: int = len(MAGIC)) -> LogScan:
    """Split a log image (after its MAGIC) into records; see :class:`LogScan`."""
    size = len(image)
    records: list[tuple[int, int]] = []
    append = records.append
    unpack_from = HEADER.unpack_from
    crc32 = zlib.crc32
    hsize = HEADER.size
    off = start
    while off < size:
        if size - off < hsize:
            break
        length, crc = unpack_from(image, off)
        p = off + hsize
        if length == 0 or length > MAX_PAYLOAD or p + length > size:
            break
        if crc32(image[p : p + length]) != crc:
            break
        append((p, length))
        off = p + length
    if off >= size:
        return LogScan(records, off, False, None)
    if _find_valid_after(image, off, size) is not None:
        return LogScan(records, off, False, off)
    return LogScan(records, off, True, None)
