"""Hash commands: HSET ... HSCAN, on :class:`HashValue` (a dict)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from sockworks.protocols.resp import Map, Pairs, SimpleString
from sockworks.storage.model.common import (
    CommandError,
    parse_int,
    parse_random_count,
    scan_args,
    scan_slice,
    wrong_args,
)
from sockworks.storage.model.keyspace import Keyspace
from sockworks.storage.model.longdouble import format_long_double, long_double, round_long_double
from sockworks.storage.model.values import (
    HASH_FIELD_OVERHEAD,
    HashValue,
)

__all__ = ["COMMANDS"]

Argv = Sequence[bytes]


def _store_field(ks: Keyspace, h: HashValue, field: bytes, value: bytes) -> int:
    """Set one field; 1 if it is new."""
    old = h.get(field)
    h[field] = value
    if not h.big:
        enc = ks.encodings
        limit = enc.hash_max_listpack_value
        if len(field) > limit or len(value) > limit or len(h) > enc.hash_max_listpack_entries:
            h.big = True
    if old is None:
        ks.grow(h, len(field) + len(value) + HASH_FIELD_OVERHEAD)
        return 1
    ks.grow(h, len(value) - len(old))
    return 0


def _target(ks: Keyspace, key: bytes) -> HashValue:
    h = ks.typed(key, HashValue)
    if h is None:
        h = HashValue()
        ks.put(key, h)
    return h


def hset(ks: Keyspace, argv: Argv) -> Any:
    if len(argv) % 2:
        raise wrong_args(argv[0].decode("latin-1").lower())
    ks.typed(argv[1], HashValue)
    ks.log(argv)
    h = _target(ks, argv[1])
    added = sum(_store_field(ks, h, f, v) for f, v in zip(argv[2::2], argv[3::2], strict=True))
    if argv[0].lower() == b"hmset":
        return SimpleString("OK")
    return added


def hsetnx(ks: Keyspace, argv: Argv) -> Any:
    h = ks.typed(argv[1], HashValue)
    if h is not None and argv[2] in h:
        return 0
    ks.log((b"HSET", argv[1], argv[2], argv[3]))
    return _store_field(ks, _target(ks, argv[1]), argv[2], argv[3])


def hget(ks: Keyspace, argv: Argv) -> Any:
    h = ks.typed(argv[1], HashValue)
    return None if h is None else h.get(argv[2])


def hmget(ks: Keyspace, argv: Argv) -> Any:
    h: dict[bytes, bytes] = ks.typed(argv[1], HashValue) or {}
    return [h.get(f) for f in argv[2:]]


def hdel(ks: Keyspace, argv: Argv) -> Any:
    h = ks.typed(argv[1], HashValue)
    if h is None:
        return 0
    fields = [f for f in dict.fromkeys(argv[2:]) if f in h]
    if not fields:
        return 0
    ks.log(argv)
    for f in fields:
        value = h.pop(f)
        ks.grow(h, -(len(f) + len(value) + HASH_FIELD_OVERHEAD))
    if not h:
        ks.drop(argv[1])
    return len(fields)


def hlen(ks: Keyspace, argv: Argv) -> Any:
    h = ks.typed(argv[1], HashValue)
    return 0 if h is None else len(h)


def hstrlen(ks: Keyspace, argv: Argv) -> Any:
    h = ks.typed(argv[1], HashValue)
    return len(h.get(argv[2], b"")) if h is not None else 0


def hexists(ks: Keyspace, argv: Argv) -> Any:
    h = ks.typed(argv[1], HashValue)
    return int(h is not None and argv[2] in h)


def hkeys(ks: Keyspace, argv: Argv) -> Any:
    return list(ks.typed(argv[1], HashValue) or ())


def hvals(ks: Keyspace, argv: Argv) -> Any:
    h = ks.typed(argv[1], HashValue)
    return [] if h is None else list(h.values())


def hgetall(ks: Keyspace, argv: Argv) -> Any:
    h = ks.typed(argv[1], HashValue)
    return Map([] if h is None else list(h.items()))


def hincrby(ks: Keyspace, argv: Argv) -> Any:
    delta = parse_int(argv[3])
    h = ks.typed(argv[1], HashValue)
    old = None if h is None else h.get(argv[2])
    current = 0
    if old is not None:
        current = parse_int(old, "hash value is not an integer")
    result = current + delta
    if not -(1 << 63) <= result < (1 << 63):
        raise CommandError("increment or decrement would overflow")
    text = b"%d" % result
    ks.log((b"HSET", argv[1], argv[2], text))
    _store_field(ks, _target(ks, argv[1]), argv[2], text)
    return result


def hincrbyfloat(ks: Keyspace, argv: Argv) -> Any:
    delta = long_double(argv[3])
    if delta is None:
        raise CommandError("value is not a valid float")
    if isinstance(delta, str):
        raise CommandError("value is NaN or Infinity")
    h = ks.typed(argv[1], HashValue)
    old = None if h is None else h.get(argv[2])
    current: Fraction | str = Fraction(0)
    if old is not None:
        parsed = long_double(old)
        if parsed is None:
            raise CommandError("hash value is not a float")
        current = parsed
    if isinstance(current, str) or isinstance(delta, str):
        raise CommandError("increment would produce NaN or Infinity")
    total = round_long_double(current + delta)
    if total is None:
        raise CommandError("increment would produce NaN or Infinity")
    text = format_long_double(total)
    ks.log((b"HSET", argv[1], argv[2], text))
    _store_field(ks, _target(ks, argv[1]), argv[2], text)
    return text


def hrandfield(ks: Keyspace, argv: Argv) -> Any:
    if len(argv) > 4 or (len(argv) == 4 and argv[3].upper() != b"WITHVALUES"):
        raise CommandError("syntax error")
    withvalues = len(argv) == 4
    count = parse_random_count(argv[2], withvalues) if len(argv) > 2 else 0
    h = ks.typed(argv[1], HashValue)
    if len(argv) == 2:
        return None if h is None else random.choice(list(h))
    if h is None or count == 0:
        return []
    fields = list(h)
    if count > 0:
        chosen = random.sample(fields, min(count, len(fields)))
    else:
        chosen = random.choices(fields, k=-count)
    if withvalues:
        return _pairs3([(f, h[f]) for f in chosen])
    return chosen


def _pairs3(items: list[tuple[bytes, Any]]) -> Any:
    return Pairs(items)


def hscan(ks: Keyspace, argv: Argv) -> Any:
    cursor, match, count, _ = scan_args(argv, 2)
    h = ks.typed(argv[1], HashValue)
    if h is None:
        return [b"0", []]
    fields = list(h)
    nxt, chosen = scan_slice(fields, cursor, match, count)
    flat: list[bytes] = []
    for f in chosen:
        flat += [f, h[f]]
    return [b"%d" % nxt, flat]


COMMANDS = {
    b"hset": hset, b"hmset": hset, b"hsetnx": hsetnx, b"hget": hget, b"hmget": hmget,
    b"hdel": hdel, b"hlen": hlen, b"hstrlen": hstrlen, b"hexists": hexists, b"hkeys": hkeys,
    b"hvals": hvals, b"hgetall": hgetall, b"hincrby": hincrby, b"hincrbyfloat": hincrbyfloat,
    b"hrandfield": hrandfield, b"hscan": hscan,
}
