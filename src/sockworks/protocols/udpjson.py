"""The UDP JSON request/response codec: one datagram in, at most one datagram out.

Sans-IO: no sockets, no clock. The caller passes the current time and the
counters a ``stats`` request reports. Every datagram is handled on its own
(UDP has no stream, so there is nothing to buffer):

    request = decode(datagram)                  # Request or BadRequest, never raises
    body = reply_body(request, now=..., counters=...)
    data = encode(body, request_size=len(datagram))   # bytes, or None: send nothing

or all three at once with :func:`respond`, which also reports what happened
(so the server can count errors and dropped replies).

Requests are JSON objects with a ``type``:

    {"type": "time"}                -> {"time": "2026-11-28T05:37:08.123+00:00"}
    {"type": "ping"}                -> {"pong": true}
    {"type": "echo", "data": X}     -> {"data": X}
    {"type": "stats"}               -> {"stats": {...counters...}}

An ``id`` is copied into the reply when it is a JSON scalar (string of at most
:data:`MAX_ID_BYTES` UTF-8 bytes, number, true/false/null); any other ``id``
is refused with ``{"error": "invalid id"}`` so a client can never make the
server reflect a large value.

The anti-amplification rule is enforced in one place, :func:`encode`, for
every reply including errors: a reply is never longer than
:data:`AMPLIFICATION_FACTOR` times its request and never longer than
:data:`MAX_REPLY`. A reply over the rule is replaced by a short
``{"error": "reply too large", "pad_to": N}`` (pad the request with trailing
whitespace to N bytes and ask again); when even that error would break the
rule, nothing is sent (:data:`Reply.data` is None) and the server counts it.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "AMPLIFICATION_FACTOR",
    "DEFAULT_MAX_DATAGRAM",
    "MAX_DEPTH",
    "MAX_ID_BYTES",
    "MAX_NUMBER_CHARS",
    "MAX_REPLY",
    "NO_ID",
    "PAD_TO",
    "REQUEST_TYPES",
    "BadRequest",
    "Reply",
    "Request",
    "decode",
    "encode",
    "reply_body",
    "reply_limit",
    "respond",
]

#: Largest reply ever sent: 1232 bytes is the EDNS payload size DNS Flag Day
#: 2020 settled on (IPv6 minimum MTU 1280 - 40 IPv6 header - 8 UDP header),
#: so a reply is never fragmented on any IPv6 path and on practically no IPv4
#: path. Fragments are what reflection attacks and lossy paths punish most.
MAX_REPLY = 1232

#: A reply is at most this many times the size of its request. RFC 9000
#: section 8 ("Address Validation") limits a QUIC server to three times the
#: bytes received from an unvalidated address, for exactly our reason: the
#: source address of a UDP datagram can be forged, so a larger reply turns
#: the server into an amplifier against the forged victim.
AMPLIFICATION_FACTOR = 3

#: Receive limit: requests larger than this are refused with
#: ``datagram too large``. The same 1232 bytes as MAX_REPLY: an echo of a
#: larger request could never be answered anyway, and a request that needs
#: fragmenting is not one this service wants.
DEFAULT_MAX_DATAGRAM = 1232

#: Deepest nesting of arrays/objects accepted. Checked by a scan of the
#: brackets *before* json.loads, so ``[[[[...`` 100,000 deep costs one linear
#: pass instead of a RecursionError deep in the parser. 32 is far more than
#: any request here needs (echo data is the only nested field).
MAX_DEPTH = 32

#: Longest number literal accepted (sign, digits, fraction and exponent).
#: Python 3.11 refuses to parse ints over 4300 digits (ValueError, CVE-2020-
#: 10735's quadratic int()); we refuse far earlier with a specific message.
MAX_NUMBER_CHARS = 100

#: Longest string ``id`` copied into a reply (UTF-8 bytes): enough for a UUID
#: or a counter, small enough that the id never dominates a reply.
MAX_ID_BYTES = 64

#: Size a client pads its requests to (with trailing whitespace, which JSON
#: ignores) so that any reply up to MAX_REPLY passes the amplification rule:
#: ceil(1232 / 3). QUIC clients pad their first datagram for the same reason.
PAD_TO = -(-MAX_REPLY // AMPLIFICATION_FACTOR)

REQUEST_TYPES = ("time", "ping", "echo", "stats")

#: Compact output: every byte counts against the amplification budget.
_SEPARATORS = (",", ":")

JsonScalar = str | int | float | bool | None


class _NoId(enum.Enum):
    NO_ID = "NO_ID"


#: The request had no (usable) ``id``: the reply carries none.
NO_ID = _NoId.NO_ID

RequestId = JsonScalar | _NoId


@dataclass(frozen=True, slots=True)
class Request:
    """A well-formed request. ``data`` is only meaningful for ``echo``."""

    type: str
    size: int
    id: RequestId = NO_ID
    data: object = None


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A datagram that is not a valid request; ``error`` is the reply's text."""

    error: str
    size: int
    id: RequestId = NO_ID


