"""BITFIELD and BITFIELD_RO: integers of 1 to 64 bits at any bit offset of a string.

Redis 7.0's semantics (bitops.c): every operation is parsed before any
runs, in order, each error with Redis's text; ``OVERFLOW WRAP|SAT|FAIL``
applies to the SET and INCRBY after it; types are ``i1``..``i64`` and
``u1``..``u63`` (lower case, as 7.0 accepts); ``#n`` offsets are n times
the type's width. Overflow is decided exactly as Redis's C does, in 64-bit
two's-complement arithmetic, including its corner cases (``SET i8 0
-9223372036854775808`` with SAT stores 127: C's ``max - value`` wraps).

Bounds and logging are SETBIT's: an offset must be below
``bitmaps.MAX_BITS`` (512 MiB) here, and below the RESP port's --max-bulk
(Redis's proto-max-bulk-len, like SETRANGE's bound), which the port checks
first with :func:`parse`; the command
is denyoom, so the store's memory limit is checked before it runs. A
BITFIELD with a SET or INCRBY grows the string to its highest written bit
(Redis does, even when OVERFLOW FAIL then writes nothing) and logs itself
as written: replaying it on the same string gives the same string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sockworks.storage.model.bitmaps import MAX_BITS
from sockworks.storage.model.common import SYNTAX, CommandError, parse_int
from sockworks.storage.model.keyspace import Keyspace

__all__ = ["COMMANDS", "parse"]

Argv = Sequence[bytes]

BAD_TYPE: Final = ("Invalid bitfield type. Use something like i16 u8. Note that u64 is not "
                   "supported but i64 is.")
BAD_OFFSET: Final = "bit offset is not an integer or out of range"
BAD_OVERFLOW: Final = "Invalid OVERFLOW type specified"
RO_ONLY_GET: Final = "BITFIELD_RO only supports the GET subcommand"

_U64: Final = 1 << 64
_OVERFLOWS: Final = {b"wrap": "wrap", b"sat": "sat", b"fail": "fail"}


def _i64(n: int) -> int:
    """``n`` as C's int64_t after unsigned wrap-around."""
    n %= _U64
    return n - _U64 if n >= 1 << 63 else n


def _type(arg: bytes) -> tuple[bool, int]:
    """(signed, bits) of ``i<bits>`` / ``u<bits>``."""
    if arg[:1] not in (b"i", b"u"):
        raise CommandError(BAD_TYPE)
    signed = arg[:1] == b"i"
    try:
        bits = parse_int(arg[1:])
    except CommandError:
        raise CommandError(BAD_TYPE) from None
    if bits < 1 or bits > (64 if signed else 63):
        raise CommandError(BAD_TYPE)
    return signed, bits


def _offset(arg: bytes, bits: int, max_bits: int) -> int:
    """A bit offset, ``#n`` meaning n * bits (wrapped like Redis's long long)."""
    hashed = arg[:1] == b"#" and len(arg) > 1
    try:
        offset = parse_int(arg[1:] if hashed else arg)
    except CommandError:
        raise CommandError(BAD_OFFSET) from None
    if hashed:
        offset = _i64(offset * bits)
    if not 0 <= offset < min(max_bits, MAX_BITS):
        raise CommandError(BAD_OFFSET)
    return offset


def _signed_overflow(value: int, incr: int, bits: int, mode: str) -> tuple[int, int]:
    """(overflow: 1 up, -1 down, 0 none; the wrapped or saturated value),
    Redis's checkSignedBitfieldOverflow step for step."""
    top = (1 << 63) - 1 if bits == 64 else (1 << (bits - 1)) - 1
    bottom = -top - 1
    max_incr = _i64(top - value)
    min_incr = _i64(bottom - value)
    if value > top or (bits != 64 and incr > max_incr) or (
            value >= 0 and incr > 0 and incr > max_incr):
        direction, limit = 1, top
    elif value < bottom or (bits != 64 and incr < min_incr) or (
            value < 0 and incr < 0 and incr < min_incr):
        direction, limit = -1, bottom
    else:
        return 0, 0
    if mode == "wrap":
        total = (value + incr) % (1 << bits)
        limit = total - (1 << bits) if total >> (bits - 1) else total
    return direction, limit


