"""Every data-model command of the embedded store, by lower-case name.

``COMMANDS`` maps a name to its function ``fn(ks, argv) -> reply`` and
whether it may add data (Redis's ``denyoom``: refused over maxmemory).
``REPLAY`` adds the commands only the log uses (``DEL``, ``SET``,
``PEXPIREAT``, written by COPY and the *STORE commands; ``XSTATE``, a
stream's counters as COPY and a log rewrite write them). ``PREPARE``: the
commands with work to do on their arguments alone, before the store lock
(RESTORE's CRC64 and decoding), each giving the function to run under it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from sockworks.protocols.resp import SimpleString
from sockworks.storage.model import (
    bitfield,
    bitmaps,
    dump,
    hashes,
    keys,
    lists,
    sets,
    stream_groups,
    streams,
    zsets,
)
from sockworks.storage.model.common import parse_int
from sockworks.storage.model.keyspace import Keyspace

__all__ = ["COMMANDS", "FREE_SUBCOMMANDS", "PREPARE", "REPLAY", "Command"]

Command = Callable[[Keyspace, Sequence[bytes]], Any]

#: Commands that cannot add data (everything else is denyoom).
_NO_GROWTH: Final = frozenset((
    b"hget", b"hmget", b"hdel", b"hlen", b"hstrlen", b"hexists", b"hkeys", b"hvals",
    b"hgetall", b"hrandfield", b"hscan", b"lpop", b"rpop", b"llen", b"lrange", b"lindex",
    b"lrem", b"ltrim", b"lpos", b"lmpop", b"srem", b"scard", b"sismember", b"smismember",
    b"smembers", b"spop", b"srandmember", b"sinter", b"sunion", b"sdiff", b"sintercard",
    b"sscan", b"zrem", b"zremrangebyrank", b"zremrangebyscore", b"zremrangebylex",
    b"zpopmin", b"zpopmax", b"zmpop", b"zscore", b"zmscore", b"zcard", b"zcount",
    b"zlexcount", b"zrank", b"zrevrank", b"zrange", b"zrevrange", b"zrangebyscore",
    b"zrevrangebyscore", b"zrangebylex", b"zrevrangebylex", b"zunion", b"zinter", b"zdiff",
    b"zintercard", b"zrandmember", b"zscan", b"getbit", b"bitcount", b"bitpos", b"lcs",
    b"type", b"object", b"rename", b"renamenx", b"randomkey", b"touch", b"expiretime",
    b"pexpiretime", b"scan", b"sort_ro", b"memory", b"bitfield_ro", b"xlen", b"xrange",
    b"xrevrange", b"xdel", b"xtrim", b"xread", b"xreadgroup", b"xack", b"xpending", b"xclaim",
    b"xautoclaim", b"xinfo", b"dump",
))

#: Subcommands of a denyoom command that cannot add data (Redis 7.0 flags
#: only xgroup|create and xgroup|createconsumer denyoom): allowed over maxmemory.
FREE_SUBCOMMANDS: Final[Mapping[bytes, frozenset[bytes]]] = {
    b"xgroup": frozenset((b"setid", b"destroy", b"delconsumer", b"help")),
}

COMMANDS: Final[Mapping[bytes, tuple[Command, bool]]] = {
    name: (fn, name not in _NO_GROWTH)
    for family in (hashes, lists, sets, zsets, bitmaps, bitfield, keys, streams, stream_groups,
                   dump)
    for name, fn in family.COMMANDS.items()
}


PREPARE: Final = dump.PREPARE


def _del(ks: Keyspace, argv: Sequence[bytes]) -> Any:
    return ks.delete(argv[1:])


def _set(ks: Keyspace, argv: Sequence[bytes]) -> Any:
    ks.set_string(argv[1], argv[2])
    return SimpleString("OK")


def _pexpireat(ks: Keyspace, argv: Sequence[bytes]) -> Any:
    if ks.lookup(argv[1]) is not None:
        ks.set_expiry(argv[1], parse_int(argv[2]))
    return 1


REPLAY: Final[Mapping[bytes, tuple[Command, bool]]] = {
    **COMMANDS, b"del": (_del, False), b"set": (_set, True), b"pexpireat": (_pexpireat, False),
    b"xstate": (streams.xstate, False),
}
