"""The RESP service's string and keyspace commands, and reply helpers.

A handler ``cmd_x(ctx, argv)`` gets the connection's
:class:`~sockworks.services.resp_context.CommandContext` and the arguments
(arity already checked) and returns either the reply bytes (no store access,
or an argument error) or a :class:`Plan`: one typed store call
(``lambda st: st.get(key)``) plus how its result is shown, or a group of
calls run through ``Store.run_grouped``. The session runs plans at once, or
all of a transaction's at EXEC. Replies and error texts are Redis 7.2's; the
tests compare them byte for byte with a real redis-server. Connection and
server commands live in ``resp_admin.py``; the table naming them all in
``resp_table.py``; the session and service in ``resp.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

from sockworks.protocols.resp import (
    OK,
    encode,
    encode_bulk,
    encode_error,
    encode_null,
)
from sockworks.services.resp_context import CommandContext as Ctx
from sockworks.services.resp_context import Plan
from sockworks.storage.base import BackendError, SetResult, Store, StoreError
from sockworks.storage.model.longdouble import (
    format_long_double as _format_long_double,
)
from sockworks.storage.model.longdouble import (
    long_double as _long_double,
)
from sockworks.storage.model.longdouble import (
    round_long_double as _round_long_double,
)

__all__ = [
    "BUSY_REPLY", "DEFAULT_MIN_REPLICAS_MAX_LAG", "EXECABORT", "EXECABORT_OOM", "NOREPLICAS",
    "NOT_INTEGER", "OOM_REPLY", "QUEUED",
    "QUEUED_OVERHEAD",
    "REDIS_VERSION", "SYNTAX_ERROR", "arity_ok", "error_quoting",
    "int_arg", "quoted", "store_error", "unknown_command", "unknown_subcommand",
    "wrong_args",
]

#: What INFO and HELLO report as ``redis_version``: clients enable features
#: by version, and everything implemented here behaves as in Redis 7.2.
REDIS_VERSION: Final = "7.2.0"

I64_MIN: Final = -(1 << 63)
I64_MAX: Final = (1 << 63) - 1

#: Longest argument quoted back in "unknown command" errors, as Redis.
_ERROR_ARG_LIMIT: Final = 128

QUEUED: Final = b"+QUEUED\r\n"
EXECABORT: Final = b"-EXECABORT Transaction discarded because of previous errors.\r\n"
#: Redis's reply to a command that may add data while over maxmemory.
OOM_REPLY: Final = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
#: EXEC of a transaction holding such a command, over maxmemory.
EXECABORT_OOM: Final = (b"-EXECABORT Transaction discarded because of: OOM command not "
                        b"allowed when used memory > 'maxmemory'.\r\n")
#: Redis's reply to a write while min-replicas-to-write is not met (here:
#: whenever it is set, as there are no replicas).
NOREPLICAS: Final = b"-NOREPLICAS Not enough good replicas to write.\r\n"
#: Redis's min-replicas-max-lag default (seconds).
DEFAULT_MIN_REPLICAS_MAX_LAG: Final = 10
NOT_INTEGER: Final = b"-ERR value is not an integer or out of range\r\n"
SYNTAX_ERROR: Final = b"-ERR syntax error\r\n"
BUSY_REPLY: Final = b"-ERR max number of clients reached\r\n"
#: What a queued argument costs beyond its bytes (PyBytes header + list slot).
QUEUED_OVERHEAD: Final = 48

#: Error prefixes a store message may already carry (the Redis backend passes
#: Redis's own errors through); anything else gets Redis's generic "ERR".
_PREFIXED: Final = ("WRONGTYPE ", "LOADING ", "READONLY ", "BUSY ", "CROSSSLOT ", "OOM ",
                    "NOSCRIPT ", "MOVED ", "ASK ", "TRYAGAIN ", "CLUSTERDOWN ", "MASTERDOWN ",
                    "NOGROUP ", "BUSYGROUP ", "BUSYKEY ")


def store_error(exc: StoreError) -> bytes:
    if isinstance(exc, BackendError):
        return encode_error(exc.line)  # the Redis backend's own reply
    message = str(exc)
    return encode_error(message if message.startswith(_PREFIXED) else "ERR " + message)


def int_arg(value: bytes) -> int | None:
    """A Redis integer argument (string2ll rules), or None."""
    if len(value) > 20:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    # int() also accepts "+1", " 1", "1_0" and "01": Redis does not.
    if b"%d" % number != value or not I64_MIN <= number <= I64_MAX:
        return None
    return number


def wrong_args(name: str) -> bytes:
    return b"-ERR wrong number of arguments for '%b' command\r\n" % name.encode()


def quoted(arg: bytes) -> str:
    """An argument as Redis prints it in an error (``%.128s``): cut at the
    first NUL and at 128 bytes; bytes kept as they are (latin-1 round trip,
    see :func:`error_quoting`)."""
    nul = arg.find(b"\x00")
    return (arg if nul < 0 else arg[:nul])[:_ERROR_ARG_LIMIT].decode("latin-1")


def error_quoting(text: str) -> bytes:
    """An error reply whose text quotes client bytes (via :func:`quoted`):
    encoded back byte for byte, CR/LF turned into blanks as Redis does."""
    return b"-" + text.replace("\r", " ").replace("\n", " ").encode("latin-1") + b"\r\n"


def unknown_command(argv: Sequence[bytes]) -> bytes:
    shown = ""
    for arg in argv[1:]:
        if len(shown) >= _ERROR_ARG_LIMIT:
            break
        shown += "'" + quoted(arg)[: _ERROR_ARG_LIMIT - len(shown)] + "' "
    return error_quoting(
        f"ERR unknown command '{quoted(argv[0])}', with args beginning with: {shown}")


def unknown_subcommand(argv: Sequence[bytes]) -> bytes:
    return error_quoting(f"ERR unknown subcommand '{quoted(argv[1])}'. "
                        f"Try {argv[0].decode('latin-1').upper()} HELP.")


def arity_ok(arity: int, argc: int) -> bool:
    return argc == arity if arity >= 0 else argc >= -arity


# -- reply helpers ---------------------------------------------------------------

def _ok(_: object) -> bytes:
    return OK


def _integer(result: int) -> bytes:
    return b":%d\r\n" % result


def _bulk_or_null(proto: int) -> Callable[[bytes | None], bytes]:
    null = encode_null(proto)

    def finish(value: bytes | None) -> bytes:
        return null if value is None else encode_bulk(value)
    return finish


def _array_of_values(proto: int) -> Callable[[list[bytes | None]], bytes]:
    null = encode_null(proto)

    def finish(values: list[bytes | None]) -> bytes:
        return b"*%d\r\n" % len(values) + b"".join(
            null if v is None else b"$%d\r\n%b\r\n" % (len(v), v) for v in values)
    return finish


# -- command handlers ---------------------------------------------------------------

def cmd_get(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    key = argv[1]
    return Plan(lambda st: st.get(key), _bulk_or_null(s.proto))


def cmd_mget(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    keys = argv[1:]
    return Plan(lambda st: st.mget(keys), _array_of_values(s.proto))


@dataclass(frozen=True, slots=True)
class SetOptions:
    """SET's options, as ``Store.set`` keywords (``px`` relative ms)."""

    px: int | None = None
    nx: bool = False
    xx: bool = False
    get: bool = False
    keepttl: bool = False

    def run(self, store: Store, key: bytes, value: bytes, px: int | None = None) -> SetResult:
        """``store.set`` with these options (``px`` given: that TTL instead)."""
        return store.set(key, value, px=self.px if px is None else px, nx=self.nx,
                         xx=self.xx, get=self.get, keepttl=self.keepttl)