def _unsigned_overflow(value: int, incr: int, bits: int, mode: str) -> tuple[int, int]:
    """As :func:`_signed_overflow`, Redis's checkUnsignedBitfieldOverflow
    (``value`` is a uint64_t there: a negative SET value wraps first)."""
    value %= _U64
    top = (1 << bits) - 1
    max_incr = _i64(top - value)
    min_incr = _i64(-value)
    if value > top or (incr > 0 and incr > max_incr):
        direction, limit = 1, top
    elif incr < 0 and incr < min_incr:
        direction, limit = -1, 0
    else:
        return 0, 0
    if mode == "wrap":
        limit = (value + incr) % (1 << bits)
    return direction, limit


def _read(data: bytes | bytearray, offset: int, bits: int, signed: bool) -> int:
    """The field at ``offset`` (bits past the end read as 0)."""
    first, last = offset >> 3, (offset + bits - 1) >> 3
    chunk = bytes(data[first:last + 1]).ljust(last - first + 1, b"\x00")
    shift = (last - first + 1) * 8 - (offset & 7) - bits
    field = (int.from_bytes(chunk, "big") >> shift) & ((1 << bits) - 1)
    if signed and field >> (bits - 1):
        field -= 1 << bits
    return field


def _write(data: bytearray, offset: int, bits: int, value: int) -> None:
    """Store the low ``bits`` of ``value`` at ``offset`` (data is long enough)."""
    first, last = offset >> 3, (offset + bits - 1) >> 3
    shift = (last - first + 1) * 8 - (offset & 7) - bits
    mask = ((1 << bits) - 1) << shift
    word = int.from_bytes(data[first:last + 1], "big")
    word = (word & ~mask) | ((value << shift) & mask)
    data[first:last + 1] = word.to_bytes(last - first + 1, "big")


Op = tuple[bytes, bool, int, int, int, str]  # (opcode, signed, bits, offset, value, overflow)


def parse(argv: Argv, max_bytes: int = MAX_BITS // 8) -> list[Op]:
    """Every operation, checked in order before any runs (Redis's loop);
    offsets must stay below ``max_bytes`` (the RESP port passes its
    --max-bulk, Redis's proto-max-bulk-len)."""
    ops: list[Op] = []
    mode = "wrap"
    j = 2
    while j < len(argv):
        left = len(argv) - j - 1
        word = argv[j].lower()
        if word == b"overflow" and left >= 1:
            chosen = _OVERFLOWS.get(argv[j + 1].lower())
            if chosen is None:
                raise CommandError(BAD_OVERFLOW)
            mode = chosen
            j += 2
            continue
        if not ((word == b"get" and left >= 2) or (word in (b"set", b"incrby") and left >= 3)):
            raise CommandError(SYNTAX)
        signed, bits = _type(argv[j + 1])
        offset = _offset(argv[j + 2], bits, max_bytes * 8)
        value = 0
        if word != b"get":
            value = parse_int(argv[j + 3])
        ops.append((word, signed, bits, offset, value, mode))
        j += 3 if word == b"get" else 4
    return ops


def _bitfield(ks: Keyspace, argv: Argv, readonly: bool) -> Any:
    ops = parse(argv)
    key = argv[1]
    writes = [op for op in ops if op[0] != b"get"]
    if not writes:
        stored = ks.typed(key, bytes) or b""
        return [_read(stored, offset, bits, signed) for _, signed, bits, offset, _, _ in ops]
    if readonly:
        raise CommandError(RO_ONLY_GET)
    old = ks.typed(key, bytes)
    size = max(offset + bits - 1 for _, _, bits, offset, _, _ in writes) // 8 + 1
    data = bytearray(old or b"")
    if len(data) < size:
        data.extend(bytes(size - len(data)))
    reply: list[int | None] = []
    for opcode, signed, bits, offset, value, mode in ops:
        current = _read(data, offset, bits, signed)
        if opcode == b"get":
            reply.append(current)
            continue
        check = _signed_overflow if signed else _unsigned_overflow
        if opcode == b"incrby":
            overflow, limit = check(current, value, bits, mode)
            new = limit if overflow else current + value
            shown = new
        else:
            overflow, limit = check(value, 0, bits, mode)
            new = limit if overflow else value
            shown = current
        if overflow and mode == "fail":
            reply.append(None)
            continue
        _write(data, offset, bits, new)
        reply.append(shown)
    ks.log(argv)
    ks.put(key, bytes(data), ks.expire_at(key))
    return reply


def bitfield(ks: Keyspace, argv: Argv) -> Any:
    return _bitfield(ks, argv, False)


def bitfield_ro(ks: Keyspace, argv: Argv) -> Any:
    return _bitfield(ks, argv, True)


COMMANDS = {b"bitfield": bitfield, b"bitfield_ro": bitfield_ro}
