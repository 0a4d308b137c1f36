"""List commands: LPUSH ... LMPOP, on :class:`ListValue` (a deque).

Pops and moves log their effects (``LPOP key n``, ``RPUSH dst el``), so a
replay does the same whatever else changed meanwhile. The blocking
variants are served here when an element is there (the session decides
what to do when none is: resp_blocking.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from sockworks.protocols.resp import NULL_ARRAY, SimpleString
from sockworks.storage.model.common import (
    SYNTAX,
    CommandError,
    parse_int,
    parse_positive,
    wrong_args,
)
from sockworks.storage.model.keyspace import Keyspace
from sockworks.storage.model.values import LIST_ELEMENT_OVERHEAD, ListValue

__all__ = ["COMMANDS", "pop_from", "move"]

Argv = Sequence[bytes]
_OVERHEAD = LIST_ELEMENT_OVERHEAD


def _push(ks: Keyspace, key: bytes, elements: Sequence[bytes], left: bool,
          lst: ListValue | None) -> int:
    if lst is None:
        lst = ListValue()
        ks.put(key, lst)
    if left:
        lst.extendleft(elements)
    else:
        lst.extend(elements)
    ks.grow(lst, sum(map(len, elements)) + _OVERHEAD * len(elements))
    ks.signal(key)
    return len(lst)


def push(ks: Keyspace, argv: Argv) -> Any:
    name = argv[0].lower()
    lst = ks.typed(argv[1], ListValue)
    if lst is None and name.endswith(b"x"):
        return 0
    ks.log(argv)
    return _push(ks, argv[1], argv[2:], name.startswith(b"l"), lst)


def _pop_n(ks: Keyspace, key: bytes, lst: ListValue, left: bool, count: int) -> list[bytes]:
    count = min(count, len(lst))
    pop = lst.popleft if left else lst.pop
    items = [pop() for _ in range(count)]
    ks.grow(lst, -(sum(map(len, items)) + _OVERHEAD * count))
    if not lst:
        ks.drop(key)
    return items


def pop_from(ks: Keyspace, key: bytes, left: bool, count: int) -> list[bytes]:
    """Pop up to ``count`` elements of a list known to be non-empty (logged)."""
    lst = ks.typed(key, ListValue)
    assert lst is not None
    ks.log((b"LPOP" if left else b"RPOP", key, b"%d" % min(count, len(lst))))
    return _pop_n(ks, key, lst, left, count)


def pop(ks: Keyspace, argv: Argv) -> Any:
    if len(argv) > 3:
        raise wrong_args(argv[0].decode("latin-1").lower())
    count = parse_positive(argv[2], "value") if len(argv) == 3 else None
    lst = ks.typed(argv[1], ListValue)
    left = argv[0].lower() == b"lpop"
    if lst is None:
        return None if count is None else NULL_ARRAY
    if count == 0:
        return []
    items = pop_from(ks, argv[1], left, 1 if count is None else count)
    return items[0] if count is None else items


def llen(ks: Keyspace, argv: Argv) -> Any:
    lst = ks.typed(argv[1], ListValue)
    return 0 if lst is None else len(lst)


def _span(start: int, end: int, size: int) -> tuple[int, int] | None:
    if start < 0:
        start = max(0, size + start)
    if end < 0:
        end += size
    end = min(end, size - 1)
    if start > end or start >= size:
        return None
    return start, end


def lrange(ks: Keyspace, argv: Argv) -> Any:
    start, end = parse_int(argv[2]), parse_int(argv[3])
    lst = ks.typed(argv[1], ListValue)
    if lst is None:
        return []
    span = _span(start, end, len(lst))
    if span is None:
        return []
    if span[0] > len(lst) // 2:
        # Walk from the nearer end (a deque is linked blocks).
        tail = list(itertools.islice(reversed(lst), 0, len(lst) - span[0]))
        tail.reverse()
        return tail[: span[1] - span[0] + 1]
    return list(itertools.islice(lst, span[0], span[1] + 1))


def lindex(ks: Keyspace, argv: Argv) -> Any:
    lst = ks.typed(argv[1], ListValue)
    if lst is None:
        return None  # looked up before the index is read, as Redis
    index = parse_int(argv[2])
    if not -len(lst) <= index < len(lst):
        return None
    return lst[index]


def lset(ks: Keyspace, argv: Argv) -> Any:
    lst = ks.typed(argv[1], ListValue)
    if lst is None:
        raise CommandError("no such key")
    index = parse_int(argv[2])
    if not -len(lst) <= index < len(lst):
        raise CommandError("index out of range")
    ks.log(argv)
    old = lst[index]
    lst[index] = argv[3]
    ks.grow(lst, len(argv[3]) - len(old))
    return SimpleString("OK")


def linsert(ks: Keyspace, argv: Argv) -> Any:
    where = argv[2].upper()
    if where not in (b"BEFORE", b"AFTER"):
        raise CommandError(SYNTAX)
    lst = ks.typed(argv[1], ListValue)
    if lst is None:
        return 0
    try:
        index = lst.index(argv[3])
    except ValueError:
        return -1
    ks.log(argv)
    lst.insert(index if where == b"BEFORE" else index + 1, argv[4])
    ks.grow(lst, len(argv[4]) + _OVERHEAD)
    return len(lst)


def lrem(ks: Keyspace, argv: Argv) -> Any:
    count = parse_int(argv[2])
    lst = ks.typed(argv[1], ListValue)
    if lst is None:
        return 0
    element = argv[3]
    items = list(lst)
    limit = abs(count) or len(items)
    removed = 0
    keep: list[bytes] = []
    order = items if count >= 0 else reversed(items)
    for item in order:
        if item == element and removed < limit:
            removed += 1
        else:
            keep.append(item)
    if not removed:
        return 0
    if count < 0:
        keep.reverse()
    ks.log(argv)
    lst.clear()
    lst.extend(keep)
    ks.grow(lst, -(len(element) + _OVERHEAD) * removed)
    if not lst:
        ks.drop(argv[1])
    return removed


def ltrim(ks: Keyspace, argv: Argv) -> Any:
    start, end = parse_int(argv[2]), parse_int(argv[3])
    lst = ks.typed(argv[1], ListValue)
    if lst is None:
        return SimpleString("OK")
    span = _span(start, end, len(lst))
    keep = [] if span is None else list(itertools.islice(lst, span[0], span[1] + 1))
    if len(keep) == len(lst):
        return SimpleString("OK")
    ks.log(argv)
    removed = sum(map(len, lst)) - sum(map(len, keep))
    dropped = len(lst) - len(keep)
    lst.clear()
    lst.extend(keep)
    ks.grow(lst, -removed - _OVERHEAD * dropped)
    if not lst:
        ks.drop(argv[1])
    return SimpleString("OK")


def lpos(ks: Keyspace, argv: Argv) -> Any:
    rank, count, maxlen = 1, None, 0
    i = 3
    while i < len(argv):
        opt = argv[i].upper()
        if i + 1 >= len(argv):
            raise CommandError(SYNTAX)
        if opt == b"RANK":
            rank = parse_int(argv[i + 1])
            if rank == 0:
                raise CommandError(
                    "RANK can't be zero: use 1 to start from the first match, 2 from the "
                    "second ... or use negative to start from the end of the list")
            if rank == -(1 << 63):
                raise CommandError("value is out of range, value must between "
                                   "-9223372036854775807 and 9223372036854775807")
        elif opt == b"COUNT":
            count = parse_int(argv[i + 1], "COUNT can't be negative")
            if count < 0:
                raise CommandError("COUNT can't be negative")
        elif opt == b"MAXLEN":
            maxlen = parse_int(argv[i + 1], "MAXLEN can't be negative")
            if maxlen < 0:
                raise CommandError("MAXLEN can't be negative")
        else:
            raise CommandError(SYNTAX)
        i += 2
    lst = ks.typed(argv[1], ListValue)
    if lst is None:
        return None if count is None else []
    element = argv[2]
    size = len(lst)
    indexes = range(size) if rank > 0 else range(size - 1, -1, -1)
    if maxlen:
        indexes = indexes[:maxlen]
    skip = abs(rank) - 1
    found: list[int] = []
    want = 1 if count is None else (count or size)
    items = list(lst)
    for idx in indexes:
        if items[idx] == element:
            if skip:
                skip -= 1
                continue
            found.append(idx)
            if len(found) >= want:
                break
    if count is None:
        return found[0] if found else None
    return found


def move(ks: Keyspace, source: bytes, dest: bytes, src_left: bool, dst_left: bool) -> Any:
    """LMOVE's effect on lists known to exist / be lists (logged)."""
    src = ks.typed(source, ListValue)
    if src is None:
        return None
    dst = ks.typed(dest, ListValue)
    element = src[0] if src_left else src[-1]
    ks.log((b"LPOP" if src_left else b"RPOP", source),
           (b"LPUSH" if dst_left else b"RPUSH", dest, element))
    _pop_n(ks, source, src, src_left, 1)
    if source == dest:
        dst = ks.typed(dest, ListValue)
    _push(ks, dest, [element], dst_left, dst)
    return element


