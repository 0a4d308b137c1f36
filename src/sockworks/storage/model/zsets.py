"""Sorted-set commands: ZADD ... ZSCAN, on :class:`ZSetValue` (a dict of
scores plus a ``sortedcontainers.SortedList`` of (score, member)).

Writes whose effect depends on the state (ZPOPMIN, the *STORE commands,
ZADD INCR) log their effects (``ZREM``, ``DEL`` + ``ZADD``) so a replay is
exact; ZADD and ZREM log themselves.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from functools import total_ordering
from typing import Any

from sockworks.protocols.resp import NULL_ARRAY, Double, Pairs
from sockworks.storage.model.common import (
    SYNTAX,
    CommandError,
    format_double,
    parse_double,
    parse_int,
    parse_intercard,
    parse_positive,
    parse_random_count,
    scan_args,
    scan_slice,
)
from sockworks.storage.model.keyspace import Keyspace
from sockworks.storage.model.lists import parse_mpop
from sockworks.storage.model.values import ZSetValue

__all__ = ["COMMANDS", "pop_min_max"]

Argv = Sequence[bytes]


@total_ordering
class _Top:
    """Sorts after every member (bytes)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Top)

    def __lt__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return 1


TOP = _Top()
BOTTOM = b""


def _d(value: float) -> Double:
    return Double(format_double(value))


# -- ranges -----------------------------------------------------------------------

def _score_bound(arg: bytes) -> tuple[float, bool]:
    """(value, exclusive) of a ZRANGEBYSCORE bound."""
    exclusive = arg[:1] == b"("
    text = arg[1:] if exclusive else arg
    try:
        value = parse_double(text)
    except CommandError:
        raise CommandError("min or max is not a float") from None
    return value, exclusive


def _lex_bound(arg: bytes) -> tuple[bytes | _Top, bool]:
    if arg == b"-":
        return BOTTOM, False
    if arg == b"+":
        return TOP, False
    if arg[:1] in (b"[", b"("):
        return arg[1:], arg[:1] == b"("
    raise CommandError("min or max not valid string range item")


def _score_span(z: ZSetValue, lo: tuple[float, bool], hi: tuple[float, bool]) -> range:
    order = z.order
    start = order.bisect_right((lo[0], TOP)) if lo[1] else order.bisect_left((lo[0], BOTTOM))
    stop = order.bisect_left((hi[0], BOTTOM)) if hi[1] else order.bisect_right((hi[0], TOP))
    return range(start, max(start, stop))


def _lex_span(z: ZSetValue, lo: tuple[bytes | _Top, bool],
              hi: tuple[bytes | _Top, bool]) -> range:
    order = z.order
    if not order:
        return range(0)
    score = order[0][0]  # lex ranges assume one score for all members, as Redis

    def position(bound: tuple[bytes | _Top, bool], upper: bool) -> int:
        member, exclusive = bound
        if (upper and not exclusive) or (not upper and exclusive):
            return int(order.bisect_right((score, member)))
        return int(order.bisect_left((score, member)))
    start, stop = position(lo, False), position(hi, True)
    if isinstance(lo[0], _Top):
        return range(0)
    return range(start, max(start, stop))


def _index_span(start: int, end: int, size: int) -> range:
    if start < 0:
        start = max(0, size + start)
    if end < 0:
        end += size
    end = min(end, size - 1)
    if start > end or start >= size:
        return range(0)
    return range(start, end + 1)


def _limit(span: range, offset: int, count: int, reverse: bool) -> list[int]:
    indexes = list(reversed(span)) if reverse else list(span)
    if offset < 0:
        return []
    indexes = indexes[offset:]
    if count >= 0:
        indexes = indexes[:count]
    return indexes


# -- writes -----------------------------------------------------------------------

def _zset(ks: Keyspace, key: bytes) -> ZSetValue:
    z = ks.typed(key, ZSetValue)
    if z is None:
        z = ZSetValue()
        ks.put(key, z)
    return z