def _parse_set_options(argv: list[bytes], start: int, command: str) -> SetOptions | bytes:
    """SET's options from argv[start:], or an error reply."""
    px: int | None = None
    nx = xx = get = keepttl = expiry_seen = False
    i = start
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"NX" and not xx:
            nx = True
        elif opt == b"XX" and not nx:
            xx = True
        elif opt == b"GET":
            get = True
        elif opt == b"KEEPTTL" and not expiry_seen:
            keepttl = True
            expiry_seen = True
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and not expiry_seen \
                and i + 1 < len(argv):
            number = int_arg(argv[i + 1])
            if number is None:
                return NOT_INTEGER
            if number <= 0:
                return encode_error(f"ERR invalid expire time in '{command}' command")
            if opt in (b"EX", b"EXAT"):
                if number > I64_MAX // 1000:
                    return encode_error(f"ERR invalid expire time in '{command}' command")
                number *= 1000
            if opt in (b"EXAT", b"PXAT"):
                # Absolute time, made relative now (<= 0: already past).
                number -= time.time_ns() // 1_000_000
            px = number
            expiry_seen = True
            i += 1
        else:
            return SYNTAX_ERROR
        i += 1
    return SetOptions(px, nx, xx, get, keepttl)


def cmd_set(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    options = _parse_set_options(argv, 3, "set")
    if isinstance(options, bytes):
        return options
    get = options.get
    null = encode_null(s.proto)

    def finish(result: SetResult) -> bytes:
        if get:
            return null if result.old is None else encode_bulk(result.old)
        return OK if result.written else null

    key, value = argv[1], argv[2]
    if options.px is not None and options.px <= 0:
        return _set_already_expired(key, value, options, finish)
    return Plan(lambda st: options.run(st, key, value), finish, True)


def _set_already_expired(key: bytes, value: bytes, options: SetOptions,
                         finish: Callable[[SetResult], bytes]) -> Plan[Any]:
    """SET with EXAT/PXAT in the past: Redis writes the key and it expires at
    once, so the key is gone afterwards (GET and NX/XX still see the old
    state first)."""
    if not (options.nx or options.xx or options.get):
        return Plan(lambda st: st.delete([key]), _ok, True)

    def body(store: Store) -> bytes:
        if not store.isolates_groups:
            # The set and the delete could not be one unit (Redis): the
            # shortest TTL instead.
            return finish(options.run(store, key, value, px=1))
        result = options.run(store, key, value, px=1)
        if result.written:
            store.delete([key])
        return finish(result)
    return _read_modify_write(body)


def cmd_setnx(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    key, value = argv[1], argv[2]
    return Plan(lambda st: st.set(key, value, nx=True),
                lambda r: b":1\r\n" if r.written else b":0\r\n", True)


def _setex(s: Ctx, argv: list[bytes], scale: int, command: str) -> bytes | Plan[Any]:
    number = int_arg(argv[2])
    if number is None:
        return NOT_INTEGER
    if number <= 0 or number > I64_MAX // scale:
        return encode_error(f"ERR invalid expire time in '{command}' command")
    key, value, px = argv[1], argv[3], number * scale
    return Plan(lambda st: st.set(key, value, px=px), _ok, True)


def cmd_setex(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    return _setex(s, argv, 1000, "setex")


def cmd_psetex(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    return _setex(s, argv, 1, "psetex")


def cmd_mset(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    if len(argv) % 2 == 0:
        return wrong_args("mset")
    pairs = list(zip(argv[1::2], argv[2::2]))
    return Plan(lambda st: st.mset(pairs), _ok, True)


def cmd_del(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    keys = argv[1:]
    return Plan(lambda st: st.delete(keys), _integer, True)


def cmd_exists(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    keys = argv[1:]
    return Plan(lambda st: st.exists(keys), _integer)


def _incr(key: bytes, delta: int) -> Plan[Any]:
    return Plan(lambda st: st.incrby(key, delta), _integer, True)


def cmd_incr(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    return _incr(argv[1], 1)


def cmd_decr(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    return _incr(argv[1], -1)


def cmd_incrby(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    delta = int_arg(argv[2])
    if delta is None:
        return NOT_INTEGER
    return _incr(argv[1], delta)


def cmd_decrby(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    delta = int_arg(argv[2])
    if delta is None:
        return NOT_INTEGER
    if delta == I64_MIN:  # -delta does not fit: Redis's own message
        return b"-ERR decrement would overflow\r\n"
    return _incr(argv[1], -delta)


def _expire(s: Ctx, argv: list[bytes], scale: int, command: str,
            absolute: bool = False) -> bytes | Plan[Any]:
    number = int_arg(argv[2])
    if number is None:
        return NOT_INTEGER
    flags: set[bytes] = set()
    for arg in argv[3:]:
        flag = arg.upper()
        if flag not in (b"NX", b"XX", b"GT", b"LT"):
            return error_quoting(f"ERR Unsupported option {quoted(arg)}")
        flags.add(flag)
    if b"NX" in flags and len(flags) > 1:
        return b"-ERR NX and XX, GT or LT options at the same time are not compatible\r\n"
    if b"GT" in flags and b"LT" in flags:
        return b"-ERR GT and LT options at the same time are not compatible\r\n"
    # C's division truncates: Redis's bounds are LLONG_MIN/1000, LLONG_MAX/1000.
    if not -(-I64_MIN // scale) <= number <= I64_MAX // scale:
        return encode_error(f"ERR invalid expire time in '{command}' command")
    ms = number * scale
    now = time.time_ns() // 1_000_000
    if absolute:
        ms -= now  # EXPIREAT/PEXPIREAT: a time already past deletes the key
    elif ms > I64_MAX - now:
        return encode_error(f"ERR invalid expire time in '{command}' command")
    key = argv[1]
    if flags:
        return _conditional_expire(key, ms, flags)
    return Plan(lambda st: st.pexpire(key, ms), _integer, True)


def _conditional_expire(key: bytes, ms: int, flags: set[bytes]) -> Plan[Any]:
    """EXPIRE with NX/XX/GT/LT: read the TTL and set it as one group (one
    unit where the store isolates groups)."""

    def decide(store: Store) -> bytes:
        current = store.pttl(key)
        if current == -2:
            return b":0\r\n"
        # A key without a TTL counts as an infinite one, as in Redis.
        if (b"NX" in flags and current != -1) or (b"XX" in flags and current == -1) \
                or (b"GT" in flags and (current == -1 or ms <= current)) \
                or (b"LT" in flags and current != -1 and ms >= current):
            return b":0\r\n"
        return _integer(store.pexpire(key, ms))
    return _read_modify_write(decide)


def cmd_expire(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    return _expire(s, argv, 1000, "expire")


def cmd_pexpire(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    return _expire(s, argv, 1, "pexpire")


def _ttl_seconds(ms: int) -> bytes:
    # Redis rounds to the nearest second: (ttl + 500) / 1000.
    return b":%d\r\n" % (ms if ms < 0 else (ms + 500) // 1000)


def cmd_ttl(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    key = argv[1]
    return Plan(lambda st: st.pttl(key), _ttl_seconds)


def cmd_pttl(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    key = argv[1]
    return Plan(lambda st: st.pttl(key), _integer)


def cmd_persist(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    key = argv[1]
    return Plan(lambda st: st.persist(key), _integer, True)


def cmd_expireat(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    return _expire(s, argv, 1000, "expireat", absolute=True)


def cmd_pexpireat(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    return _expire(s, argv, 1, "pexpireat", absolute=True)


# -- read-modify-write string commands ------------------------------------------------
#
# The Store interface has no APPEND, GETDEL, ...: these read, compute and
# write in one Store.run_grouped(), which on the embedded store holds its
# lock (isolates_groups), so they are as atomic as in Redis. On a store that
# does not isolate groups (Redis) the calls run one after the other: correct
# alone, racy under concurrent writers to the same key (docs/resp.md).

def _read_modify_write(body: Callable[[Store], bytes], write: bool = True) -> Plan[bytes]:
    return Plan.group(lambda st: st.run_grouped(body), write)


_TOO_BIG: Final = b"-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"


def cmd_getset(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    null = encode_null(s.proto)
    key, value = argv[1], argv[2]
    return Plan(lambda st: st.set(key, value, get=True),
                lambda r: null if r.old is None else encode_bulk(r.old), True)


def cmd_getdel(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    key, null = argv[1], encode_null(s.proto)

    def body(store: Store) -> bytes:
        value = store.get(key)
        if value is None:
            return null
        store.delete([key])
        return encode_bulk(value)
    return _read_modify_write(body)


def cmd_strlen(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    key = argv[1]
    return Plan(lambda st: st.get(key), lambda v: b":%d\r\n" % (0 if v is None else len(v)))


def cmd_append(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    key, extra, limit = argv[1], argv[2], s.server.max_bulk

    def body(store: Store) -> bytes:
        old = store.get(key)
        value = (old or b"") + extra
        if len(value) > limit:
            return _TOO_BIG
        store.set(key, value, keepttl=True)
        if old is not None:
            store.mark_raw(key)  # Redis: a new key is encoded by content
        return b":%d\r\n" % len(value)
    return _read_modify_write(body)


def _range_indexes(start: int, end: int, size: int) -> tuple[int, int] | None:
    """GETRANGE's index rules (getrangeCommand): negatives count from the end."""
    if start < 0 and end < 0 and start > end:
        return None
    if start < 0:
        start = max(0, size + start)
    if end < 0:
        end = max(0, size + end)
    end = min(end, size - 1)
    if start > end or size == 0:
        return None
    return start, end


def cmd_getrange(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    start, end = int_arg(argv[2]), int_arg(argv[3])
    if start is None or end is None:
        return NOT_INTEGER

    def finish(value: Any) -> bytes:
        span = _range_indexes(start, end, len(value or b""))
        return b"$0\r\n\r\n" if span is None else encode_bulk(value[span[0]:span[1] + 1])
    key = argv[1]
    return Plan(lambda st: st.get(key), finish)


def cmd_setrange(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    offset = int_arg(argv[2])
    if offset is None:
        return NOT_INTEGER
    if offset < 0:
        return b"-ERR offset is out of range\r\n"
    key, patch, limit = argv[1], argv[3], s.server.max_bulk
    if patch and offset + len(patch) > limit:
        return _TOO_BIG

    def body(store: Store) -> bytes:
        value = store.get(key)
        if not patch:  # nothing to write: Redis creates no key
            return b":%d\r\n" % (0 if value is None else len(value))
        old = value or b""
        new = old[:offset].ljust(offset, b"\x00") + patch + old[offset + len(patch):]
        store.set(key, new, keepttl=True)
        store.mark_raw(key)
        return b":%d\r\n" % len(new)
    return _read_modify_write(body)


def cmd_incrbyfloat(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    delta = _long_double(argv[2])
    if delta is None:
        return b"-ERR value is not a valid float\r\n"
    key = argv[1]

    def body(store: Store) -> bytes:
        old = store.get(key)
        current = Fraction(0) if old is None else _long_double(old)
        if current is None:
            return b"-ERR value is not a valid float\r\n"
        if isinstance(current, str) or isinstance(delta, str):
            return b"-ERR increment would produce NaN or Infinity\r\n"
        total = _round_long_double(current + delta)
        if total is None:
            return b"-ERR increment would produce NaN or Infinity\r\n"
        text = _format_long_double(total)
        store.set(key, text, keepttl=True)
        return encode_bulk(text)
    return _read_modify_write(body)


def cmd_msetnx(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    if len(argv) % 2 == 0:
        return wrong_args("msetnx")
    pairs = list(zip(argv[1::2], argv[2::2]))

    def body(store: Store) -> bytes:
        if store.exists([key for key, _ in pairs]):
            return b":0\r\n"
        store.mset(pairs)
        return b":1\r\n"
    return _read_modify_write(body)


def cmd_getex(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    key = argv[1]
    persist = False
    px: int | None = None
    i = 2
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"PERSIST" and px is None and not persist:
            persist = True
        elif opt in (b"EX", b"PX", b"EXAT", b"PXAT") and px is None and not persist \
                and i + 1 < len(argv):
            number = int_arg(argv[i + 1])
            if number is None:
                return NOT_INTEGER
            if number <= 0 or (opt in (b"EX", b"EXAT") and number > I64_MAX // 1000):
                return b"-ERR invalid expire time in 'getex' command\r\n"
            px = number * (1000 if opt in (b"EX", b"EXAT") else 1)
            if opt in (b"EXAT", b"PXAT"):
                px -= time.time_ns() // 1_000_000
            i += 1
        else:
            return SYNTAX_ERROR
        i += 1
    null = encode_null(s.proto)
    if px is None and not persist:
        return Plan(lambda st: st.get(key), _bulk_or_null(s.proto))

    def body(store: Store) -> bytes:
        value = store.get(key)
        if value is None:
            return null
        if persist:
            store.persist(key)
        elif px is not None:
            store.pexpire(key, px)
        return encode_bulk(value)
    return _read_modify_write(body)


def cmd_dbsize(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    return Plan(lambda st: st.dbsize(), _integer)


def cmd_flushdb(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    if len(argv) > 2 or (len(argv) == 2 and argv[1].upper() not in (b"ASYNC", b"SYNC")):
        return SYNTAX_ERROR
    return Plan(lambda st: st.flushdb(), _ok, True)


def cmd_keys(s: Ctx, argv: list[bytes]) -> Plan[Any]:
    pattern = argv[1]
    return Plan(lambda st: st.keys(pattern), lambda keys: encode(list(keys)))


def cmd_scan(s: Ctx, argv: list[bytes]) -> bytes | Plan[Any]:
    cursor = _scan_cursor(argv[1])
    if cursor is None:
        return b"-ERR invalid cursor\r\n"
    match: bytes | None = None
    count = 10
    typed = False
    i = 2
    while i < len(argv):
        opt = argv[i].upper()
        if i + 1 >= len(argv):
            return SYNTAX_ERROR
        if opt == b"MATCH":
            match = argv[i + 1]
            if match == b"*":
                match = None
        elif opt == b"COUNT":
            number = int_arg(argv[i + 1])
            if number is None:
                return NOT_INTEGER
            if number < 1:
                return SYNTAX_ERROR
            count = number
        elif opt == b"TYPE":
            # Filtering by type is the data model's (Store.execute_command).
            typed = True
        else:
            return SYNTAX_ERROR
        i += 2

    if typed:
        proto = s.proto
        return Plan(lambda st: st.execute_command(argv), lambda r: encode(r, proto))

    def finish(result: Any) -> bytes:
        next_cursor, keys = result
        return encode([b"%d" % next_cursor, list(keys)])
    return Plan(lambda st: st.scan(cursor, match, count), finish)


def _scan_cursor(text: bytes) -> int | None:
    """Redis reads the cursor with strtoull(): an optional sign, decimal
    digits (leading zeros and the empty string allowed), no blanks, at most
    2**64 - 1; a negative number wraps around."""
    digits = text[1:] if text[:1] in (b"+", b"-") else text
    if digits and not digits.isdigit():
        return None
    value = int(digits) if digits else 0
    if value >= 2**64:
        return None
    return (2**64 - value) % 2**64 if text[:1] == b"-" else value
