"""Consumer groups: XGROUP XREADGROUP XACK XPENDING XCLAIM XAUTOCLAIM, and
XINFO, with Redis 7.0's replies and error texts (t_stream.c).

Logged by effect, as Redis propagates them: a delivery or a claim is
``XCLAIM key group consumer 0 id TIME ms RETRYCOUNT n FORCE JUSTID``, a
group's new position ``XGROUP SETID key group id ENTRIESREAD n``, a new
consumer ``XGROUP CREATECONSUMER``, a pending entry dropped because its
entry is gone ``XACK``; so a replay rebuilds the PELs without depending on
the clock or on what a read would find. Each command works out its
effects first, logs them, then applies them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sockworks.protocols.resp import NULL_ARRAY, ArrayMap, Map, SimpleString
from sockworks.storage.model.common import SYNTAX, CommandError, parse_int
from sockworks.storage.model.keyspace import Keyspace
from sockworks.storage.model.streams import entry_reply, parse_interval, parse_read
from sockworks.storage.model.streamvalue import (
    CONSUMER_OVERHEAD,
    MAX_ID,
    MAX_SEQ,
    NACK_OVERHEAD,
    Consumer,
    Group,
    Nack,
    StreamValue,
    format_id,
    parse_id,
)

__all__ = ["COMMANDS"]

Argv = Sequence[bytes]

#: Redis 7.0's subcommand arities (n exact, -n at least n).
_XGROUP_ARITY: Final = {b"create": -5, b"setid": -5, b"destroy": 4, b"createconsumer": 5,
                        b"delconsumer": 5, b"help": 2}
_XINFO_ARITY: Final = {b"consumers": 4, b"groups": 3, b"stream": -3, b"help": 2}
#: Most entries XAUTOCLAIM's COUNT may ask for (Redis: LONG_MAX / 16; it
#: allocates COUNT slots up front). Here the reply is built under the store
#: lock, and each unit of COUNT may examine ten pending entries.
XAUTOCLAIM_COUNT_MAX: Final = (2**63 - 1) // 16


def _s(arg: bytes) -> str:
    return arg.decode("latin-1")


def _subcommand(argv: Argv, arities: dict[bytes, int]) -> bytes:
    sub = argv[1].lower()
    arity = arities.get(sub)
    cmd = _s(argv[0]).upper()
    if arity is None:
        raise CommandError(f"unknown subcommand '{_s(argv[1])}'. Try {cmd} HELP.")
    if (len(argv) != arity) if arity >= 0 else (len(argv) < -arity):
        raise CommandError(f"wrong number of arguments for '{_s(argv[0]).lower()}|"
                           f"{_s(sub)}' command")
    return sub


def _help(name: str, lines: Sequence[str]) -> list[SimpleString]:
    return [SimpleString(line) for line in (
        f"{name} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:", *lines,
        "HELP", "    Prints this help.")]


def _syntax_sub(argv: Argv) -> CommandError:
    return CommandError(f"unknown subcommand or wrong number of arguments for "
                        f"'{_s(argv[1])}'. Try {_s(argv[0]).upper()} HELP.")


def _nogroup(key: bytes, group: bytes, tail: str = "") -> CommandError:
    return CommandError(f"NOGROUP No such key '{_s(key)}' or consumer group '{_s(group)}'{tail}")


# -- applying effects (shared by the commands and their replay) --------------------------

def _consumer(ks: Keyspace, key: bytes, stream: StreamValue, group: Group,
              name: bytes) -> Consumer:
    consumer = group.consumers.get(name)
    if consumer is None:
        consumer = group.consumers[name] = Consumer(name, ks.now())
        ks.grow(stream, CONSUMER_OVERHEAD + len(name))
        ks.notify("xgroup-createconsumer", key)
    else:
        consumer.seen = ks.now()
    return consumer


def _drop_nack(ks: Keyspace, stream: StreamValue, group: Group, sid: int) -> None:
    nack = group.pel.pop(sid)
    del nack.consumer.pel[sid]
    ks.grow(stream, -NACK_OVERHEAD)


def _assign(ks: Keyspace, stream: StreamValue, group: Group, consumer: Consumer, sid: int,
            time: int, count: int) -> None:
    nack = group.pel.get(sid)
    if nack is None:
        nack = group.pel[sid] = Nack(consumer, time, count)
        ks.grow(stream, NACK_OVERHEAD)
    elif nack.consumer is not consumer:
        del nack.consumer.pel[sid]
        nack.consumer = consumer
    nack.time, nack.count = time, count
    consumer.pel[sid] = nack


def _claim_log(key: bytes, gname: bytes, cname: bytes, sid: int, time: int,
               count: int) -> tuple[bytes, ...]:
    return (b"XCLAIM", key, gname, cname, b"0", format_id(sid), b"TIME", b"%d" % time,
            b"RETRYCOUNT", b"%d" % count, b"FORCE", b"JUSTID")


def _setid_log(key: bytes, gname: bytes, last: int, read: int) -> tuple[bytes, ...]:
    return (b"XGROUP", b"SETID", key, gname, format_id(last), b"ENTRIESREAD", b"%d" % read)


# -- XGROUP ---------------------------------------------------------------------------

_XGROUP_HELP: Final = (
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
)


def xgroup(ks: Keyspace, argv: Argv) -> Any:
    sub = _subcommand(argv, _XGROUP_ARITY)
    if sub == b"help":
        return _help("XGROUP", _XGROUP_HELP)
    key, gname = argv[2], argv[3]
    mkstream = False
    entries_read = -1
    i = 5
    while i < len(argv):
        opt = argv[i].lower()
        if sub == b"create" and opt == b"mkstream":
            mkstream = True
            i += 1
        elif sub in (b"create", b"setid") and opt == b"entriesread" and i + 1 < len(argv):
            entries_read = parse_int(argv[i + 1])
            if entries_read < 0 and entries_read != -1:
                raise CommandError("value for ENTRIESREAD must be positive or -1")
            i += 2
        else:
            raise _syntax_sub(argv)
    stream = ks.typed(key, StreamValue)
    group = None
    if not mkstream:
        if stream is None:
            raise CommandError("The XGROUP subcommand requires the key to exist. Note that for "
                               "CREATE you may want to use the MKSTREAM option to create an "
                               "empty stream automatically.")
        group = stream.groups.get(gname)
        if group is None and sub in (b"setid", b"createconsumer", b"delconsumer"):
            raise CommandError(f"NOGROUP No such consumer group '{_s(gname)}' for key name "
                               f"'{_s(key)}'")
    if sub == b"create":
        if len(argv) > 8:
            raise _syntax_sub(argv)
        if argv[4] == b"$":
            last = stream.last_id if stream is not None else 0
        else:
            last = parse_id(argv[4], strict=True)
        if stream is not None and gname in stream.groups:
            raise CommandError("BUSYGROUP Consumer Group name already exists")
        ks.log((b"XGROUP", b"CREATE", key, gname, format_id(last), b"ENTRIESREAD",
                b"%d" % entries_read, *((b"MKSTREAM",) if stream is None else ())))
        if stream is None:
            stream = StreamValue()
            ks.put(key, stream)
        stream.groups[gname] = Group(last, entries_read)
        ks.grow(stream, CONSUMER_OVERHEAD + len(gname))
        ks.notify("xgroup-create", key)
        return SimpleString("OK")
    assert stream is not None
    if sub == b"setid":
        if len(argv) not in (5, 7):
            raise _syntax_sub(argv)
        assert group is not None
        last = stream.last_id if argv[4] == b"$" else parse_id(argv[4])
        ks.log(_setid_log(key, gname, last, entries_read))
        group.last_id, group.entries_read = last, entries_read
        ks.notify("xgroup-setid", key)
        return SimpleString("OK")
    if sub == b"destroy":
        if group is None:
            return 0
        ks.log(argv)
        del stream.groups[gname]
        ks.grow(stream, -(CONSUMER_OVERHEAD + len(gname) + NACK_OVERHEAD * len(group.pel)
                          + sum(CONSUMER_OVERHEAD + len(c) for c in group.consumers)))
        ks.notify("xgroup-destroy", key)
        ks.signal(key)  # a blocked XREADGROUP on it gets NOGROUP
        return 1
    assert group is not None
    cname = argv[4]
    if sub == b"createconsumer":
        if cname in group.consumers:
            return 0
        ks.log(argv)
        _consumer(ks, key, stream, group, cname)
        return 1
    consumer = group.consumers.get(cname)  # delconsumer
    if consumer is None:
        return 0
    ks.log(argv)
    pending = len(consumer.pel)
    for sid in list(consumer.pel):
        _drop_nack(ks, stream, group, sid)
    del group.consumers[cname]
    ks.grow(stream, -(CONSUMER_OVERHEAD + len(cname)))
    ks.notify("xgroup-delconsumer", key)
    return pending


# -- XREADGROUP --------------------------------------------------------------------------

def xreadgroup(ks: Keyspace, argv: Argv) -> Any:
    args = parse_read(argv)
    gname, cname = args.group, args.consumer
    assert gname is not None
    targets: list[tuple[bytes, StreamValue, Group, int | None]] = []
    for key, arg in zip(args.keys, args.ids, strict=True):
        stream = ks.typed(key, StreamValue)
        group = stream.groups.get(gname) if stream is not None else None
        if stream is None or group is None:
            raise _nogroup(key, gname, " in XREADGROUP with GROUP option")
        if arg == b"$":
            raise CommandError("The $ ID is meaningless in the context of XREADGROUP: you want "
                               "to read the history of this consumer by specifying a proper "
                               "ID, or use the > ID to get new messages. The $ ID would just "
                               "return an empty result set.")
        targets.append((key, stream, group, None if arg == b">" else parse_id(arg, strict=True)))
    out: list[tuple[bytes, Any]] = []
    for key, stream, group, after in targets:
        if after is None and (not len(stream) or stream.last_valid() <= group.last_id):
            continue
        out.append((key, _read_group(ks, key, stream, group, gname, cname, after, args.count,
                                     args.noack)))
    return ArrayMap(out) if out else NULL_ARRAY


def _read_group(ks: Keyspace, key: bytes, stream: StreamValue, group: Group, gname: bytes,
                cname: bytes, after: int | None, count: int, noack: bool) -> list[Any]:
    now = ks.now()
    created = cname not in group.consumers
    log: list[tuple[bytes, ...]] = []
    if created:
        log.append((b"XGROUP", b"CREATECONSUMER", key, gname, cname))
    if after is not None:  # the consumer's own history
        owned = group.consumers.get(cname)
        history = [] if owned is None else list(owned.pel.irange(after + 1, MAX_ID))
        if count:
            history = history[:count]
        found = [sid for sid in history if sid in stream.data]
        log.extend(_claim_log(key, gname, cname, sid, now, group.pel[sid].count + 1)
                   for sid in found)
        if log:
            ks.log(*log)
        _consumer(ks, key, stream, group, cname)
        reply: list[Any] = []
        for sid in history:
            if sid in stream.data:
                nack = group.pel[sid]
                nack.time, nack.count = now, nack.count + 1
                reply.append(entry_reply(sid, stream.data[sid][0]))
            else:
                reply.append([format_id(sid), NULL_ARRAY])
        return reply
    entries = stream.range(group.last_id + 1, MAX_ID, count)
    last, read = group.last_id, group.entries_read
    for sid, _ in entries:
        if read != -1 and not stream.has_tombstones(sid):
            read += 1
        elif stream.entries_added:
            read = stream.estimate_read(sid)
        last = sid
    if not noack:
        log.extend(_claim_log(key, gname, cname, sid, now, 1) for sid, _ in entries)
    log.append(_setid_log(key, gname, last, read))
    ks.log(*log)
    consumer = _consumer(ks, key, stream, group, cname)
    group.last_id, group.entries_read = last, read
    if not noack:
        for sid, _ in entries:
            _assign(ks, stream, group, consumer, sid, now, 1)
    return [entry_reply(sid, fields) for sid, fields in entries]


# -- XACK XPENDING ---------------------------------------------------------------------

def xack(ks: Keyspace, argv: Argv) -> Any:
    stream = ks.typed(argv[1], StreamValue)
    group = stream.groups.get(argv[2]) if stream is not None else None
    if stream is None or group is None:
        return 0
    ids = [parse_id(arg, strict=True) for arg in argv[3:]]
    acked = [sid for sid in dict.fromkeys(ids) if sid in group.pel]
    if acked:
        ks.log((b"XACK", argv[1], argv[2], *map(format_id, acked)))
        for sid in acked:
            _drop_nack(ks, stream, group, sid)
    return len(acked)


def xpending(ks: Keyspace, argv: Argv) -> Any:
    n = len(argv)
    if n != 3 and not 6 <= n <= 9:
        raise CommandError(SYNTAX)
    start = end = count = minidle = 0
    cname = None
    if n >= 6:
        at = 3
        if argv[3].lower() == b"idle":
            minidle = parse_int(argv[4])
            if n < 8:
                raise CommandError(SYNTAX)
            at += 2
        count = max(0, parse_int(argv[at + 2]))
        lo = parse_interval(argv[at], 0, True)
        if lo is None:
            raise CommandError("invalid start ID for the interval")
        hi = parse_interval(argv[at + 1], MAX_SEQ, False)
        if hi is None:
            raise CommandError("invalid end ID for the interval")
        start, end = lo, hi
        if at + 3 < n:
            cname = argv[at + 3]
    stream = ks.typed(argv[1], StreamValue)
    group = stream.groups.get(argv[2]) if stream is not None else None
    if group is None:
        raise _nogroup(argv[1], argv[2])
    if n == 3:
        if not group.pel:
            return [0, None, None, NULL_ARRAY]
        owners = [[name, b"%d" % len(c.pel)] for name, c in sorted(group.consumers.items())
                  if c.pel]
        return [len(group.pel), format_id(group.pel.keys()[0]),
                format_id(group.pel.keys()[-1]), owners]
    pel = group.pel
    if cname is not None:
        consumer = group.consumers.get(cname)
        if consumer is None:
            return []
        pel = consumer.pel
    now = ks.now()
    out: list[Any] = []
    if not count or start > end:
        return out
    for sid in pel.irange(start, end):
        nack = pel[sid]
        if minidle and now - nack.time < minidle:
            continue
        out.append([format_id(sid), nack.consumer.name, max(0, now - nack.time), nack.count])
        if len(out) >= count:
            break
    return out


# -- XCLAIM XAUTOCLAIM -----------------------------------------------------------------

def _claim_int(arg: bytes, what: str) -> int:
    return parse_int(arg, f"Invalid {what} argument for XCLAIM")


def xclaim(ks: Keyspace, argv: Argv) -> Any:
    key, gname, cname = argv[1], argv[2], argv[3]
    stream = ks.typed(key, StreamValue)
    group = stream.groups.get(gname) if stream is not None else None
    if stream is None or group is None:
        raise _nogroup(key, gname)
    minidle = max(0, parse_int(argv[4], "Invalid min-idle-time argument for XCLAIM"))
    ids: list[int] = []
    j = 5
    while j < len(argv):
        try:
            ids.append(parse_id(argv[j], strict=True))
        except CommandError:
            break
        j += 1
    now = ks.now()
    force = justid = False
    retry = -1
    when = -1
    lastid = 0
    while j < len(argv):
        more = len(argv) - 1 - j
        opt = argv[j].lower()
        if opt == b"force":
            force = True
        elif opt == b"justid":
            justid = True
        elif opt == b"idle" and more:
            j += 1
            when = now - _claim_int(argv[j], "IDLE option")
        elif opt == b"time" and more:
            j += 1
            when = _claim_int(argv[j], "TIME option")
        elif opt == b"retrycount" and more:
            j += 1
            retry = _claim_int(argv[j], "RETRYCOUNT option")
        elif opt == b"lastid" and more:
            j += 1
            lastid = parse_id(argv[j], strict=True)
        else:
            raise CommandError(f"Unrecognized XCLAIM option '{_s(argv[j])}'")
        j += 1
    if when == -1 or when < 0 or when > now:
        when = now
    # Work out the effects.
    log: list[tuple[bytes, ...]] = []
    gone: list[int] = []
    claims: list[tuple[int, int]] = []
    seen: set[int] = set()
    for sid in ids:
        nack = group.pel.get(sid)
        if sid not in stream.data:
            if nack is not None and sid not in seen:
                gone.append(sid)
                seen.add(sid)
            continue
        if nack is None and not force:
            continue
        if nack is not None and minidle and now - nack.time < minidle:
            continue
        base = nack.count if nack is not None else 0
        for prior, prior_count in claims:
            if prior == sid:
                base = prior_count
        count = retry if retry >= 0 else base if justid else base + 1
        claims.append((sid, count))
    if gone:
        log.append((b"XACK", key, gname, *map(format_id, gone)))
    if claims and cname not in group.consumers:
        log.append((b"XGROUP", b"CREATECONSUMER", key, gname, cname))
    log.extend(_claim_log(key, gname, cname, sid, when, count) for sid, count in claims)
    new_last = lastid if lastid > group.last_id else group.last_id
    if new_last != group.last_id:
        log.append(_setid_log(key, gname, new_last, group.entries_read))
    if log:
        ks.log(*log)
    group.last_id = new_last
    for sid in gone:
        _drop_nack(ks, stream, group, sid)
    reply: list[Any] = []
    if claims:
        consumer = _consumer(ks, key, stream, group, cname)
        for sid, count in claims:
            _assign(ks, stream, group, consumer, sid, when, count)
            reply.append(format_id(sid) if justid else entry_reply(sid, stream.data[sid][0]))
    return reply


def xautoclaim(ks: Keyspace, argv: Argv) -> Any:
    minidle = max(0, parse_int(argv[4], "Invalid min-idle-time argument for XAUTOCLAIM"))
    start = parse_interval(argv[5], 0, True)
    if start is None:
        raise CommandError("invalid start ID for the interval")
    count, justid = 100, False
    j = 6
    while j < len(argv):
        opt = argv[j].lower()
        if opt == b"count" and j + 1 < len(argv):
            count = parse_int(argv[j + 1], "COUNT must be > 0")
            if not 1 <= count <= XAUTOCLAIM_COUNT_MAX:
                raise CommandError("COUNT must be > 0")
            j += 2
        elif opt == b"justid":
            justid = True
            j += 1
        else:
            raise CommandError(SYNTAX)
    key, gname, cname = argv[1], argv[2], argv[3]
    stream = ks.typed(key, StreamValue)
    group = stream.groups.get(gname) if stream is not None else None
    if stream is None or group is None:
        raise _nogroup(key, gname)
    now = ks.now()
    attempts = count * 10
    gone: list[int] = []
    claims: list[tuple[int, int]] = []
    next_id = 0
    it = iter(group.pel.irange(start, MAX_ID))
    for sid in it:
        if not attempts or not count:
            next_id = sid
            break
        attempts -= 1
        nack = group.pel[sid]
        if sid not in stream.data:
            gone.append(sid)
            count -= 1
            continue
        if minidle and now - nack.time < minidle:
            continue
        claims.append((sid, nack.count if justid else nack.count + 1))
        count -= 1
    log: list[tuple[bytes, ...]] = []
    if gone:
        log.append((b"XACK", key, gname, *map(format_id, gone)))
    if claims and cname not in group.consumers:
        log.append((b"XGROUP", b"CREATECONSUMER", key, gname, cname))
    log.extend(_claim_log(key, gname, cname, sid, now, c) for sid, c in claims)
    if log:
        ks.log(*log)
    for sid in gone:
        _drop_nack(ks, stream, group, sid)
    reply: list[Any] = []
    if claims:
        consumer = _consumer(ks, key, stream, group, cname)
        for sid, c in claims:
            _assign(ks, stream, group, consumer, sid, now, c)
            reply.append(format_id(sid) if justid else entry_reply(sid, stream.data[sid][0]))
    return [format_id(next_id), reply, [format_id(sid) for sid in gone]]


# -- XINFO -----------------------------------------------------------------------------

_XINFO_HELP: Final = (
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
)


def xinfo(ks: Keyspace, argv: Argv) -> Any:
    sub = _subcommand(argv, _XINFO_ARITY)
    if sub == b"help":
        return _help("XINFO", _XINFO_HELP)
    key = argv[2]
    stream = ks.typed(key, StreamValue)
    if stream is None:
        raise CommandError("no such key")
    if sub == b"consumers":
        group = stream.groups.get(argv[3])
        if group is None:
            raise CommandError(f"NOGROUP No such consumer group '{_s(argv[3])}' for key name "
                               f"'{_s(key)}'")
        now = ks.now()
        return [Map([(b"name", name), (b"pending", len(c.pel)),
                     (b"idle", max(0, now - c.seen))])
                for name, c in sorted(group.consumers.items())]
    if sub == b"groups":
        return [Map([(b"name", name), (b"consumers", len(g.consumers)),
                     (b"pending", len(g.pel)), (b"last-delivered-id", format_id(g.last_id)),
                     (b"entries-read", None if g.entries_read == -1 else g.entries_read),
                     (b"lag", stream.lag(g))])
                for name, g in sorted(stream.groups.items())]
    return _xinfo_stream(argv, stream)


def _xinfo_stream(argv: Argv, stream: StreamValue) -> Any:
    opts = argv[3:]
    full = bool(opts)
    count = 10
    if opts:
        if len(opts) not in (1, 3) or opts[0].lower() != b"full":
            raise _syntax_sub(argv)
        if len(opts) == 3:
            if opts[1].lower() != b"count":
                raise _syntax_sub(argv)
            count = parse_int(opts[2])
            if count < 0:
                count = 10
    head: list[tuple[bytes, Any]] = [
        (b"length", len(stream)), (b"radix-tree-keys", len(stream.nodes)),
        # Redis's radix tree inner nodes have no counterpart here: one per key.
        (b"radix-tree-nodes", len(stream.nodes) + 1),
        (b"last-generated-id", format_id(stream.last_id)),
        (b"max-deleted-entry-id", format_id(stream.max_deleted)),
        (b"entries-added", stream.entries_added),
        (b"recorded-first-entry-id", format_id(stream.first_id)),
    ]
    if not full:
        first = stream.range(0, MAX_ID, 1)
        last = stream.range(0, MAX_ID, 1, rev=True)
        return Map([*head, (b"groups", len(stream.groups)),
                    (b"first-entry", entry_reply(*first[0]) if first else None),
                    (b"last-entry", entry_reply(*last[0]) if last else None)])
    entries = [entry_reply(sid, fields) for sid, fields in stream.range(0, MAX_ID, count)]
    groups: list[Any] = []
    for name, g in sorted(stream.groups.items()):
        pel = [[format_id(sid), n.consumer.name, n.time, n.count]
               for sid, n in _first(g.pel, count)]
        consumers = [Map([(b"name", cname), (b"seen-time", c.seen), (b"pel-count", len(c.pel)),
                          (b"pending", [[format_id(sid), n.time, n.count]
                                        for sid, n in _first(c.pel, count)])])
                     for cname, c in sorted(g.consumers.items())]
        groups.append(Map([(b"name", name), (b"last-delivered-id", format_id(g.last_id)),
                           (b"entries-read", None if g.entries_read == -1 else g.entries_read),
                           (b"lag", stream.lag(g)), (b"pel-count", len(g.pel)),
                           (b"pending", pel), (b"consumers", consumers)]))
    return Map([*head, (b"entries", entries), (b"groups", groups)])


def _first(pel: Any, count: int) -> list[tuple[int, Nack]]:
    keys = pel.keys()
    chosen = keys[:count] if count else keys
    return [(sid, pel[sid]) for sid in chosen]


COMMANDS = {
    b"xgroup": xgroup, b"xreadgroup": xreadgroup, b"xack": xack, b"xpending": xpending,
    b"xclaim": xclaim, b"xautoclaim": xautoclaim, b"xinfo": xinfo,
}