def zadd(ks: Keyspace, argv: Argv) -> Any:
    nx = xx = gt = lt = ch = incr = False
    i = 2
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"NX":
            nx = True
        elif opt == b"XX":
            xx = True
        elif opt == b"GT":
            gt = True
        elif opt == b"LT":
            lt = True
        elif opt == b"CH":
            ch = True
        elif opt == b"INCR":
            incr = True
        else:
            break
        i += 1
    rest = argv[i:]
    if not rest or len(rest) % 2:
        raise CommandError(SYNTAX)
    if nx and xx:
        raise CommandError("XX and NX options at the same time are not compatible")
    if (gt and nx) or (lt and nx) or (gt and lt):
        raise CommandError("GT, LT, and/or NX options at the same time are not compatible")
    if incr and len(rest) > 2:
        raise CommandError("INCR option supports a single increment-element pair")
    scores = [parse_double(s) for s in rest[0::2]]
    members = rest[1::2]
    z = ks.typed(argv[1], ZSetValue)
    current = dict(z.scores) if z is not None else {}
    plan: dict[bytes, float] = {}
    added = changed = 0
    result: float | None = None
    for score, member in zip(scores, members, strict=True):
        old = plan.get(member, current.get(member))
        if incr and old is not None:
            score = old + score
            if math.isnan(score):
                raise CommandError("resulting score is not a number (NaN)")
        if old is None:
            if xx:
                continue
            plan[member] = score
            added += 1
            result = score
        else:
            if nx or (gt and score <= old) or (lt and score >= old):
                continue
            result = score
            if score != old:
                plan[member] = score
                changed += 1
    if plan:
        ks.log((b"ZADD", argv[1], *[x for m, s in plan.items()
                                      for x in (format_double(s), m)]))
        z = _zset(ks, argv[1])
        for member, score in plan.items():
            ks.grow(z, z.add(member, score, ks.encodings))
    if incr:
        return None if result is None else _d(result)
    return added + changed if ch else added


def zincrby(ks: Keyspace, argv: Argv) -> Any:
    return zadd(ks, [b"ZADD", argv[1], b"INCR", argv[2], argv[3]])


def _remove(ks: Keyspace, key: bytes, z: ZSetValue, members: Sequence[bytes]) -> int:
    removed = 0
    for m in members:
        if m in z.scores:
            ks.grow(z, z.remove(m))
            removed += 1
    if not len(z):
        ks.drop(key)
    return removed


def zrem(ks: Keyspace, argv: Argv) -> Any:
    z = ks.typed(argv[1], ZSetValue)
    if z is None:
        return 0
    members = [m for m in dict.fromkeys(argv[2:]) if m in z.scores]
    if not members:
        return 0
    ks.log((b"ZREM", argv[1], *members))
    return _remove(ks, argv[1], z, members)


def _remove_span(ks: Keyspace, key: bytes, z: ZSetValue, span: range) -> int:
    members = [z.order[i][1] for i in span]
    if members:
        ks.log((b"ZREM", key, *members))
        _remove(ks, key, z, members)
    return len(members)


def zremrangebyrank(ks: Keyspace, argv: Argv) -> Any:
    start, end = parse_int(argv[2]), parse_int(argv[3])
    z = ks.typed(argv[1], ZSetValue)
    return 0 if z is None else _remove_span(ks, argv[1], z, _index_span(start, end, len(z)))


def zremrangebyscore(ks: Keyspace, argv: Argv) -> Any:
    lo, hi = _score_bound(argv[2]), _score_bound(argv[3])
    z = ks.typed(argv[1], ZSetValue)
    return 0 if z is None else _remove_span(ks, argv[1], z, _score_span(z, lo, hi))


def zremrangebylex(ks: Keyspace, argv: Argv) -> Any:
    lo, hi = _lex_bound(argv[2]), _lex_bound(argv[3])
    z = ks.typed(argv[1], ZSetValue)
    return 0 if z is None else _remove_span(ks, argv[1], z, _lex_span(z, lo, hi))


def pop_min_max(ks: Keyspace, key: bytes, z: ZSetValue, high: bool,
                count: int) -> list[tuple[bytes, float]]:
    """Pop up to ``count`` lowest (highest) members (logged)."""
    size = len(z)
    span = range(size - 1, max(-1, size - 1 - count), -1) if high else range(min(count, size))
    items = [(z.order[i][1], z.order[i][0]) for i in span]
    if items:
        ks.log((b"ZREM", key, *[m for m, _ in items]))
        _remove(ks, key, z, [m for m, _ in items])
    return items