@dataclass(frozen=True, slots=True)
class Reply:
    """The outcome of one datagram (see :func:`respond`).

    ``data`` is the datagram to send, or None when the amplification rule
    forbids any answer. ``error`` is the error text when the request was
    refused (including ``reply too large``), else None.
    """

    data: bytes | None
    error: str | None


class _NumberError(ValueError):
    """Raised from json.loads' number hooks; message is the reply's error."""


# A JSON string (possibly unterminated: then it runs to the end of the text)
# or a single bracket. Matching strings whole is what lets the depth scan
# ignore brackets inside them. Linear: the alternatives inside never overlap.
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def _too_deep(text: str, limit: int) -> bool:
    # Fast path: fewer opening brackets than the limit cannot nest deeper
    # (str.count runs in C; the token scan below only for suspicious input).
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token == "[" or token == "{":
            depth += 1
            if depth > limit:
                return True
        elif token == "]" or token == "}":
            depth -= 1
    return False


def _parse_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise _NumberError("number too large")
    return int(literal)


def _parse_float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise _NumberError("number too large")
    value = float(literal)
    if not math.isfinite(value):      # 1e400 parses to inf without parse_constant
        raise _NumberError("number out of range")
    return value


def _parse_constant(name: str) -> float:
    # json.loads accepts NaN, Infinity and -Infinity by default (not JSON).
    raise _NumberError(f"{name} is not valid JSON")


# One decoder and two encoders, built once: json.loads/json.dumps with any
# keyword argument construct a new JSONDecoder/JSONEncoder on every call.
_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float,
                            parse_constant=_parse_constant)
_ENCODER_UTF8 = json.JSONEncoder(separators=_SEPARATORS, ensure_ascii=False, allow_nan=False)
_ENCODER_ASCII = json.JSONEncoder(separators=_SEPARATORS, allow_nan=False)


def _check_id(value: object) -> RequestId | None:
    """The id to copy, or None when the id is not acceptable."""
    if value is None or isinstance(value, (bool, int, float)):
        return value  # numbers are already bounded by MAX_NUMBER_CHARS
    if isinstance(value, str):
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:    # a lone surrogate ("\ud800") cannot be sent back as UTF-8
            return None
        return value if size <= MAX_ID_BYTES else None
    return None


def decode(datagram: bytes, *, max_size: int = DEFAULT_MAX_DATAGRAM,
           max_depth: int = MAX_DEPTH) -> Request | BadRequest:
    """Turn one datagram into a :class:`Request` or a :class:`BadRequest`.

    Never raises on any input. The caller must pass the *whole* datagram: a
    server receives into a buffer of ``max_size + 1`` bytes so that a longer
    datagram shows up here as too large instead of silently truncated.
    """
    size = len(datagram)
    if size > max_size:
        return BadRequest("datagram too large", size)
    try:
        text = datagram.decode("utf-8")
    except UnicodeDecodeError:
        return BadRequest("invalid UTF-8", size)
    if _too_deep(text, max_depth):
        return BadRequest("nesting too deep", size)
    try:
        doc = _DECODER.decode(text)
    except _NumberError as exc:
        return BadRequest(str(exc), size)
    except json.JSONDecodeError:
        return BadRequest("invalid JSON", size)
    except ValueError:
        # int() over sys.get_int_max_str_digits(); unreachable with our bound
        # unless it is raised, but a limit must not depend on another limit.
        return BadRequest("number too large", size)
    except RecursionError:
        return BadRequest("nesting too deep", size)
    if not isinstance(doc, dict):
        return BadRequest("request must be a JSON object", size)
    request_id: RequestId = NO_ID
    if "id" in doc:
        checked = _check_id(doc["id"])
        if checked is None and doc["id"] is not None:
            return BadRequest("invalid id", size)
        request_id = checked
    kind = doc.get("type")
    if kind is None:
        return BadRequest("missing type", size, request_id)
    if not isinstance(kind, str) or kind not in REQUEST_TYPES:
        return BadRequest("unknown type", size, request_id)
    if kind == "echo":
        if "data" not in doc:
            return BadRequest("missing data", size, request_id)
        return Request(kind, size, request_id, doc["data"])
    return Request(kind, size, request_id)


