"""Redis's raw RESP2 replies to data-model commands, as the Store's reply
vocabulary (:meth:`Store.execute_command`): the RESP2 wire form loses what
RESP3 shows (a map, a set, a double, a status), and this puts it back per
command, so a RESP3 client of ``--store redis://`` sees Redis's own types.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

from sockworks.protocols.resp import (
    NULL_ARRAY,
    ArrayMap,
    Double,
    Map,
    Pairs,
    RespSet,
    SimpleString,
)

__all__ = ["retag"]

Argv = Sequence[bytes]


def _has(argv: Argv, word: bytes) -> bool:
    return any(arg.upper() == word for arg in argv[2:])


def _pairs(flat: list[Any], double: bool) -> Pairs:
    return Pairs([(flat[i], Double(flat[i + 1]) if double else flat[i + 1])
                  for i in range(0, len(flat), 2)])


def _map(argv: Argv, raw: Any) -> Any:
    return Map([(raw[i], raw[i + 1]) for i in range(0, len(raw), 2)])


def _set(argv: Argv, raw: Any) -> Any:
    return RespSet(list(raw))


def _double(argv: Argv, raw: Any) -> Any:
    return None if raw is None else Double(raw)


def _doubles(argv: Argv, raw: Any) -> Any:
    return [None if r is None else Double(r) for r in raw]


def _status(argv: Argv, raw: Any) -> Any:
    return SimpleString(raw.decode()) if isinstance(raw, bytes) else raw


def _withscores(argv: Argv, raw: Any) -> Any:
    return _pairs(raw, True) if _has(argv, b"WITHSCORES") else raw


def _zadd(argv: Argv, raw: Any) -> Any:
    return _double(argv, raw) if _has(argv, b"INCR") else raw


def _zpop(argv: Argv, raw: Any) -> Any:
    if len(argv) == 3:
        return _pairs(raw, True)
    return [raw[0], Double(raw[1])] if raw else raw


def _zmpop(argv: Argv, raw: Any) -> Any:
    if raw is None:
        return NULL_ARRAY
    return [raw[0], [[m, Double(s)] for m, s in raw[1]]]


def _null_array(argv: Argv, raw: Any) -> Any:
    return NULL_ARRAY if raw is None else raw


def _counted_pop(argv: Argv, raw: Any) -> Any:
    return NULL_ARRAY if raw is None and len(argv) == 3 else raw


def _spop(argv: Argv, raw: Any) -> Any:
    return RespSet(list(raw)) if len(argv) == 3 else raw


def _hrandfield(argv: Argv, raw: Any) -> Any:
    return _pairs(raw, False) if len(argv) == 4 else raw


def _lcs(argv: Argv, raw: Any) -> Any:
    return _map(argv, raw) if _has(argv, b"IDX") else raw


def _entries(raw: Any) -> Any:
    """Stream entries: a deleted entry's fields (XREADGROUP history) are a null array."""
    return [[e[0], NULL_ARRAY if e[1] is None else e[1]] for e in raw]


def _xread(argv: Argv, raw: Any) -> Any:
    if raw is None:
        return NULL_ARRAY
    return ArrayMap([(key, _entries(entries)) for key, entries in raw])


def _xrange(argv: Argv, raw: Any) -> Any:
    return NULL_ARRAY if raw is None else raw


def _xpending(argv: Argv, raw: Any) -> Any:
    if len(argv) == 3 and raw and raw[3] is None:
        return [raw[0], raw[1], raw[2], NULL_ARRAY]
    return raw


def _help(raw: Any) -> Any:
    return [SimpleString(line.decode()) for line in raw]


def _xgroup(argv: Argv, raw: Any) -> Any:
    if argv[1].lower() == b"help":
        return _help(raw)
    return _status(argv, raw)


_XINFO_MAPS: Final = frozenset({b"groups", b"consumers", b"entries"})


def _xinfo_map(raw: Any) -> Any:
    """A flat field/value list as a map; nested group and consumer lists too."""
    items = []
    for i in range(0, len(raw), 2):
        key, value = raw[i], raw[i + 1]
        if key in (b"groups", b"consumers") and isinstance(value, list):
            value = [_xinfo_map(v) for v in value]
        items.append((key, value))
    return Map(items)


def _xinfo(argv: Argv, raw: Any) -> Any:
    sub = argv[1].lower()
    if sub == b"help":
        return _help(raw)
    if sub == b"stream":
        return _xinfo_map(raw)
    return [_xinfo_map(item) for item in raw]
def _sub_status(argv: Argv, raw: Any) -> Any:
    """SCRIPT/FUNCTION FLUSH, KILL, DELETE, RESTORE answer +OK."""
    sub = argv[1].lower() if len(argv) > 1 else b""
    return _status(argv, raw) if sub in (b"flush", b"kill", b"delete", b"restore") else raw


_RETAG: Final[dict[bytes, Callable[[Argv, Any], Any]]] = {
    b"hgetall": _map, b"smembers": _set, b"sinter": _set, b"sunion": _set, b"sdiff": _set,
    b"spop": _spop, b"zscore": _double, b"zincrby": _double, b"zmscore": _doubles,
    b"zadd": _zadd, b"zrange": _withscores, b"zrevrange": _withscores,
    b"zrangebyscore": _withscores, b"zrevrangebyscore": _withscores, b"zunion": _withscores,
    b"zinter": _withscores, b"zdiff": _withscores, b"zrandmember": _withscores,
    b"zpopmin": _zpop, b"zpopmax": _zpop, b"zmpop": _zmpop, b"lmpop": _null_array,
    b"lpop": _counted_pop, b"rpop": _counted_pop, b"hrandfield": _hrandfield, b"lcs": _lcs,
    b"hmset": _status, b"lset": _status, b"ltrim": _status, b"rename": _status,
    b"type": _status,
    b"xread": _xread, b"xreadgroup": _xread, b"xrange": _xrange, b"xrevrange": _xrange,
    b"xpending": _xpending, b"xgroup": _xgroup, b"xinfo": _xinfo, b"xsetid": _status,
    b"script": _sub_status, b"function": _sub_status,
}


def retag(argv: Argv, raw: Any) -> Any:
    """Redis's raw reply to ``argv`` in the Store's reply vocabulary."""
    fn = _RETAG.get(argv[0].lower())
    return raw if fn is None else fn(argv, raw)
