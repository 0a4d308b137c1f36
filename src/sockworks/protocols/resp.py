"""RESP (the Redis protocol): a sans-IO request parser and a reply serializer.

Requests. Redis accepts two request forms and so does :class:`RespParser`:

* RESP arrays of bulk strings (``*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n``), what
  every client library sends;
* inline commands (``PING\\r\\n``), split like Redis's ``sdssplitargs``:
  blanks separate arguments, ``"..."`` understands ``\\n \\r \\t \\b \\a \\xHH``
  and ``\\<any>``, ``'...'`` understands only ``\\'``, and a closing quote must
  be followed by a blank or the end of the line.

The parser follows ``processMultibulkBuffer``/``processInlineBuffer`` of Redis
7's networking.c, including its quirks: a multibulk count <= 0 (``*-10``,
``*0``, ``*-1``) is silently ignored, empty inline lines are ignored, the two
bytes after a bulk's data are skipped unchecked, and the error texts are
Redis's own ("Protocol error: invalid bulk length", ...). After a
:class:`ProtocolViolation` the parser accepts nothing more: the connection must
reply with the error and close (what Redis does), so the tail of a malformed
request can never run as a command.

Two parsing back ends give identical results. The pure-Python one is the
reference. When hiredis is installed, its C ``Reader`` parses runs of complete
RESP arrays; every array it returns is checked against the bytes it came from
(each element must have been a canonical ``$<len>`` bulk string, within the
limits) and anything else -- an error, a type byte other than ``$``, an
incomplete tail -- is handed back to the Python parser at the start of that
command, so error texts and edge cases are Redis's, not hiredis's.

Measured with ``benchmarks/resp_parser.py`` (2-core shared VM, CPython 3.11,
hiredis 3.5, 200 000 ``SET key:NNNNNN <16-byte value>``): pipelined in 64 KiB
chunks, pure Python 0.38-0.51 M commands/s, hiredis path 1.76-2.68 M/s (4-5x,
the range is the load of the shared machine across runs); one command per
chunk (no pipelining) 0.34-0.45 M/s against 0.49-0.80 M/s, because per-call
overhead dominates there.

Replies: :func:`encode` turns Python values and the small reply types below
into RESP2 or RESP3 bytes (RESP3's null, map, set, double, boolean and
verbatim string degrade to their RESP2 equivalents as Redis does).
"""

from __future__ import annotations

import enum
import math
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final

_hiredis: ModuleType | None
try:  # the C accelerator is optional (``pip install sockworks[fast]``)
    import hiredis as _hiredis
except ImportError:  # pragma: no cover - exercised on machines without hiredis
    _hiredis = None

__all__ = [
    "ArrayMap",
    "CLOSED",
    "DEFAULT_MAX_BULK",
    "HIREDIS_AVAILABLE",
    "MAX_MULTIBULK_LEN",
    "NEED_DATA",
    "NULL_ARRAY",
    "OK",
    "PONG",
    "PROTO_INLINE_MAX_SIZE",
    "Double",
    "ErrorReply",
    "Map",
    "Pairs",
    "ProtocolViolation",
    "Push",
    "RespParser",
    "RespSet",
    "SimpleString",
    "Verbatim",
    "encode",
    "encode_bulk",
    "encode_command",
    "encode_error",
    "encode_integer",
    "encode_null",
    "split_inline",
]

HIREDIS_AVAILABLE: Final = _hiredis is not None

#: Longest inline request, and longest ``*``/``$`` header line while its
#: ``\r`` has not arrived: Redis's PROTO_INLINE_MAX_SIZE (64 KiB). Nothing
#: legitimate comes close; a client streaming bytes without a line end is
#: stopped after 64 KiB instead of filling memory.
PROTO_INLINE_MAX_SIZE: Final = 64 * 1024

#: Default longest bulk string (one argument), the ``--max-bulk`` flag.
#: Redis allows 512 MiB (proto-max-bulk-len). A Python server holds a value
#: about three times while it travels (receive buffer, argument, store), so
#: the default here is 64 MiB: far above any cache value, and a single
#: client cannot make the process allocate gigabytes with one header.
DEFAULT_MAX_BULK: Final = 64 * 1024 * 1024

