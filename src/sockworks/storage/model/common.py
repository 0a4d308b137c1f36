"""What every command family shares: Redis's error texts, argument parsing
(integers, doubles, score and lex bounds) and double formatting.

Errors are raised as :class:`CommandError` with Redis's text; ERR-class
errors leave the ``ERR`` prefix out (the RESP service adds it, as it does for
every StoreError), other classes (``WRONGTYPE``...) carry their prefix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from typing import Final

from sockworks.storage.base import StoreError, WrongType
from sockworks.storage.glob import compile_glob

__all__ = [
    "CommandError", "NOT_FLOAT", "NOT_INT", "SYNTAX", "WrongType", "format_double",
    "parse_intercard",
    "parse_double", "parse_int", "parse_score", "scan_args",
]

NOT_INT: Final = "value is not an integer or out of range"
NOT_FLOAT: Final = "value is not a valid float"
SYNTAX: Final = "syntax error"
I64_MIN: Final = -(1 << 63)
I64_MAX: Final = (1 << 63) - 1


class CommandError(StoreError):
    """A command's error reply (Redis's text, ERR prefix implied)."""


def wrong_args(name: str) -> CommandError:
    return CommandError(f"wrong number of arguments for '{name}' command")


def parse_int(arg: bytes, message: str = NOT_INT) -> int:
    """A Redis integer argument (string2ll: canonical, 64-bit)."""
    if len(arg) > 20:
        raise CommandError(message)
    try:
        number = int(arg)
    except ValueError:
        raise CommandError(message) from None
    if b"%d" % number != arg or not I64_MIN <= number <= I64_MAX:
        raise CommandError(message)
    return number


#: Most elements a negative count may ask SRANDMEMBER, HRANDFIELD or
#: ZRANDMEMBER for (repetitions allowed). Redis has no bound but the
#: client's output buffer limit; here the reply is built whole, under the
#: store lock, before any of it is sent, so ``SRANDMEMBER s -9223372036854775807``
#: would hold every client for hours. A million elements is about 0.1 s.
RANDOM_COUNT_MAX: Final = 1_000_000


def parse_random_count(arg: bytes, with_pairs: bool) -> int:
    """SRANDMEMBER/HRANDFIELD/ZRANDMEMBER's count: Redis's range
    (-LONG_MAX..LONG_MAX; a negative count with values or scores at most
    LONG_MAX/2) and errors, then this server's RANDOM_COUNT_MAX."""
    count = parse_int(arg)
    if count < -I64_MAX:
        raise CommandError(f"value is out of range, value must between {-I64_MAX} and {I64_MAX}")
    if with_pairs and count < -(I64_MAX // 2):
        raise CommandError("value is out of range")
    if count < -RANDOM_COUNT_MAX:
        raise CommandError(f"count is past this server's limit of {RANDOM_COUNT_MAX} random "
                           "elements")
    return count


def parse_intercard(argv: Sequence[bytes]) -> tuple[int, int]:
    """SINTERCARD/ZINTERCARD's ``numkeys key... [LIMIT n]``: (numkeys,
    limit; 0 = none), with Redis's errors in Redis's order."""
    numkeys = parse_int(argv[1], "numkeys should be greater than 0")
    if numkeys <= 0:
        raise CommandError("numkeys should be greater than 0")
    if numkeys > len(argv) - 2:
        raise CommandError("Number of keys can't be greater than number of args")
    limit = 0
    rest = argv[2 + numkeys:]
    if rest:
        if len(rest) != 2 or rest[0].upper() != b"LIMIT":
            raise CommandError(SYNTAX)
        limit = parse_int(rest[1], "LIMIT can't be negative")
        if limit < 0:
            raise CommandError("LIMIT can't be negative")
    return numkeys, limit


def parse_positive(arg: bytes, what: str) -> int:
    number = parse_int(arg, f"{what} is out of range, must be positive")
    if number < 0:
        raise CommandError(f"{what} is out of range, must be positive")
    return number


_FLOAT: Final = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INF: Final = re.compile(rb"[+-]?inf(?:inity)?", re.IGNORECASE)


def parse_double(arg: bytes, message: str = NOT_FLOAT) -> float:
    """What Redis's strtod-based parsing accepts (no NaN, no blanks)."""
    if _INF.fullmatch(arg):
        return -math.inf if arg[:1] == b"-" else math.inf
    if not _FLOAT.fullmatch(arg):
        raise CommandError(message)
    value = float(arg)
    if math.isinf(value):
        raise CommandError(message)  # overflow (ERANGE)
    return value


def parse_score(arg: bytes) -> float:
    return parse_double(arg, NOT_FLOAT)


def format_double(value: float) -> bytes:
    """Redis 7.0's reply text for a double (``%.17g``; inf, -inf)."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    text = b"%.17g" % value
    return text


def scan_args(argv: Sequence[bytes], start: int) -> tuple[int, bytes | None, int, bool]:
    """HSCAN/SSCAN/ZSCAN: cursor, MATCH, COUNT, NOVALUES (7.4, unused)."""
    cursor = parse_cursor(argv[start])
    match: bytes | None = None
    count = 10
    i = start + 1
    while i < len(argv):
        opt = argv[i].upper()
        if i + 1 >= len(argv):
            raise CommandError(SYNTAX)
        if opt == b"MATCH":
            match = argv[i + 1]
        elif opt == b"COUNT":
            count = parse_int(argv[i + 1])
            if count < 1:
                raise CommandError(SYNTAX)
        else:
            raise CommandError(SYNTAX)
        i += 2
    return cursor, match, count, False


def parse_cursor(text: bytes) -> int:
    digits = text[1:] if text[:1] in (b"+", b"-") else text
    if digits and not digits.isdigit():
        raise CommandError("invalid cursor")
    value = int(digits) if digits else 0
    if value >= 2**64:
        raise CommandError("invalid cursor")
    return (2**64 - value) % 2**64 if text[:1] == b"-" else value


def scan_slice(items: Sequence[bytes], cursor: int, match: bytes | None,
               count: int) -> tuple[int, list[bytes]]:
    """A cursor over a snapshot of an aggregate's elements, in their
    iteration order: the cursor is the position reached. Like Redis for a
    small (listpack) aggregate, everything comes in one call when the
    aggregate is small; a big one is walked COUNT elements at a time."""
    if len(items) <= 128 and cursor == 0:
        chosen = list(items)
        nxt = 0
    else:
        chosen = list(items[cursor:cursor + count])
        nxt = cursor + count if cursor + count < len(items) else 0
    if match is not None:
        matcher = compile_glob(match)
        chosen = [item for item in chosen if matcher(item)]
    return nxt, chosen


def pairs(argv: Sequence[bytes], start: int) -> Iterator[tuple[bytes, bytes]]:
    return zip(argv[start::2], argv[start + 1::2], strict=False)


def wrongtype() -> WrongType:
    return WrongType()
