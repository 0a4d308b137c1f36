"""Keyspace notifications (``notify-keyspace-events``), Redis 7.0's way.

The flags (``K E g $ l s h z x e t m d n A``) parse and print as Redis's
notify.c does. Which event a command fires is declared once, in
:data:`EVENTS` (command -> rules), instead of calls scattered through the
handlers: a rule names the class, the event and the keys it is about, and
whether it fires only when the command changed something (judged by the
reply: ``:0``, a null or an empty array mean nothing happened). Around a
write command the session snapshots which of its keys exist, so a key that
disappears (a list popped empty, EXPIRE in the past) also fires ``del``
and a key that appears fires ``new``. ``expired`` and ``evicted`` come from
the embedded store (``MemoryStore.key_events``), and so do the stream
events (class ``t``: ``xadd``, ``xtrim``, ``xdel``, ``xsetid``,
``xgroup-*``), which the stream commands fire where Redis's t_stream.c does
(a consumer made by XREADGROUP or XCLAIM included).

Nothing here runs unless the flags enable a class: with
``notify-keyspace-events ""`` (the default) a command pays one integer test.
Not emitted: key-miss events (``m``), module events (``d``), and events of
commands run inside MULTI/EXEC (stream events excepted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

__all__ = ["ALL", "EVENTS", "Rule", "emit", "served", "flags_to_string", "parse_flags", "KEYSPACE",
           "KEYEVENT", "NEW", "EXPIRED", "EVICTED", "GENERIC"]

KEYSPACE: Final = 1 << 0   # K
KEYEVENT: Final = 1 << 1   # E
GENERIC: Final = 1 << 2    # g
STRING: Final = 1 << 3     # $
LIST: Final = 1 << 4       # l
SET: Final = 1 << 5        # s
HASH: Final = 1 << 6       # h
ZSET: Final = 1 << 7       # z
EXPIRED: Final = 1 << 8    # x
EVICTED: Final = 1 << 9    # e
STREAM: Final = 1 << 10    # t
KEY_MISS: Final = 1 << 11  # m
MODULE: Final = 1 << 13    # d
NEW: Final = 1 << 14       # n
#: ``A``: every class but key-miss and new (as Redis 7.0).
ALL: Final = GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE

_BY_CHAR: Final = {"A": ALL, "g": GENERIC, "$": STRING, "l": LIST, "s": SET, "h": HASH,
                   "z": ZSET, "x": EXPIRED, "e": EVICTED, "K": KEYSPACE, "E": KEYEVENT,
                   "t": STREAM, "m": KEY_MISS, "d": MODULE, "n": NEW}
#: The order notify.c prints the classes in (after A or them: K, E, m).
_PRINT_ORDER: Final = (("g", GENERIC), ("$", STRING), ("l", LIST), ("s", SET), ("h", HASH),
                       ("z", ZSET), ("x", EXPIRED), ("e", EVICTED), ("t", STREAM),
                       ("d", MODULE), ("n", NEW))
#: CONFIG SET's reason for a bad character (Redis's words).
BAD_FLAGS: Final = "Invalid event class character. Use 'Ag$lshzxeKEtmdn'."


def parse_flags(text: str) -> int | None:
    """The flags of ``text``; None if a character names no class."""
    flags = 0
    for char in text:
        bit = _BY_CHAR.get(char)
        if bit is None:
            return None
        flags |= bit
    return flags


def flags_to_string(flags: int) -> str:
    """CONFIG GET's canonical form (``KA`` reads back as ``AK``)."""
    out = ("A" if flags & ALL == ALL
           else "".join(char for char, bit in _PRINT_ORDER if flags & bit))
    if flags & KEYSPACE:
        out += "K"
    if flags & KEYEVENT:
        out += "E"
    if flags & KEY_MISS:
        out += "m"
    return out


#: A rule: (class, event, keys, only when something changed). keys: "first"
#: (argv[1]), "second" (argv[2]), "all" (every key argument), "pairs" (MSET's
#: keys).
Rule = tuple[int, str, str, bool]

_G, _S, _L, _T, _H, _Z = GENERIC, STRING, LIST, SET, HASH, ZSET

