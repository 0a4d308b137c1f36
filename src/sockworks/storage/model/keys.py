"""Keyspace commands across types: TYPE OBJECT COPY RENAME RENAMENX
RANDOMKEY TOUCH EXPIRETIME PEXPIRETIME SCAN (with TYPE) SORT, MEMORY USAGE.

MEMORY USAGE answers the key's share of ``used_memory``, from the same
accounting (eviction.py, values.py): the key and value bytes, each
element's overhead, the entry overhead and the expiry overhead if it has a
TTL. Every element is counted as it is added, so nothing is sampled.

RENAME logs itself (the value and its TTL move together, so a replay moves
whatever is there); COPY logs the copy in its shortest form (records.py's
``value_commands``), so a replay does not depend on the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sockworks.protocols.resp import NULL_ARRAY, SimpleString
from sockworks.storage.eviction import ENTRY_OVERHEAD, EXPIRY_OVERHEAD
from sockworks.storage.model.common import (
    SYNTAX,
    CommandError,
    parse_cursor,
    parse_double,
    parse_int,
)
from sockworks.storage.model.keyspace import Keyspace
from sockworks.storage.model.values import (
    HashValue,
    ListValue,
    SetValue,
    ZSetValue,
    copy_value,
    encoding_of,
    type_name,
    value_size,
)
from sockworks.storage.records import value_commands

__all__ = ["COMMANDS"]

Argv = Sequence[bytes]
_TYPES = frozenset((b"string", b"list", b"set", b"zset", b"hash", b"stream"))


def type_(ks: Keyspace, argv: Argv) -> Any:
    value = ks.lookup(argv[1])
    return SimpleString("none" if value is None else type_name(value))


def object_(ks: Keyspace, argv: Argv) -> Any:
    sub = argv[1].lower()
    if sub == b"help" and len(argv) == 2:
        return [SimpleString(line) for line in (
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>", "    Return the kind of internal representation used in order",
            "    to store the value associated with a <key>.",
            "FREQ <key>", "    Return the access frequency index of the <key>. The returned",
            "    integer is proportional to the logarithm of the recent access frequency",
            "    of the key.",
            "IDLETIME <key>", "    Return the idle time of the <key>, that is the approximated",
            "    number of seconds elapsed since the last access to the key.",
            "REFCOUNT <key>", "    Return the number of references of the value associated",
            "    with the specified <key>.",
            "HELP", "    Print this help.")]
    if sub not in (b"encoding", b"refcount", b"idletime", b"freq", b"help"):
        shown = argv[1].decode("latin-1")
        raise CommandError(f"unknown subcommand '{shown}'. Try OBJECT HELP.")
    if len(argv) != (2 if sub == b"help" else 3):
        raise CommandError(f"wrong number of arguments for 'object|{sub.decode()}' command")
    value = ks.lookup(argv[2])
    if value is None:
        return None
    if sub == b"encoding":
        return encoding_of(value, ks.encodings).encode()
    if sub == b"refcount":
        return 1
    if sub == b"idletime":
        return 0
    raise CommandError("An LFU maxmemory policy is not selected, access frequency not "
                       "tracked. Please note that when switching between policies at "
                       "runtime LRU and LFU data will take some time to adjust.")


def copy(ks: Keyspace, argv: Argv) -> Any:
    source, dest = argv[1], argv[2]
    replace = False
    i = 3
    while i < len(argv):
        opt = argv[i].upper()
        if opt == b"REPLACE":
            replace = True
        elif opt == b"DB" and i + 1 < len(argv):
            db = parse_int(argv[i + 1])
            if db != 0:
                raise CommandError("DB index is out of range")
            i += 1
        else:
            raise CommandError(SYNTAX)
        i += 1
    if source == dest:
        raise CommandError("source and destination objects are the same")
    value = ks.lookup(source)
    if value is None:
        return 0
    if ks.lookup(dest) is not None and not replace:
        return 0
    at = ks.expire_at(source)
    ks.log((b"DEL", dest), *value_commands(dest, value),
           *([(b"PEXPIREAT", dest, b"%d" % at)] if at else []))
    if ks.lookup(dest) is not None:
        ks.drop(dest)
    ks.put(dest, copy_value(value), at)
    return 1


def rename(ks: Keyspace, argv: Argv) -> Any:
    source, dest = argv[1], argv[2]
    only_new = argv[0].lower() == b"renamenx"
    value = ks.lookup(source)
    if value is None:
        raise CommandError("no such key")
    if source == dest:
        return 0 if only_new else SimpleString("OK")
    if only_new and ks.lookup(dest) is not None:
        return 0
    at = ks.expire_at(source)
    ks.log((b"RENAME", source, dest))
    if ks.lookup(dest) is not None:
        ks.drop(dest)
    ks.drop(source)
    ks.put(dest, value, at)
    if isinstance(value, ListValue | ZSetValue):
        ks.signal(dest)
    return 1 if only_new else SimpleString("OK")


def randomkey(ks: Keyspace, argv: Argv) -> Any:
    return ks.random_key()


def touch(ks: Keyspace, argv: Argv) -> Any:
    return sum(ks.lookup(k) is not None for k in argv[1:])


def expiretime(ks: Keyspace, argv: Argv) -> Any:
    if ks.lookup(argv[1]) is None:
        return -2
    at = ks.expire_at(argv[1])
    if not at:
        return -1
    return at if argv[0].lower() == b"pexpiretime" else at // 1000


def scan(ks: Keyspace, argv: Argv) -> Any:
    cursor = parse_cursor(argv[1])
    match: bytes | None = None
    count = 10
    kind: str | None = None
    i = 2
    while i < len(argv):
        opt = argv[i].upper()
        if i + 1 >= len(argv):
            raise CommandError(SYNTAX)
        if opt == b"MATCH":
            match = None if argv[i + 1] == b"*" else argv[i + 1]
        elif opt == b"COUNT":
            count = parse_int(argv[i + 1])
            if count < 1:
                raise CommandError(SYNTAX)
        elif opt == b"TYPE":
            kind = argv[i + 1].decode("latin-1").lower()
        else:
            raise CommandError(SYNTAX)
        i += 2
    nxt, keys = ks.scan_keys(cursor, match, count, kind)
    return [b"%d" % nxt, keys]


# -- SORT ---------------------------------------------------------------------------

def _lookup_pattern(ks: Keyspace, pattern: bytes, subst: bytes) -> bytes | None:
    """SORT's BY/GET pattern: ``*`` replaced by the element, ``->field``
    reads a hash field; ``#`` is the element itself."""
    if pattern == b"#":
        return subst
    star = pattern.find(b"*")
    if star < 0:
        return None
    arrow = pattern.find(b"->", star)
    field = None
    if arrow >= 0 and arrow + 2 < len(pattern):
        field = pattern[arrow + 2:]
        pattern = pattern[:arrow]
    key = pattern[:star] + subst + pattern[star + 1:]
    value = ks.lookup(key)
    if value is None:
        return None
    if field is not None:
        return value.get(field) if isinstance(value, HashValue) else None
    return value if type(value) is bytes else None


