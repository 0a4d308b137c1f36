"""The key-value text protocol, sans-IO: request lines in, events out; replies to bytes.

The protocol is the book chapter's (``SET key value`` / ``GET key`` / ``DEL
key`` / ``QUIT``, one request per ``\\n``-terminated line, one reply line per
request) plus the extensions listed in docs/protocol.md. This module does no
I/O: :class:`~sockworks.protocols.lines.LineFramer` cuts the byte stream into
lines, :func:`parse_line` turns one line into one event::

    parse_line(b"set a  hello world \\r")   # Set(key=b'a', value=b'hello world')
    parse_line(b"GET a")                     # Get(key=b'a')

and the ``*_reply`` functions turn results into the exact reply bytes. Executing a
command against a store is the service's job (sockworks.services.kv).

Parsing follows the chapter's ``line.strip().split(None, 2)``: the line is
stripped of surrounding ASCII whitespace (so a trailing ``\\r`` from telnet or
``nc -C`` disappears), the command name is case-insensitive, and SET's value is
the rest of the line after the key with its inner whitespace kept. Keys and
values are bytes; nothing is decoded, so invalid UTF-8 is just data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from sockworks.protocols.lines import CLOSED, LINE_TOO_LONG, NEED_DATA
from sockworks.protocols.lines import _Sentinel as Sentinel

__all__ = [
    "COMMAND_NAMES",
    "BYE",
    "CLOSED",
    "DELETED",
    "GREETING",
    "LINE_TOO_LONG",
    "LINE_TOO_LONG_REPLY",
    "MAX_EXPIRE_SECONDS",
    "MAX_KEY_LENGTH",
    "NEED_DATA",
    "NOT_FOUND",
    "OK",
    "PONG",
    "UNFRAMABLE_VALUE_REPLY",
    "BadRequest",
    "Command",
    "Compact",
    "DbSize",
    "Delete",
    "Event",
    "Exists",
    "Expire",
    "Get",
    "HttpRequest",
    "IncrBy",
    "Persist",
    "Ping",
    "Quit",
    "Sentinel",
    "Set",
    "Stats",
    "Ttl",
    "error_reply",
    "integer_reply",
    "parse_line",
    "stats_reply",
    "status_reply",
    "value_reply",
]

# -- limits ---------------------------------------------------------------

#: Longest key the text protocol accepts. memcached caps keys at 250 bytes
#: (KEY_MAX_LENGTH); we allow twice that so namespaced keys such as
#: ``tenant:<uuid>:session:<uuid>`` fit with room to spare, while a key stays
#: small enough to log and to index cheaply. Values are bounded only by the
#: line limit (--max-line).
MAX_KEY_LENGTH: Final = 512

#: Largest EXPIRE accepted, in seconds (100 years). Deadlines are absolute
#: milliseconds in the store and its log; this keeps them far inside a signed
#: 64-bit integer (Redis answers "invalid expire time" past its own bound).
MAX_EXPIRE_SECONDS: Final = 100 * 365 * 24 * 3600

#: Integers are base-10 signed 64-bit, written without '+', spaces or '_'
#: (stricter than Python's int(), like Redis's string2ll). Twenty characters
#: hold "-9223372036854775808"; the length check comes before the regex.
_INTEGER = re.compile(rb"-?[0-9]+")
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1

# -- fixed replies --------------------------------------------------------

GREETING: Final = b"READY\n"
OK: Final = b"OK\n"
NOT_FOUND: Final = b"NOT_FOUND\n"
DELETED: Final = b"DELETED\n"
BYE: Final = b"BYE\n"
PONG: Final = b"PONG\n"
LINE_TOO_LONG_REPLY: Final = b"ERROR: line too long\n"
UNFRAMABLE_VALUE_REPLY: Final = (
    b"ERROR: value cannot be sent in the text protocol (it contains a line break); "
    b"use the RESP port\n"
)

# -- events ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Set:
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Get:
    key: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    key: bytes


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Exists:
    keys: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class IncrBy:
    """INCR key (delta 1) and INCRBY key delta."""

    key: bytes
    delta: int


@dataclass(frozen=True, slots=True)
class Expire:
    key: bytes
    seconds: int


@dataclass(frozen=True, slots=True)
class Ttl:
    key: bytes


@dataclass(frozen=True, slots=True)
class Persist:
    key: bytes


@dataclass(frozen=True, slots=True)
class DbSize:
    pass


@dataclass(frozen=True, slots=True)
class Stats:
    pass


@dataclass(frozen=True, slots=True)
class Compact:
    pass


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A line that is not a valid request: reply ``ERROR: <reason>``, keep going."""

    reason: str


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A line that looks like HTTP: a client on the wrong port. Close the
    connection without running anything (Redis and memcached do the same, which
    also defeats cross-protocol attacks from browsers)."""

    line: bytes


Command = (
    Set | Get | Delete | Quit | Ping | Exists | IncrBy | Expire | Ttl | Persist
    | DbSize | Stats | Compact
)
Event = Command | BadRequest | HttpRequest

# -- parsing --------------------------------------------------------------

#: Request-line methods of HTTP/1.x (RFC 9110 section 9, plus PRI from the
#: HTTP/2 connection preface, RFC 9113 section 3.4).
_HTTP_METHODS: Final = frozenset(
    {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE",
     b"PATCH", b"PRI"}
)
_HTTP_VERSION = re.compile(rb"HTTP/[0-9](\.[0-9])?")

_EMPTY = BadRequest("empty command")
_UNKNOWN = BadRequest("unknown command")
_KEY_TOO_LONG = BadRequest(f"key too long (max {MAX_KEY_LENGTH} bytes)")

#: name -> usage, for "wrong number of arguments" errors.
_USAGE: Final = {
    b"SET": "SET key value",
    b"GET": "GET key",
    b"DEL": "DEL key",
    b"QUIT": "QUIT",
    b"PING": "PING",
    b"EXISTS": "EXISTS key [key ...]",
    b"INCR": "INCR key",
    b"INCRBY": "INCRBY key increment",
    b"EXPIRE": "EXPIRE key seconds",
    b"TTL": "TTL key",
    b"PERSIST": "PERSIST key",
    b"DBSIZE": "DBSIZE",
    b"STATS": "STATS",
    b"COMPACT": "COMPACT",
}
#: Every command of the text protocol (upper case), as a client spells it.
COMMAND_NAMES: Final = frozenset(_USAGE)

_WRONG_ARGS: Final = {
    name: BadRequest(f"wrong number of arguments (usage: {usage})")
    for name, usage in _USAGE.items()
}
_NO_ARGS: Final[dict[bytes, Event]] = {
    b"QUIT": Quit(), b"PING": Ping(), b"DBSIZE": DbSize(), b"STATS": Stats(), b"COMPACT": Compact(),
}


def _looks_like_http(name: bytes, words: list[bytes]) -> bool:
    # "Host:" is the header every HTTP/1.1 request carries; "POST" is never a
    # KV command (Redis closes on both, see securityWarningCommand). A request
    # line is METHOD TARGET VERSION; "GET / HTTP/1.1" must not be read as a
    # (malformed) GET of key "/".
    if name == b"POST" or name == b"HOST:":
        return True
    return (
        len(words) >= 2
        and name in _HTTP_METHODS
        and _HTTP_VERSION.fullmatch(words[-1]) is not None
    )


def _parse_int(text: bytes) -> int | None:
    if len(text) > 20 or _INTEGER.fullmatch(text) is None:
        return None
    value = int(text)
    if not _INT64_MIN <= value <= _INT64_MAX:
        return None
    return value


def _incr(key: bytes) -> IncrBy:
    return IncrBy(key, 1)


#: One-key commands, also the fast path of parse_line.
_ONE_KEY: Final[dict[bytes, Callable[[bytes], Event]]] = {
    b"GET": Get, b"DEL": Delete, b"TTL": Ttl, b"PERSIST": Persist, b"INCR": _incr,
}


def parse_line(line: bytes) -> Event:
    """Turn one request line (without its ``\\n``) into an event."""
    # split(None, 2) skips surrounding whitespace (so a trailing \r goes) except
    # after the last split: SET's value keeps inner whitespace and loses the
    # trailing blanks through rstrip(), exactly the chapter's strip().split(None, 2).
    parts = line.split(None, 2)
    if not parts:
        return _EMPTY
    name = parts[0].upper()
    # Fast paths for the hot commands (GET/SET/DEL/INCR...): one split, no
    # HTTP check needed (an HTTP request line has three words and no SET).
    if len(parts) == 2:
        make = _ONE_KEY.get(name)
        if make is not None:
            key = parts[1]
            return make(key) if len(key) <= MAX_KEY_LENGTH else _KEY_TOO_LONG
    elif name == b"SET" and len(parts) == 3:
        key = parts[1]
        return Set(key, parts[2].rstrip()) if len(key) <= MAX_KEY_LENGTH else _KEY_TOO_LONG
    return _parse_other(line, name)


def _parse_other(line: bytes, name: bytes) -> Event:
    words = line.split()[1:]
    if name == b"SET":  # fewer than three words
        return _WRONG_ARGS[b"SET"]

    if _looks_like_http(name, words):
        return HttpRequest(line)

    if name in _ONE_KEY:  # not exactly one argument, or it would be a fast path
        return _WRONG_ARGS[name]

    if name in _NO_ARGS:
        # QUIT ignores arguments, as the chapter's server does: a client that
        # says "QUIT now" wants to leave.
        if words and name != b"QUIT":
            return _WRONG_ARGS[name]
        return _NO_ARGS[name]

    if name == b"EXISTS":
        if not words:
            return _WRONG_ARGS[name]
        if any(len(key) > MAX_KEY_LENGTH for key in words):
            return _KEY_TOO_LONG
        return Exists(tuple(words))

    if name == b"INCRBY" or name == b"EXPIRE":
        if len(words) != 2:
            return _WRONG_ARGS[name]
        key, number = words
        if len(key) > MAX_KEY_LENGTH:
            return _KEY_TOO_LONG
        amount = _parse_int(number)
        if name == b"INCRBY":
            if amount is None:
                return BadRequest("increment is not an integer or out of range")
            return IncrBy(key, amount)
        if amount is None or abs(amount) > MAX_EXPIRE_SECONDS:
            return BadRequest(
                f"invalid expire time (an integer number of seconds, at most {MAX_EXPIRE_SECONDS})"
            )
        return Expire(key, amount)

    return _UNKNOWN


# -- replies --------------------------------------------------------------


def value_reply(value: bytes | None) -> bytes:
    """GET's reply: the value, ``NOT_FOUND``, or an error for a value that
    cannot be framed (it holds a newline, or ends in a carriage return that a
    CRLF client would strip; only another protocol can store such a value)."""
    if value is None:
        return NOT_FOUND
    if b"\n" in value or value.endswith(b"\r"):
        return UNFRAMABLE_VALUE_REPLY
    return value + b"\n"


def integer_reply(value: int) -> bytes:
    return b"%d\n" % value


def _one_line(text: str) -> bytes:
    return " ".join(text.split()).encode("utf-8", "replace")


def error_reply(message: str) -> bytes:
    """``ERROR: message``; the message is folded onto one line."""
    return b"ERROR: " + _one_line(message) + b"\n"


def status_reply(status: str) -> bytes:
    """``OK`` followed by a short status text (COMPACT)."""
    text = _one_line(status)
    return b"OK " + text + b"\n" if text else OK


def _stat_value(value: object) -> bytes:
    if isinstance(value, bool):
        return b"1" if value else b"0"
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, float):
        return b"%.3f" % value
    if value is None:
        return b"-"
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    # Values are single tokens: whitespace and '=' would break the format.
    cleaned = "_".join(text.split()).replace("=", "_")
    return cleaned.encode("utf-8", "replace") or b"-"


def stats_reply(stats: Mapping[str, object]) -> bytes:
    """``STATS name=value name=value ...`` on one line (see docs/protocol.md).

    One line keeps the protocol's invariant that every request gets exactly
    one reply line, so pipelining clients never need to know which commands
    answer with more. Names are ``[a-z0-9_]``; values are single tokens.
    """
    fields = [
        _stat_value(name.lower()).replace(b"-", b"_") + b"=" + _stat_value(value)
        for name, value in stats.items()
    ]
    return b"STATS " + b" ".join(fields) + b"\n"
