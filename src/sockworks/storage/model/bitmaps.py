"""Bit commands on strings: SETBIT GETBIT BITCOUNT BITPOS BITOP, and LCS.

A string's bit 0 is the most significant bit of its first byte, as in
Redis. SETBIT and BITOP log the resulting string (a SET), so a replay is
exact and needs no bit logic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sockworks.storage.model.common import SYNTAX, CommandError, parse_int
from sockworks.storage.model.keyspace import Keyspace

__all__ = ["COMMANDS", "MAX_BITS", "check_offset"]

Argv = Sequence[bytes]
#: Redis's largest proto-max-bulk-len (512 MiB): no bit offset reaches past
#: it whatever the service allows. The RESP port first checks the offsets
#: against its own --max-bulk (check_offsets, as Redis checks them against
#: proto-max-bulk-len), so SETBIT/BITFIELD grow a string no further than
#: SETRANGE may.
MAX_BITS = 512 * 1024 * 1024 * 8


def _string(ks: Keyspace, key: bytes) -> bytes | None:
    return ks.typed(key, bytes)


def _offset(arg: bytes, max_bits: int = MAX_BITS) -> int:
    try:
        offset = parse_int(arg)
    except CommandError:
        raise CommandError("bit offset is not an integer or out of range") from None
    if not 0 <= offset < min(max_bits, MAX_BITS):
        raise CommandError("bit offset is not an integer or out of range")
    return offset


def check_offset(argv: Argv, max_bytes: int) -> None:
    """SETBIT/GETBIT's offset against a service's limit (CommandError)."""
    _offset(argv[2], max_bytes * 8)


def setbit(ks: Keyspace, argv: Argv) -> Any:
    offset = _offset(argv[2])
    if argv[3] not in (b"0", b"1"):
        raise CommandError("bit is not an integer or out of range")
    old = _string(ks, argv[1]) or b""
    byte, bit = divmod(offset, 8)
    value = bytearray(old)
    if byte >= len(value):
        value.extend(b"\x00" * (byte + 1 - len(value)))
    previous = (value[byte] >> (7 - bit)) & 1
    if argv[3] == b"1":
        value[byte] |= 1 << (7 - bit)
    else:
        value[byte] &= ~(1 << (7 - bit)) & 0xFF
    ks.set_string(argv[1], bytes(value), ks.expire_at(argv[1]))
    return previous


def getbit(ks: Keyspace, argv: Argv) -> Any:
    offset = _offset(argv[2])
    value = _string(ks, argv[1]) or b""
    byte, bit = divmod(offset, 8)
    return 0 if byte >= len(value) else (value[byte] >> (7 - bit)) & 1


def _range(argv: Argv, start_at: int, size: int) -> tuple[int, int, bool] | None:
    """(first, last, bit-unit) of BITCOUNT/BITPOS's optional range."""
    start = parse_int(argv[start_at])
    end = parse_int(argv[start_at + 1]) if len(argv) > start_at + 1 else None
    unit_bit = False
    if len(argv) > start_at + 2:
        unit = argv[start_at + 2].upper()
        if unit not in (b"BYTE", b"BIT") or len(argv) > start_at + 3:
            raise CommandError(SYNTAX)
        unit_bit = unit == b"BIT"
    total = size * 8 if unit_bit else size
    last = total - 1 if end is None else end
    if start < 0:
        start = max(0, total + start)
    if last < 0:
        last = max(0, total + last)
    last = min(last, total - 1)
    if start > last or total == 0:
        return None
    return start, last, unit_bit


def _bits(value: bytes, first: int, last: int) -> str:
    text = bin(int.from_bytes(value, "big"))[2:].zfill(len(value) * 8) if value else ""
    return text[first:last + 1]


def bitcount(ks: Keyspace, argv: Argv) -> Any:
    value = _string(ks, argv[1])
    if value is None:
        return 0  # Redis looks the key up before it reads the range
    if len(argv) == 3 or len(argv) > 5:
        raise CommandError(SYNTAX)
    if len(argv) == 2:
        return sum(bin(b).count("1") for b in value) if len(value) < 4096 else \
            bin(int.from_bytes(value, "big")).count("1")
    if parse_int(argv[2]) < 0 and parse_int(argv[3]) < 0 \
            and parse_int(argv[2]) > parse_int(argv[3]):
        return 0  # both from the end, start after end (Redis 7.0's check)
    span = _range(argv, 2, len(value))
    if span is None:
        return 0
    first, last, unit_bit = span
    if unit_bit:
        return _bits(value, first, last).count("1")
    return bin(int.from_bytes(value[first:last + 1], "big")).count("1")