#: Most arguments in one request: Redis 7 accepts up to INT_MAX and so do we;
#: memory is bounded by the query buffer limit instead (each parsed argument
#: is charged :data:`_ARG_OVERHEAD` bytes on top of its length).
MAX_MULTIBULK_LEN: Final = 2**31 - 1

#: What a parsed argument costs beyond its bytes (a PyBytes header plus the
#: list slot), charged against the query buffer limit.
_ARG_OVERHEAD: Final = 48


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"
    CLOSED = "CLOSED"


NEED_DATA: Final = _Sentinel.NEED_DATA
CLOSED: Final = _Sentinel.CLOSED


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The request stream is malformed; ``message`` is Redis's error text
    (reply ``-ERR <message>`` and close the connection)."""

    message: str


Command = list[bytes]
ParserEvent = Command | ProtocolViolation | _Sentinel


class _Violation(Exception):
    """Internal: unwinds the parse loop with the Redis error text."""


def _strict_int(text: bytes | bytearray) -> int | None:
    """Redis's string2ll: optional '-', digits, no leading zeros, no '+',
    no blanks, fits in 64 bits. None when the text is not such a number."""
    size = len(text)
    if size == 0 or size > 20:
        return None
    if text.isdigit():
        if text[0] == 48 and size > 1:
            return None
        value = int(text)
        return value if value < 2**63 else None
    if text[0] == 45 and size > 1:  # '-'
        digits = text[1:]
        if digits.isdigit() and digits[0] != 48:
            value = -int(digits)
            return value if value >= -(2**63) else None
    return None


# -- inline commands (sdssplitargs) ------------------------------------------

_BLANKS: Final = frozenset(b" \t\n\r\x0b\x0c")
_TOKEN_END: Final = frozenset(b" \n\r\t")
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES: Final = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}


def split_inline(line: bytes) -> list[bytes] | None:
    """Split an inline request like Redis's sdssplitargs; None when the
    quotes are unbalanced. A NUL byte ends the line (Redis reads it as a C
    string)."""
    nul = line.find(b"\x00")
    if nul >= 0:
        line = line[:nul]
    if b'"' not in line and b"'" not in line and b"\x0b" not in line and b"\x0c" not in line:
        return line.split()
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _BLANKS:
            i += 1
        if i >= n:
            return args
        current = bytearray()
        in_dq = in_sq = False
        while True:
            c = line[i] if i < n else -1
            if in_dq:
                if c == 92 and i + 3 < n and line[i + 1] == 120 \
                        and line[i + 2] in _HEX and line[i + 3] in _HEX:  # \xHH
                    current.append(int(line[i + 2:i + 4], 16))
                    i += 3
                elif c == 92 and i + 1 < n:
                    i += 1
                    current.append(_ESCAPES.get(line[i], line[i]))
                elif c == 34:  # closing "
                    if i + 1 < n and line[i + 1] not in _BLANKS:
                        return None
                    i += 1
                    break
                elif c == -1:
                    return None
                else:
                    current.append(c)
            elif in_sq:
                if c == 92 and i + 1 < n and line[i + 1] == 39:  # \'
                    i += 1
                    current.append(39)
                elif c == 39:
                    if i + 1 < n and line[i + 1] not in _BLANKS:
                        return None
                    i += 1
                    break
                elif c == -1:
                    return None
                else:
                    current.append(c)
            else:
                if c == -1 or c in _TOKEN_END:
                    break
                if c == 34:
                    in_dq = True
                elif c == 39:
                    in_sq = True
                else:
                    current.append(c)
            i += 1
        args.append(bytes(current))


# -- the request parser --------------------------------------------------------

def _stalled(buf: bytearray, start: int, stop: int) -> bool:
    """Redis looks for a line end with strchr(), which stops at a NUL byte:
    with a NUL before the line end it sees no line end at all, and waits
    (until the 64 KiB limit turns that into a protocol error). True when
    that happens to the line ``buf[start:stop]``."""
    return buf.find(b"\x00", start, stop) >= 0


#: Bulks at least this long are copied out of the buffer through a
#: memoryview (one copy) rather than a slice (two); below it the view costs more.
_COPY_ONCE_THRESHOLD: Final = 64 * 1024

#: An aggregate header hiredis must not see: 10 000 elements or more.
_BIG_AGGREGATE: Final = re.compile(rb"[*%~>|][0-9]{5}")

# digits in the decimal form of n, for the common small lengths
_DIGITS: Final = tuple(len(str(i)) for i in range(100_000))


#: Buffers up to this size try the split parser first (see _parse_split);
#: longer pipelines go to hiredis, which is faster per command once set up.
SPLIT_PARSE_MAX = 512
#: More arguments than this in one command: leave it to the other parsers.
SPLIT_PARSE_MAX_ARGS = 64
#: The exact headers the split parser accepts: b"*1".."*64" and b"$0".."$511".
_SPLIT_ARRAY_HEADERS = {b"*%d" % n: n for n in range(1, SPLIT_PARSE_MAX_ARGS + 1)}
_SPLIT_BULK_HEADERS = [b"$%d" % n for n in range(SPLIT_PARSE_MAX)]


class RespParser:
    """Turn received bytes into commands (lists of bytes arguments).

    ``receive_data(data)`` buffers (``b""`` = the peer closed);
    ``next_event()`` returns a command, :data:`NEED_DATA`, a
    :class:`ProtocolViolation` (then the same one forever) or :data:`CLOSED`.
    ``next_commands()`` is the batch form the server uses: every complete
    command buffered, plus the violation that stopped parsing, if any.
    """

    __slots__ = (
        "_args",
        "_args_cost",
        "_buf",
        "_bulklen",
        "_eof",
        "_queue",
        "_remaining",
        "_violation",
        "max_bulk",
        "max_query",
        "use_hiredis",
    )

    def __init__(self, max_bulk: int = DEFAULT_MAX_BULK, *, max_query: int | None = None,
                 use_hiredis: bool | None = None) -> None:
        if max_bulk < 1:
            raise ValueError("max_bulk must be >= 1")
        if use_hiredis and not HIREDIS_AVAILABLE:
            raise RuntimeError("hiredis is not installed")
        self.max_bulk = max_bulk
        #: Bytes one connection may have buffered (unparsed input plus the
        #: arguments of the command being received). Redis's
        #: client-query-buffer-limit is 1 GiB; here four maximum bulks.
        self.max_query = max_query if max_query is not None else max(
            4 * max_bulk, max_bulk + 4 * PROTO_INLINE_MAX_SIZE)
        if self.max_query < max_bulk + PROTO_INLINE_MAX_SIZE:
            raise ValueError("max_query must exceed max_bulk by at least 64 KiB")
        self.use_hiredis = HIREDIS_AVAILABLE if use_hiredis is None else use_hiredis
        self._buf = bytearray()
        self._args: list[bytes] = []   # arguments of the command being received
        self._remaining = 0            # arguments still to come (0: between commands)
        self._bulklen = -1             # length of the bulk being received (-1: header next)
        self._args_cost = 0
        self._violation: ProtocolViolation | None = None
        self._eof = False
        self._queue: deque[Command] = deque()

    # -- public API ----------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while a request is partly received."""
        return self._violation is None and (self._remaining > 0 or len(self._buf) > 0)

    @property
    def buffered(self) -> int:
        """Bytes held for the request in progress (the query buffer)."""
        return len(self._buf) + self._args_cost

    def receive_data(self, data: bytes) -> None:
        if self._violation is not None:
            return
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RuntimeError("data received after end of stream")
        self._buf += data

    def next_commands(self) -> tuple[list[Command], ProtocolViolation | None]:
        """All complete commands buffered, and the violation that ended the
        stream (None while it is well formed). Use this or ``next_event``
        on one parser, not both."""
        out: list[Command] = []
        if self._violation is not None:
            return out, self._violation
        buf = self._buf
        if self._remaining == 0 and len(buf) <= SPLIT_PARSE_MAX and buf[:1] == b"*":
            # Fast path: whole canonical commands and nothing else buffered.
            if self._parse_split(buf, out) == len(buf):
                buf.clear()
                return out, None
            out.clear()  # something odd or partial: the general path decides
        try:
            self._parse(out)
        except _Violation as exc:
            self._fail(str(exc))
        if self._violation is None and self.buffered > self.max_query:
            self._fail("Protocol error: query buffer limit exceeded")
        return out, self._violation

    def next_event(self) -> ParserEvent:
        """The next command, NEED_DATA, a ProtocolViolation (for ever after)
        or CLOSED (end of stream; a partial request is dropped)."""
        if not self._queue:
            commands, violation = self.next_commands()
            self._queue.extend(commands)
            if violation is not None:
                return violation
        if self._queue:
            return self._queue.popleft()
        if self._violation is not None:
            return self._violation
        return CLOSED if self._eof else NEED_DATA

    # -- internals -----------------------------------------------------
    def _fail(self, message: str) -> None:
        self._violation = ProtocolViolation(message)
        self._buf = bytearray()
        self._args = []
        self._remaining = 0
        self._args_cost = 0

    def _parse(self, out: list[Command]) -> None:
        buf = self._buf
        pos = 0
        hiredis = self.use_hiredis
        try:
            while pos < len(buf):
                if hiredis and self._remaining == 0 and buf[pos] == 42:
                    pos = self._parse_hiredis(buf, pos, out)
                    if pos >= len(buf):
                        break
                # Whatever hiredis stopped at (an incomplete or odd command, an
                # inline one) is parsed by the reference parser, one command at
                # a time so that hiredis resumes after it.
                new_pos = self._parse_python(buf, pos, out, 1 if hiredis else -1)
                if new_pos == pos:
                    break
                pos = new_pos
        finally:
            if pos:
                del buf[:pos]

    def _parse_split(self, buf: bytearray, out: list[Command]) -> int:
        """Parse canonical arrays of bulks from the start of a small buffer
        with one ``split``; return the position of the first byte not taken.

        A request of one or a few commands (no pipelining) is the common
        case, and for it one C-level split beats both the byte-walking
        reference parser and setting up a hiredis reader. Only the exact
        form every client library writes is accepted (``*N`` then ``$len``
        equal to the element's length, CRLF everywhere); anything else — an
        element containing CRLF, an odd header, a partial command — is left
        to the other parsers, so no behaviour changes, only speed.
        """
        tokens = bytes(buf).split(b"\r\n")
        complete = len(tokens) - 1  # the last token has no CRLF after it (yet)
        max_bulk = self.max_bulk
        counts = _SPLIT_ARRAY_HEADERS
        bulk_headers = _SPLIT_BULK_HEADERS
        i = pos = 0
        while i < complete:
            count = counts.get(tokens[i])
            if count is None:
                break
            end = i + 1 + 2 * count
            if end > complete:
                break
            args = tokens[i + 2:end:2]
            size = len(tokens[i]) + 2
            for header, arg in zip(tokens[i + 1:end:2], args):
                length = len(arg)  # < SPLIT_PARSE_MAX: the whole buffer is
                if length > max_bulk or header != bulk_headers[length]:
                    return pos
                size += len(header) + length + 4
            out.append(args)
            pos += size
            i = end
        return pos

    def _parse_hiredis(self, buf: bytearray, pos: int, out: list[Command]) -> int:
        """Parse complete canonical RESP arrays from ``pos`` with hiredis;
        return the position of the first byte it did not vouch for."""
        assert _hiredis is not None
        # hiredis allocates an aggregate's element array as soon as it reads
        # the header (``*3000000000`` makes it calloc 24 GB), so it only sees
        # the bytes before the first header-like run of 5+ digits; the
        # reference parser takes the command there (a bulk value that merely
        # looks like one just goes the slow way).
        big = _BIG_AGGREGATE.search(buf, pos)
        end = len(buf) if big is None else big.start()
        if end <= pos:
            return pos
        reader = _hiredis.Reader()
        reader.feed(buf, pos, end - pos)
        max_bulk = self.max_bulk
        digits = _DIGITS
        while True:
            try:
                cmd = reader.gets()
            except _hiredis.ProtocolError:
                return pos
            if type(cmd) is not list or not cmd:  # False (incomplete), None, *0, ...
                return pos
            # Check the array was written the one way Redis accepts: each
            # element at the offset we compute must start with '$'. Once that
            # holds for every element, hiredis and we agree on every byte.
            try:
                off = pos + digits[len(cmd)] + 3
                for arg in cmd:
                    if buf[off] != 36:
                        return pos
                    size = len(arg)
                    if size > max_bulk:
                        return pos
                    off += digits[size] + 5 + size if size < 100_000 else len(str(size)) + 5 + size
            except (TypeError, IndexError):  # None ($-1), an error object, ...
                return pos
            out.append(cmd)
            pos = off

    def _parse_python(self, buf: bytearray, pos: int, out: list[Command], limit: int) -> int:
        """The reference parser: parse from ``pos`` until data runs out or
        ``limit`` commands were produced (-1: no limit). Keeps the state of a
        partly received command between calls, as Redis's client struct does."""
        end = len(buf)
        max_bulk = self.max_bulk
        while pos < end and limit != 0:
            if self._remaining == 0:
                if buf[pos] != 42:  # not '*': an inline command
                    newline = buf.find(b"\n", pos)
                    if newline < 0 or _stalled(buf, pos, newline):
                        if end - pos > PROTO_INLINE_MAX_SIZE:
                            raise _Violation("Protocol error: too big inline request")
                        return pos
                    stop = newline - 1 if newline > pos and buf[newline - 1] == 13 else newline
                    if stop - pos > PROTO_INLINE_MAX_SIZE:
                        # Redis only notices when the line arrives in pieces;
                        # we refuse it however it arrives, so the limit is exact.
                        raise _Violation("Protocol error: too big inline request")
                    argv = split_inline(bytes(buf[pos:stop]))
                    if argv is None:
                        raise _Violation("Protocol error: unbalanced quotes in request")
                    pos = newline + 1
                    if argv:
                        out.append(argv)
                        limit -= 1
                    continue
                cr = buf.find(b"\r", pos)
                if cr < 0:
                    if end - pos > PROTO_INLINE_MAX_SIZE:
                        raise _Violation("Protocol error: too big mbulk count string")
                    return pos
                if cr > end - 2:  # the byte after '\r' has not arrived
                    return pos
                count = _strict_int(buf[pos + 1:cr])
                if count is None or count > MAX_MULTIBULK_LEN:
                    if _stalled(buf, pos, cr):
                        if end - pos > PROTO_INLINE_MAX_SIZE:
                            raise _Violation("Protocol error: too big mbulk count string")
                        return pos
                    raise _Violation("Protocol error: invalid multibulk length")
                pos = cr + 2
                if count <= 0:  # Redis ignores empty and negative arrays
                    continue
                self._remaining = count
                self._args = []
                self._args_cost = 0
            args = self._args
            while self._remaining:
                bulklen = self._bulklen
                if bulklen < 0:
                    cr = buf.find(b"\r", pos)
                    if cr < 0:
                        if end - pos > PROTO_INLINE_MAX_SIZE:
                            raise _Violation("Protocol error: too big bulk count string")
                        return pos
                    if cr > end - 2:
                        return pos
                    text = buf[pos + 1:cr]
                    if buf[pos] == 36 and text.isdigit() and (text[0] != 48 or len(text) == 1) \
                            and len(text) < 19:
                        bulklen = int(text)
                    else:
                        if _stalled(buf, pos, cr):
                            if end - pos > PROTO_INLINE_MAX_SIZE:
                                raise _Violation("Protocol error: too big bulk count string")
                            return pos
                        if buf[pos] != 36:
                            raise _Violation(
                                f"Protocol error: expected '$', got '{chr(buf[pos])}'")
                        bulklen = -1
                    if bulklen < 0 or bulklen > max_bulk:
                        raise _Violation("Protocol error: invalid bulk length")
                    pos = cr + 2
                    self._bulklen = bulklen
                if end - pos < bulklen + 2:
                    return pos
                if bulklen < _COPY_ONCE_THRESHOLD:
                    args.append(bytes(buf[pos:pos + bulklen]))
                else:  # one copy instead of two (slice, then bytes)
                    with memoryview(buf) as view:
                        args.append(bytes(view[pos:pos + bulklen]))
                self._args_cost += bulklen + _ARG_OVERHEAD
                pos += bulklen + 2
                self._bulklen = -1
                self._remaining -= 1
            out.append(args)
            self._args = []
            self._args_cost = 0
            limit -= 1
        return pos