#: Command -> the events it fires (Redis 7.0's notifyKeyspaceEvent calls in
#: t_string.c, t_list.c, t_hash.c, t_set.c, t_zset.c, db.c, expire.c).
EVENTS: Final[dict[str, tuple[Rule, ...]]] = {
    # strings
    "set": ((_S, "set", "first", True),),
    "setnx": ((_S, "set", "first", True),),
    "setex": ((_S, "set", "first", False), (_G, "expire", "first", False)),
    "psetex": ((_S, "set", "first", False), (_G, "expire", "first", False)),
    "getset": ((_S, "set", "first", False),),
    "mset": ((_S, "set", "pairs", False),),
    "msetnx": ((_S, "set", "pairs", True),),
    "append": ((_S, "append", "first", False),),
    "setrange": ((_S, "setrange", "first", False),),
    "incr": ((_S, "incrby", "first", False),),
    "decr": ((_S, "incrby", "first", False),),  # Redis names every one incrby
    "incrby": ((_S, "incrby", "first", False),),
    "decrby": ((_S, "incrby", "first", False),),
    "incrbyfloat": ((_S, "incrbyfloat", "first", False),),
    "getdel": ((_G, "del", "first", True),),
    # keyspace
    "del": ((_G, "del", "all", True),),
    "unlink": ((_G, "del", "all", True),),
    "expire": ((_G, "expire", "first", True),),
    "pexpire": ((_G, "expire", "first", True),),
    "expireat": ((_G, "expire", "first", True),),
    "pexpireat": ((_G, "expire", "first", True),),
    "persist": ((_G, "persist", "first", True),),
    "rename": ((_G, "rename_from", "first", False), (_G, "rename_to", "second", False)),
    "renamenx": ((_G, "rename_from", "first", True), (_G, "rename_to", "second", True)),
    "copy": ((_G, "copy_to", "second", True),),
    "restore": ((_G, "restore", "first", False),),
    # lists
    "lpush": ((_L, "lpush", "first", False),),
    "rpush": ((_L, "rpush", "first", False),),
    "lpushx": ((_L, "lpush", "first", True),),
    "rpushx": ((_L, "rpush", "first", True),),
    "lpop": ((_L, "lpop", "first", True),),
    "rpop": ((_L, "rpop", "first", True),),
    "lset": ((_L, "lset", "first", False),),
    "linsert": ((_L, "linsert", "first", True),),
    "lrem": ((_L, "lrem", "first", True),),
    "ltrim": ((_L, "ltrim", "first", False),),
    # (the push is announced before the pop, as t_list.c does)
    "rpoplpush": ((_L, "lpush", "second", True), (_L, "rpop", "first", True)),
    # hashes
    "hset": ((_H, "hset", "first", False),),
    "hmset": ((_H, "hset", "first", False),),
    "hsetnx": ((_H, "hset", "first", True),),
    "hdel": ((_H, "hdel", "first", True),),
    "hincrby": ((_H, "hincrby", "first", False),),
    "hincrbyfloat": ((_H, "hincrbyfloat", "first", False),),
    # sets
    "sadd": ((_T, "sadd", "first", True),),
    "srem": ((_T, "srem", "first", True),),
    "spop": ((_T, "spop", "first", True),),
    "smove": ((_T, "srem", "first", True), (_T, "sadd", "second", True)),
    "sinterstore": ((_T, "sinterstore", "first", True),),
    "sunionstore": ((_T, "sunionstore", "first", True),),
    "sdiffstore": ((_T, "sdiffstore", "first", True),),
    # sorted sets
    "zadd": ((_Z, "zadd", "first", True),),
    "zincrby": ((_Z, "zincr", "first", False),),
    "zrem": ((_Z, "zrem", "first", True),),
    "zremrangebyscore": ((_Z, "zremrangebyscore", "first", True),),
    "zremrangebyrank": ((_Z, "zremrangebyrank", "first", True),),
    "zremrangebylex": ((_Z, "zremrangebylex", "first", True),),
    "zpopmin": ((_Z, "zpopmin", "first", True),),
    "zpopmax": ((_Z, "zpopmax", "first", True),),
    "zunionstore": ((_Z, "zunionstore", "first", True),),
    "zinterstore": ((_Z, "zinterstore", "first", True),),
    "zdiffstore": ((_Z, "zdiffstore", "first", True),),
    "zrangestore": ((_Z, "zrangestore", "first", True),),
}

#: Replies that mean the command changed nothing.
_NOTHING: Final = frozenset({b":0\r\n", b"$-1\r\n", b"_\r\n", b"*-1\r\n", b"*0\r\n"})
#: Commands whose destination key is made before any event (db.c's RENAME, COPY).
_CREATES_FIRST: Final = frozenset({"rename", "renamenx", "copy"})
#: Blocking pops: their events are the served pop's (:func:`served`).
_BLOCKING: Final = frozenset({"blpop", "brpop", "blmove", "brpoplpush", "blmpop", "bzpopmin",
                              "bzpopmax", "bzmpop"})