def zpop(ks: Keyspace, argv: Argv) -> Any:
    if len(argv) > 3:
        raise CommandError(SYNTAX)
    count = parse_positive(argv[2], "value") if len(argv) == 3 else None
    z = ks.typed(argv[1], ZSetValue)
    high = argv[0].lower() == b"zpopmax"
    if z is None or count == 0:
        return []
    items = pop_min_max(ks, argv[1], z, high, 1 if count is None else count)
    if count is None:
        return [items[0][0], _d(items[0][1])]
    return Pairs([(m, _d(s)) for m, s in items])


def zmpop(ks: Keyspace, argv: Argv) -> Any:
    keys, low, count = parse_mpop(argv, 1, (b"MIN", b"MAX"))
    for key in keys:
        z = ks.typed(key, ZSetValue)
        if z:
            items = pop_min_max(ks, key, z, not low, count)
            return [key, [[m, _d(s)] for m, s in items]]
    return NULL_ARRAY


# -- reads ------------------------------------------------------------------------

def zscore(ks: Keyspace, argv: Argv) -> Any:
    z = ks.typed(argv[1], ZSetValue)
    score = None if z is None else z.scores.get(argv[2])
    return None if score is None else _d(score)


def zmscore(ks: Keyspace, argv: Argv) -> Any:
    z = ks.typed(argv[1], ZSetValue)
    scores = {} if z is None else z.scores
    return [None if m not in scores else _d(scores[m]) for m in argv[2:]]


def zcard(ks: Keyspace, argv: Argv) -> Any:
    z = ks.typed(argv[1], ZSetValue)
    return 0 if z is None else len(z)


def zcount(ks: Keyspace, argv: Argv) -> Any:
    lo, hi = _score_bound(argv[2]), _score_bound(argv[3])
    z = ks.typed(argv[1], ZSetValue)
    return 0 if z is None else len(_score_span(z, lo, hi))


def zlexcount(ks: Keyspace, argv: Argv) -> Any:
    lo, hi = _lex_bound(argv[2]), _lex_bound(argv[3])
    z = ks.typed(argv[1], ZSetValue)
    return 0 if z is None else len(_lex_span(z, lo, hi))


def zrank(ks: Keyspace, argv: Argv) -> Any:
    z = ks.typed(argv[1], ZSetValue)
    if z is None or argv[2] not in z.scores:
        return None
    rank = z.order.index((z.scores[argv[2]], argv[2]))
    return len(z) - 1 - rank if argv[0].lower() == b"zrevrank" else rank


def _check_bounds(by: str, lo: bytes, hi: bytes) -> None:
    """Range arguments are checked before the key is looked up, as Redis."""
    if by == "score":
        _score_bound(lo)
        _score_bound(hi)
    elif by == "lex":
        _lex_bound(lo)
        _lex_bound(hi)
    else:
        parse_int(lo)
        parse_int(hi)


def _range_result(z: ZSetValue | None, by: str, lo: bytes, hi: bytes, rev: bool,
                  limit: tuple[int, int] | None) -> list[tuple[bytes, float]]:
    if by == "score":
        a, b = (_score_bound(hi), _score_bound(lo)) if rev else (_score_bound(lo),
                                                                _score_bound(hi))
        if z is None:
            return []
        span = _score_span(z, a, b)
    elif by == "lex":
        la, lb = (_lex_bound(hi), _lex_bound(lo)) if rev else (_lex_bound(lo), _lex_bound(hi))
        if z is None:
            return []
        span = _lex_span(z, la, lb)
    else:
        start, end = parse_int(lo), parse_int(hi)
        if z is None:
            return []
        size = len(z)
        span = _index_span(start, end, size)
        if rev:
            span = range(size - 1 - (span.stop - 1), size - span.start) if span else span
    offset, count = limit if limit is not None else (0, -1)
    indexes = _limit(span, offset, count, rev)
    order = z.order
    return [(order[i][1], order[i][0]) for i in indexes]


def _reply(items: list[tuple[bytes, float]], withscores: bool) -> Any:
    if withscores:
        return Pairs([(m, _d(s)) for m, s in items])
    return [m for m, _ in items]