# -- replies -------------------------------------------------------------------

class SimpleString(str):
    """``+text`` (no CR/LF allowed)."""

    __slots__ = ()


class ErrorReply(str):
    """``-PREFIX message``: the text must start with its prefix (ERR, WRONGTYPE...)."""

    __slots__ = ()


class Verbatim(str):
    """RESP3 ``=`` verbatim text (``txt``), a bulk string in RESP2 (INFO)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Map:
    """RESP3 ``%`` map; a flat array of key, value, ... in RESP2."""

    items: Sequence[tuple[Any, Any]]


@dataclass(frozen=True, slots=True)
class RespSet:
    """RESP3 ``~`` set; an array in RESP2."""

    items: Sequence[Any]


@dataclass(frozen=True, slots=True)
class Push:
    """RESP3 ``>`` push message; an array in RESP2."""

    items: Sequence[Any]


@dataclass(frozen=True, slots=True)
class Double:
    """A double already formatted as Redis prints it (``text``): RESP3
    ``,text``, a bulk string in RESP2 (ZSCORE, ZINCRBY...)."""

    text: bytes


@dataclass(frozen=True, slots=True)
class Pairs:
    """Pairs as Redis sends them: a flat array in RESP2, an array of
    2-element arrays in RESP3 (HRANDFIELD WITHVALUES, ZRANGE WITHSCORES)."""

    items: Sequence[tuple[Any, Any]]


@dataclass(frozen=True, slots=True)
class ArrayMap:
    """A RESP3 ``%`` map; in RESP2 an array of 2-element arrays (XREAD's
    streams, where Redis nests the pairs instead of flattening them)."""

    items: Sequence[tuple[Any, Any]]


class _NullArray(enum.Enum):
    NULL_ARRAY = "null array"


#: Redis's null array: ``*-1`` in RESP2, ``_`` in RESP3 (LMPOP of nothing...).
NULL_ARRAY: Final = _NullArray.NULL_ARRAY

OK: Final = b"+OK\r\n"
PONG: Final = b"+PONG\r\n"
_NULL2: Final = b"$-1\r\n"
_NULL_ARRAY2: Final = b"*-1\r\n"
_NULL3: Final = b"_\r\n"


def encode_bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def encode_integer(value: int) -> bytes:
    return b":%d\r\n" % value


def encode_error(text: str) -> bytes:
    """``text`` starts with the prefix (``ERR ...``); CR/LF become blanks
    so a reply can never be split into two."""
    return b"-" + text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace") + b"\r\n"


def encode_null(proto: int, *, array: bool = False) -> bytes:
    """RESP3 ``_``; RESP2 ``$-1`` (or ``*-1`` where Redis uses a null array)."""
    if proto >= 3:
        return _NULL3
    return _NULL_ARRAY2 if array else _NULL2


def _format_double(value: float) -> bytes:
    if math.isnan(value):
        return b"nan"
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    text = repr(value)
    return text[:-2].encode() if text.endswith(".0") else text.encode()


def encode(value: Any, proto: int = 2) -> bytes:
    """Serialize a reply. bytes -> bulk, str -> bulk (UTF-8), int -> integer,
    bool -> boolean, float -> double, None -> null, list/tuple -> array,
    dict/Map -> map, plus SimpleString, ErrorReply, Verbatim, RespSet, Push."""
    parts: list[bytes] = []
    _encode_into(parts, value, proto)
    return b"".join(parts)


def _encode_into(parts: list[bytes], value: Any, proto: int) -> None:
    if isinstance(value, bytes):
        parts.append(b"$%d\r\n%b\r\n" % (len(value), value))
    elif isinstance(value, SimpleString):
        parts.append(b"+" + value.replace("\r", " ").replace("\n", " ").encode() + b"\r\n")
    elif isinstance(value, ErrorReply):
        parts.append(encode_error(value))
    elif isinstance(value, Verbatim):
        data = value.encode()
        if proto >= 3:
            parts.append(b"=%d\r\ntxt:%b\r\n" % (len(data) + 4, data))
        else:
            parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    elif isinstance(value, str):
        data = value.encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    elif isinstance(value, bool):  # before int: bool is an int
        if proto >= 3:
            parts.append(b"#t\r\n" if value else b"#f\r\n")
        else:
            parts.append(b":1\r\n" if value else b":0\r\n")
    elif isinstance(value, int):
        parts.append(b":%d\r\n" % value)
    elif isinstance(value, float):
        text = _format_double(value)
        if proto >= 3:
            parts.append(b",%b\r\n" % text)
        else:
            parts.append(b"$%d\r\n%b\r\n" % (len(text), text))
    elif value is None:
        parts.append(_NULL3 if proto >= 3 else _NULL2)
    elif isinstance(value, Double):
        if proto >= 3:
            parts.append(b",%b\r\n" % value.text)
        else:
            parts.append(b"$%d\r\n%b\r\n" % (len(value.text), value.text))
    elif isinstance(value, Pairs):
        if proto >= 3:
            parts.append(b"*%d\r\n" % len(value.items))
            for first, second in value.items:
                parts.append(b"*2\r\n")
                _encode_into(parts, first, proto)
                _encode_into(parts, second, proto)
        else:
            parts.append(b"*%d\r\n" % (2 * len(value.items)))
            for first, second in value.items:
                _encode_into(parts, first, proto)
                _encode_into(parts, second, proto)
    elif isinstance(value, ArrayMap):
        parts.append((b"%%%d\r\n" if proto >= 3 else b"*%d\r\n") % len(value.items))
        for first, second in value.items:
            if proto < 3:
                parts.append(b"*2\r\n")
            _encode_into(parts, first, proto)
            _encode_into(parts, second, proto)
    elif value is NULL_ARRAY:
        parts.append(_NULL3 if proto >= 3 else _NULL_ARRAY2)
    elif isinstance(value, (list, tuple)):
        parts.append(b"*%d\r\n" % len(value))
        for item in value:
            _encode_into(parts, item, proto)
    elif isinstance(value, (dict, Map)):
        pairs: Sequence[tuple[Any, Any]] = (
            list(value.items()) if isinstance(value, dict) else value.items)
        parts.append((b"%%%d\r\n" if proto >= 3 else b"*%d\r\n")
                     % (len(pairs) if proto >= 3 else 2 * len(pairs)))
        for key, item in pairs:
            _encode_into(parts, key, proto)
            _encode_into(parts, item, proto)
    elif isinstance(value, (RespSet, Push)):
        marker = (b"~" if isinstance(value, RespSet) else b">") if proto >= 3 else b"*"
        parts.append(b"%b%d\r\n" % (marker, len(value.items)))
        for item in value.items:
            _encode_into(parts, item, proto)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as RESP")


def encode_command(args: Iterable[bytes]) -> bytes:
    """A request as clients send it: an array of bulk strings."""
    items = list(args)
    return b"*%d\r\n" % len(items) + b"".join(
        b"$%d\r\n%b\r\n" % (len(a), a) for a in items)