#: Options of SET / GETEX that set a time to live (they add an expire event).
_TTL_OPTIONS: Final = frozenset({b"ex", b"px", b"exat", b"pxat"})


def _keys(which: str, argv: Sequence[bytes]) -> Sequence[bytes]:
    if which == "first":
        return argv[1:2]
    if which == "second":
        return argv[2:3]
    if which == "pairs":
        return argv[1::2]
    return argv[1:]


def emit(publish: Callable[[int, str, bytes], None], flags: int, name: str,
         argv: Sequence[bytes], reply: bytes, before: dict[bytes, bool],
         exists: Callable[[bytes], bool]) -> None:
    """Fire the events of one command that ran (``reply`` not an error).
    ``before``: which of its keys existed before it ran (empty unless a
    snapshot was taken); ``publish(class, event, key)``. Per key, in Redis's
    order: ``new`` (created), the command's event, then ``del`` (emptied)."""
    changed = reply not in _NOTHING
    told: set[bytes] = set()
    newed: set[bytes] = set()

    def created(key: bytes) -> None:
        if key not in newed and flags & NEW and before.get(key) is False and exists(key):
            publish(NEW, "new", key)
        newed.add(key)

    if name in _BLOCKING:
        for key in before:  # the pop's own events come from served()
            created(key)
        return
    if name in _CREATES_FIRST:
        for key in argv[2:3]:
            created(key)

    def emptied(key: bytes) -> None:
        if before.get(key) and not exists(key):
            publish(GENERIC, "del", key)  # popped / removed empty

    for cls, event, which, conditional in EVENTS.get(name, ()):
        if conditional and not changed:
            continue
        for key in _keys(which, argv):
            if which == "all" and not before.get(key, True):
                continue  # DEL of a key that was not there
            gone = before.get(key) and not exists(key)
            created(key)
            if event == "expire" and gone:
                publish(cls, "del", key)  # a time in the past deletes (expire.c)
            elif event == "restore" and not exists(key):
                # A TTL already in the past: nothing made, and a key that
                # REPLACE removed fires del (cluster.c restoreCommand).
                if gone:
                    publish(cls, "del", key)
            elif event == "restore" and before.get(key):
                # REPLACE deletes the key and adds the new one (dbAdd: new).
                if flags & NEW:
                    publish(NEW, "new", key)
                publish(cls, event, key)
            else:
                publish(cls, event, key)
                if gone and event not in ("del", "rename_from") and key not in told:
                    emptied(key)
            told.add(key)
    if name == "set" and changed and any(a.lower() in _TTL_OPTIONS for a in argv[3:]):
        publish(GENERIC, "expire", argv[1])
    for key in before:
        created(key)
        if key not in told:
            emptied(key)


#: The pop event of a blocking command's plain command, by its direction.
_POP_EVENTS: Final = {b"left": "lpop", b"right": "rpop", b"min": "zpopmin", b"max": "zpopmax"}
_PUSH_EVENTS: Final = {b"left": "lpush", b"right": "rpush"}


def served(publish: Callable[[int, str, bytes], None], command: Sequence[bytes],
           result: object, exists: Callable[[bytes], bool], *, created: bool = False) -> None:
    """The events of a blocking command's pop (``command``: the plain
    LMPOP/ZMPOP/LMOVE it ran, at once or when a push woke it; ``result``
    not empty), as Redis fires them for a served client: LMOVE's push on the
    destination first, then the pop on the source, then ``del`` if that
    emptied it. ``created``: LMOVE made its destination (``new`` first)."""
    name = command[0].lower()
    if name in (b"xread", b"xreadgroup"):
        return  # a read: no event (a consumer it creates is not announced here)
    if name == b"lmove":
        key = command[1]
        if created:
            publish(NEW, "new", command[2])
        publish(LIST, _PUSH_EVENTS[command[4].lower()], command[2])
        publish(LIST, _POP_EVENTS[command[3].lower()], key)
    else:  # LMPOP / ZMPOP numkeys key... LEFT|RIGHT|MIN|MAX [COUNT n]
        assert isinstance(result, list)
        key = result[0]
        side = command[2 + int(command[1])].lower()
        publish(ZSET if name == b"zmpop" else LIST, _POP_EVENTS[side], key)
    if not exists(key):
        publish(GENERIC, "del", key)