def _zrange_generic(ks: Keyspace, argv: Argv, start: int, store: bytes | None) -> Any:
    src, lo, hi = argv[start], argv[start + 1], argv[start + 2]
    withscores = False
    limit: tuple[int, int] | None = None
    by, rev = "index", False
    i = start + 3
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"WITHSCORES" and store is None:
            withscores = True
        elif opt == b"LIMIT" and i + 2 < len(argv):
            limit = (parse_int(argv[i + 1]), parse_int(argv[i + 2]))
            i += 2
        elif opt == b"BYSCORE":
            by = "score"
        elif opt == b"BYLEX":
            by = "lex"
        elif opt == b"REV":
            rev = True
        else:
            raise CommandError(SYNTAX)
        i += 1
    if limit is not None and by == "index":
        raise CommandError("syntax error, LIMIT is only supported in combination with "
                           "either BYSCORE or BYLEX")
    if withscores and by == "lex":
        raise CommandError("syntax error, WITHSCORES not supported in combination with BYLEX")
    _check_bounds(by, lo, hi)
    z = ks.typed(src, ZSetValue)
    items = _range_result(z, by, lo, hi, rev, limit)
    if store is not None:
        store_zset(ks, store, items)
        return len(items)
    return _reply(items, withscores)


def zrange(ks: Keyspace, argv: Argv) -> Any:
    return _zrange_generic(ks, argv, 1, None)


def zrangestore(ks: Keyspace, argv: Argv) -> Any:
    return _zrange_generic(ks, argv, 2, argv[1])


def _legacy(by: str, rev: bool) -> Any:
    def command(ks: Keyspace, argv: Argv) -> Any:
        withscores = False
        limit: tuple[int, int] | None = None
        i = 4
        while i < len(argv):
            opt = argv[i].upper()
            if opt == b"WITHSCORES" and by != "lex":
                withscores = True
            elif opt == b"LIMIT" and by != "index" and i + 2 < len(argv):
                limit = (parse_int(argv[i + 1]), parse_int(argv[i + 2]))
                i += 2
            else:
                raise CommandError(SYNTAX)
            i += 1
        _check_bounds(by, argv[2], argv[3])
        z = ks.typed(argv[1], ZSetValue)
        return _reply(_range_result(z, by, argv[2], argv[3], rev, limit), withscores)
    return command


def store_zset(ks: Keyspace, dest: bytes, items: Sequence[tuple[bytes, float]]) -> None:
    """Replace ``dest`` with a sorted set of ``items`` (none: delete it), logged."""
    if not items:
        ks.delete([dest])
        return
    ks.log((b"DEL", dest),
           (b"ZADD", dest, *[x for m, s in items for x in (format_double(s), m)]))
    if ks.lookup(dest) is not None:
        ks.drop(dest)
    z = _zset(ks, dest)
    for member, score in items:
        ks.grow(z, z.add(member, score, ks.encodings))


def _combine(ks: Keyspace, argv: Argv, op: str, start: int, store: bool) -> Any:
    name = argv[0].decode("latin-1").lower()
    numkeys = parse_int(argv[start])
    if numkeys < 1:
        raise CommandError(f"at least 1 input key is needed for '{name}' command")
    if start + 1 + numkeys > len(argv):
        raise CommandError(SYNTAX)
    keys = argv[start + 1:start + 1 + numkeys]
    sources: list[dict[bytes, float]] = []
    for key in keys:
        value = ks.lookup(key)
        if value is None:
            sources.append({})
        elif isinstance(value, ZSetValue):
            sources.append(value.scores)
        elif isinstance(value, set):
            sources.append(dict.fromkeys(value, 1.0))
        else:
            raise CommandError("WRONGTYPE Operation against a key holding the wrong kind "
                               "of value")

    weights = [1.0] * numkeys
    aggregate = "sum"
    withscores = False
    i = start + 1 + numkeys
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"WEIGHTS" and op != "diff" and i + numkeys < len(argv):
            weights = [parse_double(w, "weight value is not a float")
                       for w in argv[i + 1:i + 1 + numkeys]]
            i += numkeys
        elif opt == b"AGGREGATE" and op != "diff" and i + 1 < len(argv):
            aggregate = argv[i + 1].decode("latin-1").lower()
            if aggregate not in ("sum", "min", "max"):
                raise CommandError(SYNTAX)
            i += 1
        elif opt == b"WITHSCORES" and not store:
            withscores = True
        else:
            raise CommandError(SYNTAX)
        i += 1
    def agg(a: float, b: float) -> float:
        if aggregate == "sum":
            total = a + b
            return 0.0 if math.isnan(total) else total
        return min(a, b) if aggregate == "min" else max(a, b)

    def weighted(score: float, weight: float) -> float:
        value = score * weight
        return 0.0 if math.isnan(value) else value

    result: dict[bytes, float] = {}
    if op == "union":
        for src, w in zip(sources, weights, strict=True):
            for m, s in src.items():
                ws = weighted(s, w)
                result[m] = agg(result[m], ws) if m in result else ws
    elif op == "inter":
        ordered = sorted(range(len(sources)), key=lambda j: len(sources[j]))
        first = ordered[0]
        for m, s in sources[first].items():
            if all(m in sources[j] for j in ordered[1:]):
                total = weighted(s, weights[first])
                for j in range(len(sources)):
                    if j != first:
                        total = agg(total, weighted(sources[j][m], weights[j]))
                result[m] = total
        # Aggregation order matters for floats only with SUM; Redis folds in key order.
        result = {m: _fold(m, sources, weights, agg, weighted) for m in result}
    else:
        first_src = sources[0]
        result = {m: s for m, s in first_src.items()
                  if not any(m in other for other in sources[1:])}
    items = sorted(((m, s) for m, s in result.items()), key=lambda p: (p[1], p[0]))
    if store:
        store_zset(ks, argv[1], items)
        return len(items)
    return _reply(items, withscores)