def reply_body(request: Request | BadRequest, *, now: datetime | Callable[[], datetime],
               counters: Mapping[str, int]) -> dict[str, object]:
    """The reply object for a decoded request (amplification not yet applied).

    ``now`` (or a function returning it, called only for ``time``: reading
    the clock per datagram would cost more than a ping) must be
    timezone-aware: the reply's ISO-8601 time carries its offset.
    ``counters`` is what a ``stats`` request reports.
    """
    body: dict[str, object]
    if isinstance(request, BadRequest):
        body = {"error": request.error}
    elif request.type == "time":
        if callable(now):
            now = now()
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        # Milliseconds: precise enough for a time service whose answer is a
        # network round trip old, and 3 bytes shorter than microseconds.
        body = {"time": now.isoformat(timespec="milliseconds")}
    elif request.type == "ping":
        body = {"pong": True}
    elif request.type == "echo":
        body = {"data": request.data}
    else:
        body = {"stats": dict(counters)}
    if request.id is not NO_ID:
        body["id"] = request.id
    return body


def _dumps(body: Mapping[str, object]) -> bytes:
    # ensure_ascii=False: "é" stays 2 bytes instead of 6 (\u00e9), so an echo
    # is no larger than its request. A lone surrogate cannot be UTF-8: fall
    # back to escapes (then it is as long as the escape the request used).
    try:
        return _ENCODER_UTF8.encode(body).encode("utf-8")
    except UnicodeEncodeError:
        return _ENCODER_ASCII.encode(body).encode("ascii")


def reply_limit(request_size: int) -> int:
    """Largest reply allowed for a request of ``request_size`` bytes."""
    return min(MAX_REPLY, AMPLIFICATION_FACTOR * request_size)


def _encode(body: Mapping[str, object], request_size: int) -> tuple[bytes | None, bool]:
    """(reply or None, whether the reply was replaced by ``reply too large``)."""
    limit = reply_limit(request_size)
    data = _dumps(body)
    if len(data) <= limit:
        return data, False
    if "error" in body:
        return None, False  # an error is already as short as it gets
    refusal: dict[str, object] = {"error": "reply too large"}
    if len(data) <= MAX_REPLY:
        # Padding the request to this size would make the reply allowed.
        refusal["pad_to"] = -(-len(data) // AMPLIFICATION_FACTOR)
    if "id" in body:
        refusal["id"] = body["id"]
    short = _dumps(refusal)
    return (short if len(short) <= limit else None), True


def encode(body: Mapping[str, object], *, request_size: int) -> bytes | None:
    """Serialize ``body``, enforcing the anti-amplification rule.

    Returns the reply, a short ``reply too large`` error in its place, or
    None when no answer at all fits within the rule.
    """
    return _encode(body, request_size)[0]


def respond(datagram: bytes, *, now: datetime | Callable[[], datetime],
            counters: Mapping[str, int],
            max_size: int = DEFAULT_MAX_DATAGRAM) -> Reply:
    """decode + reply_body + encode for one datagram."""
    request = decode(datagram, max_size=max_size)
    body = reply_body(request, now=now, counters=counters)
    data, refused = _encode(body, request.size)
    if isinstance(request, BadRequest):
        return Reply(data, request.error)
    return Reply(data, "reply too large" if refused else None)