def sort(ks: Keyspace, argv: Argv) -> Any:
    by: bytes | None = None
    gets: list[bytes] = []
    offset, count = 0, -1
    desc = alpha = False
    store: bytes | None = None
    i = 2
    readonly = argv[0].lower() == b"sort_ro"
    while i < len(argv):
        opt = argv[i].upper()
        left = len(argv) - i - 1
        if opt == b"ASC":
            desc = False
        elif opt == b"DESC":
            desc = True
        elif opt == b"ALPHA":
            alpha = True
        elif opt == b"LIMIT" and left >= 2:
            offset, count = parse_int(argv[i + 1]), parse_int(argv[i + 2])
            i += 2
        elif opt == b"STORE" and left >= 1 and not readonly:
            store = argv[i + 1]
            i += 1
        elif opt == b"BY" and left >= 1:
            by = argv[i + 1]
            i += 1
        elif opt == b"GET" and left >= 1:
            gets.append(argv[i + 1])
            i += 1
        else:
            raise CommandError(SYNTAX)
        i += 1
    value = ks.lookup(argv[1])
    if value is None:
        items: list[bytes] = []
    elif isinstance(value, ListValue | SetValue):
        items = list(value)
    elif isinstance(value, ZSetValue):
        items = [m for _, m in value.order]
    else:
        raise CommandError("WRONGTYPE Operation against a key holding the wrong kind of value")
    dontsort = by is not None and b"*" not in by
    if not dontsort:
        def weight(item: bytes) -> Any:
            source = item if by is None else _lookup_pattern(ks, by, item)
            if alpha:
                return source or b""
            if not source:
                return 0.0  # strtod of "" is 0 with nothing left over
            try:
                return parse_double(source)
            except CommandError:
                raise CommandError("One or more scores can't be converted into double") \
                    from None
        keyed = [(weight(item), item) for item in items]
        keyed.sort(key=lambda pair: pair, reverse=desc)
        items = [item for _, item in keyed]
    elif desc and isinstance(value, ZSetValue):
        items.reverse()
    start = max(0, offset)
    items = items[start:] if count < 0 else items[start:start + count]
    result: list[bytes | None] = []
    if gets:
        for item in items:
            result.extend(_lookup_pattern(ks, g, item) for g in gets)
    else:
        result = list(items)
    if store is not None:
        elements = [r or b"" for r in result]
        if not elements:
            ks.delete([store])
        else:
            ks.log((b"DEL", store), (b"RPUSH", store, *elements))
            if ks.lookup(store) is not None:
                ks.drop(store)
            lst = ListValue()
            ks.put(store, lst)
            lst.extend(elements)
            ks.grow(lst, sum(map(len, elements)) + 48 * len(elements))
            ks.signal(store)
        return len(elements)
    return result


def memory(ks: Keyspace, argv: Argv) -> Any:
    """MEMORY USAGE key [SAMPLES n] (arguments checked by the RESP port)."""
    key = argv[2]
    value = ks.lookup(key)
    if value is None:
        return None
    expiry = EXPIRY_OVERHEAD if ks.expire_at(key) else 0
    return len(key) + value_size(value) + ENTRY_OVERHEAD + expiry


_ = NULL_ARRAY

COMMANDS = {
    b"type": type_, b"object": object_, b"copy": copy, b"rename": rename,
    b"renamenx": rename, b"randomkey": randomkey, b"touch": touch,
    b"expiretime": expiretime, b"pexpiretime": expiretime, b"scan": scan,
    b"sort": sort, b"sort_ro": sort, b"memory": memory,
}
