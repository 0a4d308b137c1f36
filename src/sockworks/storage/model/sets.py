"""Set commands: SADD ... SSCAN, on :class:`SetValue` (a Python set).

SPOP logs the members it removed (``SREM``), and the *STORE commands log
the resulting set (``DEL dst`` + ``SADD dst ...``), so a replay is exact.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from sockworks.protocols.resp import RespSet
from sockworks.storage.model.common import (
    SYNTAX,
    CommandError,
    parse_intercard,
    parse_positive,
    parse_random_count,
    scan_args,
    scan_slice,
)
from sockworks.storage.model.keyspace import Keyspace
from sockworks.storage.model.values import SET_MEMBER_OVERHEAD, SetValue, is_int_string

__all__ = ["COMMANDS"]

Argv = Sequence[bytes]
_OVERHEAD = SET_MEMBER_OVERHEAD


def _add(ks: Keyspace, key: bytes, members: Sequence[bytes], s: SetValue | None) -> int:
    if s is None:
        s = SetValue()
        ks.put(key, s)
    before = len(s)
    grown = 0
    for m in members:
        if m not in s:
            s.add(m)
            grown += len(m) + _OVERHEAD
            if not s.big and not is_int_string(m):
                s.big = True  # Redis converts an intset for good
    if not s.big and len(s) > ks.encodings.set_max_intset_entries:
        s.big = True
    ks.grow(s, grown)
    return len(s) - before


def _remove(ks: Keyspace, key: bytes, s: SetValue, members: Sequence[bytes]) -> int:
    shrunk = removed = 0
    for m in members:
        if m in s:
            s.discard(m)
            removed += 1
            shrunk += len(m) + _OVERHEAD
    ks.grow(s, -shrunk)
    if not s:
        ks.drop(key)
    return removed


def sadd(ks: Keyspace, argv: Argv) -> Any:
    s = ks.typed(argv[1], SetValue)
    if s is not None and all(m in s for m in argv[2:]):
        return 0
    ks.log(argv)
    return _add(ks, argv[1], argv[2:], s)


def srem(ks: Keyspace, argv: Argv) -> Any:
    s = ks.typed(argv[1], SetValue)
    if s is None or not any(m in s for m in argv[2:]):
        return 0
    ks.log(argv)
    return _remove(ks, argv[1], s, argv[2:])


def scard(ks: Keyspace, argv: Argv) -> Any:
    s = ks.typed(argv[1], SetValue)
    return 0 if s is None else len(s)


def sismember(ks: Keyspace, argv: Argv) -> Any:
    s = ks.typed(argv[1], SetValue)
    return int(s is not None and argv[2] in s)


def smismember(ks: Keyspace, argv: Argv) -> Any:
    s: set[bytes] = ks.typed(argv[1], SetValue) or set()
    return [int(m in s) for m in argv[2:]]


def smembers(ks: Keyspace, argv: Argv) -> Any:
    return RespSet(list(ks.typed(argv[1], SetValue) or ()))


def spop(ks: Keyspace, argv: Argv) -> Any:
    if len(argv) > 3:
        raise CommandError(SYNTAX)
    count = parse_positive(argv[2], "value") if len(argv) == 3 else None
    s = ks.typed(argv[1], SetValue)
    if s is None:
        return None if count is None else RespSet([])
    if count == 0:
        return RespSet([])
    chosen = random.sample(list(s), min(1 if count is None else count, len(s)))
    if len(chosen) == len(s):
        ks.delete([argv[1]])
    else:
        ks.log((b"SREM", argv[1], *chosen))
        _remove(ks, argv[1], s, chosen)
    return chosen[0] if count is None else RespSet(chosen)


def srandmember(ks: Keyspace, argv: Argv) -> Any:
    if len(argv) > 3:
        raise CommandError(SYNTAX)
    count = parse_random_count(argv[2], False) if len(argv) == 3 else 0
    s = ks.typed(argv[1], SetValue)
    if len(argv) == 2:
        return None if s is None else random.choice(list(s))
    if s is None or count == 0:
        return []
    members = list(s)
    if count > 0:
        return random.sample(members, min(count, len(members)))
    return random.choices(members, k=-count)


def smove(ks: Keyspace, argv: Argv) -> Any:
    source, dest, member = argv[1], argv[2], argv[3]
    src = ks.typed(source, SetValue)
    if src is None:
        return 0
    dst = ks.typed(dest, SetValue)
    if member not in src:
        return 0
    if source == dest:
        return 1
    ks.log((b"SREM", source, member), (b"SADD", dest, member))
    _remove(ks, source, src, [member])
    _add(ks, dest, [member], dst)
    return 1


def _operands(ks: Keyspace, keys: Sequence[bytes]) -> list[set[bytes]]:
    return [ks.typed(k, SetValue) or set() for k in keys]


def _combine(op: str, sets: list[set[bytes]]) -> set[bytes]:
    if op == "inter":
        if not sets or any(not s for s in sets):
            return set()
        ordered = sorted(sets, key=len)
        return set(ordered[0]).intersection(*ordered[1:])
    if op == "union":
        return set().union(*sets)
    first = set(sets[0])
    return first.difference(*sets[1:])


def _algebra(op: str) -> Any:
    def read(ks: Keyspace, argv: Argv) -> Any:
        return RespSet(list(_combine(op, _operands(ks, argv[1:]))))

    def store(ks: Keyspace, argv: Argv) -> Any:
        result = _combine(op, _operands(ks, argv[2:]))
        store_set(ks, argv[1], result)
        return len(result)
    return read, store


def store_set(ks: Keyspace, dest: bytes, members: set[bytes] | list[bytes]) -> None:
    """Replace ``dest`` with a set of ``members`` (none: delete it), logged."""
    if not members:
        ks.delete([dest])
        return
    ks.log((b"DEL", dest), (b"SADD", dest, *members))
    if ks.lookup(dest) is not None:
        ks.drop(dest)
    _add(ks, dest, list(members), None)


def sintercard(ks: Keyspace, argv: Argv) -> Any:
    numkeys, limit = parse_intercard(argv)
    count = len(_combine("inter", _operands(ks, argv[2:2 + numkeys])))
    return min(count, limit) if limit else count


def sscan(ks: Keyspace, argv: Argv) -> Any:
    cursor, match, count, _ = scan_args(argv, 2)
    s = ks.typed(argv[1], SetValue)
    if s is None:
        return [b"0", []]
    nxt, chosen = scan_slice(list(s), cursor, match, count)
    return [b"%d" % nxt, chosen]


sinter, sinterstore = _algebra("inter")
sunion, sunionstore = _algebra("union")
sdiff, sdiffstore = _algebra("diff")

COMMANDS = {
    b"sadd": sadd, b"srem": srem, b"scard": scard, b"sismember": sismember,
    b"smismember": smismember, b"smembers": smembers, b"spop": spop,
    b"srandmember": srandmember, b"smove": smove, b"sinter": sinter,
    b"sinterstore": sinterstore, b"sunion": sunion, b"sunionstore": sunionstore,
    b"sdiff": sdiff, b"sdiffstore": sdiffstore, b"sintercard": sintercard, b"sscan": sscan,
}