def _fold(member: bytes, sources: list[dict[bytes, float]], weights: list[float],
          agg: Any, weighted: Any) -> float:
    total = weighted(sources[0][member], weights[0])
    for src, w in zip(sources[1:], weights[1:], strict=True):
        total = agg(total, weighted(src[member], w))
    return float(total)


def zintercard(ks: Keyspace, argv: Argv) -> Any:
    numkeys, limit = parse_intercard(argv)
    reply = _combine(ks, [b"zinter", *argv[1:2 + numkeys]], "inter", 1, False)
    return min(len(reply), limit) if limit else len(reply)


def zrandmember(ks: Keyspace, argv: Argv) -> Any:
    if len(argv) > 4 or (len(argv) == 4 and argv[3].upper() != b"WITHSCORES"):
        raise CommandError(SYNTAX)
    withscores = len(argv) == 4
    count = parse_random_count(argv[2], withscores) if len(argv) > 2 else 0
    z = ks.typed(argv[1], ZSetValue)
    if len(argv) == 2:
        return None if z is None else random.choice(list(z.scores))
    if z is None or count == 0:
        return []
    members = list(z.scores)
    chosen = (random.sample(members, min(count, len(members))) if count > 0
              else random.choices(members, k=-count))
    if withscores:
        return Pairs([(m, _d(z.scores[m])) for m in chosen])
    return chosen


def zscan(ks: Keyspace, argv: Argv) -> Any:
    cursor, match, count, _ = scan_args(argv, 2)
    z = ks.typed(argv[1], ZSetValue)
    if z is None:
        return [b"0", []]
    nxt, chosen = scan_slice(list(z.scores), cursor, match, count)
    flat: list[bytes] = []
    for m in chosen:
        flat += [m, format_double(z.scores[m])]
    return [b"%d" % nxt, flat]


def _family(op: str, store: bool) -> Any:
    def command(ks: Keyspace, argv: Argv) -> Any:
        return _combine(ks, argv, op, 2 if store else 1, store)
    return command


COMMANDS = {
    b"zadd": zadd, b"zincrby": zincrby, b"zrem": zrem, b"zremrangebyrank": zremrangebyrank,
    b"zremrangebyscore": zremrangebyscore, b"zremrangebylex": zremrangebylex,
    b"zpopmin": zpop, b"zpopmax": zpop, b"zmpop": zmpop, b"zscore": zscore,
    b"zmscore": zmscore, b"zcard": zcard, b"zcount": zcount, b"zlexcount": zlexcount,
    b"zrank": zrank, b"zrevrank": zrank, b"zrange": zrange, b"zrangestore": zrangestore,
    b"zrevrange": _legacy("index", True), b"zrangebyscore": _legacy("score", False),
    b"zrevrangebyscore": _legacy("score", True), b"zrangebylex": _legacy("lex", False),
    b"zrevrangebylex": _legacy("lex", True), b"zunionstore": _family("union", True),
    b"zinterstore": _family("inter", True), b"zdiffstore": _family("diff", True),
    b"zunion": _family("union", False), b"zinter": _family("inter", False),
    b"zdiff": _family("diff", False), b"zintercard": zintercard,
    b"zrandmember": zrandmember, b"zscan": zscan,
}