def _side(arg: bytes) -> bool:
    side = arg.upper()
    if side not in (b"LEFT", b"RIGHT"):
        raise CommandError(SYNTAX)
    return side == b"LEFT"


def lmove(ks: Keyspace, argv: Argv) -> Any:
    src_left, dst_left = _side(argv[3]), _side(argv[4])
    if ks.typed(argv[1], ListValue) is None:
        return None
    ks.typed(argv[2], ListValue)
    return move(ks, argv[1], argv[2], src_left, dst_left)


def rpoplpush(ks: Keyspace, argv: Argv) -> Any:
    if ks.typed(argv[1], ListValue) is None:
        return None
    ks.typed(argv[2], ListValue)
    return move(ks, argv[1], argv[2], False, True)


def parse_mpop(argv: Argv, start: int, sides: tuple[bytes, bytes],
               ) -> tuple[list[bytes], bool, int]:
    """LMPOP/ZMPOP numkeys key... WHERE [COUNT n] from argv[start]."""
    numkeys = parse_int(argv[start], "numkeys should be greater than 0")
    if numkeys <= 0:
        raise CommandError("numkeys should be greater than 0")
    if start + 1 + numkeys >= len(argv) + (0 if len(argv) > start + numkeys else 1):
        raise CommandError(SYNTAX)
    keys = list(argv[start + 1:start + 1 + numkeys])
    rest = argv[start + 1 + numkeys:]
    if not rest:
        raise CommandError(SYNTAX)
    where = rest[0].upper()
    if where not in sides:
        raise CommandError(SYNTAX)
    count = 1
    if len(rest) == 3 and rest[1].upper() == b"COUNT":
        count = parse_int(rest[2], "count should be greater than 0")
        if count <= 0:
            raise CommandError("count should be greater than 0")
    elif len(rest) != 1:
        raise CommandError(SYNTAX)
    return keys, where == sides[0], count


def lmpop(ks: Keyspace, argv: Argv) -> Any:
    keys, left, count = parse_mpop(argv, 1, (b"LEFT", b"RIGHT"))
    for key in keys:
        if ks.typed(key, ListValue):
            return [key, pop_from(ks, key, left, count)]
    return NULL_ARRAY


COMMANDS = {
    b"lpush": push, b"rpush": push, b"lpushx": push, b"rpushx": push, b"lpop": pop,
    b"rpop": pop, b"llen": llen, b"lrange": lrange, b"lindex": lindex, b"lset": lset,
    b"linsert": linsert, b"lrem": lrem, b"ltrim": ltrim, b"lpos": lpos, b"lmove": lmove,
    b"rpoplpush": rpoplpush, b"lmpop": lmpop,
}