def bitpos(ks: Keyspace, argv: Argv) -> Any:
    if parse_int(argv[2]) not in (0, 1):
        raise CommandError("The bit argument must be 1 or 0.")
    want = "1" if parse_int(argv[2]) else "0"
    value = _string(ks, argv[1])
    if value is None:
        return -1 if want == "1" else 0
    if not value:
        return -1
    if len(argv) > 6:
        raise CommandError(SYNTAX)
    end_given = len(argv) > 4
    if len(argv) > 3:
        span = _range(argv, 3, len(value))
        if span is None:
            return -1
        first, last, unit_bit = span
        if not unit_bit:
            first, last = first * 8, last * 8 + 7
    else:
        first, last = 0, len(value) * 8 - 1
    bits = _bits(value, first, last)
    found = bits.find(want)
    if found >= 0:
        return first + found
    if want == "0" and not end_given:
        return last + 1  # clear bits continue past the end of the string
    return -1


def bitop(ks: Keyspace, argv: Argv) -> Any:
    op = argv[1].upper()
    if op not in (b"AND", b"OR", b"XOR", b"NOT"):
        raise CommandError(SYNTAX)
    if op == b"NOT" and len(argv) != 4:
        raise CommandError("BITOP NOT must be called with a single source key.")
    sources = [_string(ks, k) or b"" for k in argv[3:]]
    size = max(map(len, sources), default=0)
    numbers = [int.from_bytes(s.ljust(size, b"\x00"), "big") for s in sources]
    if op == b"NOT":
        result = ~numbers[0] & ((1 << (8 * size)) - 1)
    else:
        result = numbers[0]
        for n in numbers[1:]:
            result = (result & n) if op == b"AND" else (result | n) if op == b"OR" \
                else (result ^ n)
    dest = argv[2]
    if size == 0:
        ks.delete([dest])
        return 0
    ks.set_string(dest, result.to_bytes(size, "big"))
    return size


def lcs(ks: Keyspace, argv: Argv) -> Any:
    get_len = get_idx = withmatchlen = False
    minmatchlen = 0
    i = 3
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"LEN":
            get_len = True
        elif opt == b"IDX":
            get_idx = True
        elif opt == b"WITHMATCHLEN":
            withmatchlen = True
        elif opt == b"MINMATCHLEN" and i + 1 < len(argv):
            minmatchlen = max(0, parse_int(argv[i + 1]))
            i += 1
        else:
            raise CommandError(SYNTAX)
        i += 1
    if get_len and get_idx:
        raise CommandError("If you want both the length and indexes, please just use IDX.")
    a = _string(ks, argv[1]) or b""
    b = _string(ks, argv[2]) or b""
    if len(a) * len(b) > 64 * 1024 * 1024:
        raise CommandError("Insufficient memory, transient memory for LCS exceeds "
                           "proto-max-bulk-len")
    rows, cols = len(a) + 1, len(b) + 1
    table = [[0] * cols for _ in range(rows)]
    for x in range(1, rows):
        ax, row, prev = a[x - 1], table[x], table[x - 1]
        for y in range(1, cols):
            row[y] = prev[y - 1] + 1 if ax == b[y - 1] else max(prev[y], row[y - 1])
    length = table[-1][-1]
    if get_len:
        return length
    # Walk back from the end, as Redis does, collecting matched ranges.
    out = bytearray(length)
    idx = length
    matches: list[Any] = []
    x, y = len(a), len(b)
    range_a: list[int] | None = None
    range_b: list[int] | None = None

    def emit() -> None:
        if range_a is not None and range_b is not None:
            match_len = range_a[1] - range_a[0] + 1
            if match_len >= minmatchlen:
                item: list[Any] = [[range_a[0], range_a[1]], [range_b[0], range_b[1]]]
                if withmatchlen:
                    item.append(match_len)
                matches.append(item)
    while x > 0 and y > 0:
        if a[x - 1] == b[y - 1]:
            idx -= 1
            out[idx] = a[x - 1]
            if range_a is None or range_b is None:
                range_a, range_b = [x - 1, x - 1], [y - 1, y - 1]
            elif range_a[0] == x and range_b[0] == y:
                range_a[0] -= 1
                range_b[0] -= 1
            else:
                emit()
                range_a, range_b = [x - 1, x - 1], [y - 1, y - 1]
            x -= 1
            y -= 1
        elif table[x - 1][y] > table[x][y - 1]:
            x -= 1
        else:
            y -= 1
    emit()
    if get_idx:
        from sockworks.protocols.resp import Map
        return Map([(b"matches", matches), (b"len", length)])
    return bytes(out)


COMMANDS = {
    b"setbit": setbit, b"getbit": getbit, b"bitcount": bitcount, b"bitpos": bitpos,
    b"bitop": bitop, b"lcs": lcs,
}
