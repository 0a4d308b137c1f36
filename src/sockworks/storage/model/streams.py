"""Stream commands: XADD XLEN XRANGE XREVRANGE XDEL XTRIM XSETID XREAD
(its non-blocking part; BLOCK is the RESP port's: resp_stream_block.py),
on :class:`StreamValue`, with Redis 7.0's argument order and error texts
(t_stream.c).

Effects are logged, not arguments: an XADD logs the ID it made (so ``*``
replays to the same ID) and any trim as ``XTRIM key MAXLEN = <length
left>`` (every trim removes the oldest entries, so that is exact however
the trim was asked for, ``~`` and LIMIT included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from sockworks.protocols.resp import NULL_ARRAY, ArrayMap, SimpleString
from sockworks.storage.model.common import SYNTAX, CommandError, parse_int, wrong_args
from sockworks.storage.model.keyspace import Keyspace
from sockworks.storage.model.streamvalue import (
    MAX_ID,
    MAX_SEQ,
    StreamValue,
    format_id,
    parse_add_id,
    parse_id,
)

__all__ = ["COMMANDS", "entry_reply", "parse_interval", "parse_read", "ReadArgs"]

Argv = Sequence[bytes]

#: Redis's default LIMIT of a ``~`` trim: 100 nodes' worth, within these bounds.
_APPROX_LIMIT_FLOOR: Final = 10_000
_APPROX_LIMIT_CAP: Final = 1_000_000


def entry_reply(sid: int, fields: tuple[bytes, ...]) -> list[Any]:
    return [format_id(sid), list(fields)]


class TrimArgs:
    __slots__ = ("approx", "id", "id_given", "idpos", "limit", "maxlen", "minid",
                 "nomkstream", "seq_given", "strategy")

    def __init__(self) -> None:
        self.strategy = ""            # "", "maxlen" or "minid"
        self.approx = False
        self.maxlen = 0
        self.minid = 0
        self.limit = 0
        self.nomkstream = False
        self.id = 0
        self.id_given = False
        self.seq_given = True
        self.idpos = 0


def parse_trim(argv: Argv, xadd: bool, node_max_entries: int) -> TrimArgs:
    """streamParseAddOrTrimArgsOrReply: XADD's options and ID, XTRIM's options."""
    args = TrimArgs()
    limit_given = False
    i = 2
    n = len(argv)
    while i < n:
        more = n - 1 - i
        opt = argv[i].lower()
        if xadd and argv[i] == b"*":
            break
        if opt in (b"maxlen", b"minid") and more:
            if args.strategy:
                raise CommandError("syntax error, MAXLEN and MINID options at the same time "
                                   "are not compatible")
            args.approx = False
            nxt = argv[i + 1]
            if more >= 2 and nxt in (b"~", b"="):
                args.approx = nxt == b"~"
                i += 1
            if opt == b"maxlen":
                args.maxlen = parse_int(argv[i + 1])
                if args.maxlen < 0:
                    raise CommandError("The MAXLEN argument must be >= 0.")
            else:
                args.minid = parse_id(argv[i + 1], strict=True)
            i += 1
            args.strategy = opt.decode()
        elif opt == b"limit" and more:
            args.limit = parse_int(argv[i + 1])
            if args.limit < 0:
                raise CommandError("The LIMIT argument must be >= 0.")
            limit_given = True
            i += 1
        elif xadd and opt == b"nomkstream":
            args.nomkstream = True
        elif xadd:
            args.id, args.seq_given = parse_add_id(argv[i])
            args.id_given = True
            break
        else:
            raise CommandError(SYNTAX)
        i += 1
    if args.limit and not args.strategy:
        raise CommandError("syntax error, LIMIT cannot be used without specifying a trimming "
                           "strategy")
    if not xadd and not args.strategy:
        raise CommandError("syntax error, XTRIM must be called with a trimming strategy")
    if limit_given:
        if not args.approx:
            raise CommandError("syntax error, LIMIT cannot be used without the special ~ option")
    elif args.approx:
        limit = 100 * node_max_entries
        args.limit = (_APPROX_LIMIT_FLOOR if limit <= 0
                      else min(limit, _APPROX_LIMIT_CAP))
    else:
        args.limit = 0
    args.idpos = i
    return args


def _trim_count(stream: StreamValue, args: TrimArgs) -> int:
    if not args.strategy:
        return 0
    return stream.trim_count(args.maxlen if args.strategy == "maxlen" else None,
                             args.minid, args.approx, args.limit)


def _trim_log(key: bytes, stream: StreamValue, count: int) -> tuple[bytes, ...]:
    return (b"XTRIM", key, b"MAXLEN", b"=", b"%d" % (len(stream) - count))


def _new_id(ks: Keyspace, stream: StreamValue, args: TrimArgs) -> int:
    last = stream.last_id
    if not args.id_given:
        ms = ks.now()
        sid = ms << 64 if ms > last >> 64 else last + 1
    elif args.seq_given:
        sid = args.id
    elif last >> 64 == args.id >> 64:
        if last & MAX_SEQ == MAX_SEQ:
            # Redis's streamAppendItem fails here without setting errno,
            # so xaddCommand reports its other error (7.0.15's reply).
            raise CommandError("Elements are too large to be stored")
        sid = last + 1
    else:
        sid = args.id
    if sid <= last:
        raise CommandError("The ID specified in XADD is equal or smaller than the target "
                           "stream top item")
    return sid


def xadd(ks: Keyspace, argv: Argv) -> Any:
    enc = ks.encodings
    args = parse_trim(argv, True, enc.stream_node_max_entries)
    fields = tuple(argv[args.idpos + 1:])
    if len(fields) < 2 or len(fields) % 2:
        raise wrong_args("xadd")
    if args.id_given and args.seq_given and args.id == 0:
        raise CommandError("The ID specified in XADD must be greater than 0-0")
    key = argv[1]
    stream = ks.typed(key, StreamValue)
    if stream is None:
        if args.nomkstream:
            return None
        fresh = StreamValue()
    else:
        fresh = stream
    if fresh.last_id == MAX_ID:
        raise CommandError("The stream has exhausted the last possible ID, unable to add more "
                           "items")
    sid = _new_id(ks, fresh, args)
    if sum(map(len, fields)) > 1 << 30:
        raise CommandError("Elements are too large to be stored")
    # Append, then see what the trim takes; undone if the log write fails.
    if stream is None:
        ks.put(key, fresh)
    saved = (fresh.last_id, fresh.first_id, fresh.entries_added, fresh.max_deleted)
    grown = fresh.append(sid, fields, enc.stream_node_max_bytes, enc.stream_node_max_entries)
    trimmed = _trim_count(fresh, args)
    commands: list[tuple[bytes, ...]] = [(b"XADD", key, format_id(sid), *fields)]
    if trimmed:
        commands.append(_trim_log(key, fresh, trimmed))
    try:
        ks.log(*commands)
    except BaseException:
        fresh.delete(sid)
        fresh.last_id, fresh.first_id, fresh.entries_added, fresh.max_deleted = saved
        if stream is None:
            ks.drop(key)
        raise
    ks.grow(fresh, grown)
    ks.notify("xadd", key)
    if trimmed:
        ks.grow(fresh, fresh.pop_head(trimmed))
        ks.notify("xtrim", key)
    ks.signal(key)
    return format_id(sid)


def xlen(ks: Keyspace, argv: Argv) -> Any:
    stream = ks.typed(argv[1], StreamValue)
    return 0 if stream is None else len(stream)


def parse_interval(arg: bytes, missing_seq: int, start: bool) -> int | None:
    """A range bound with the ``(`` exclusive form; None: Redis's "invalid
    start/end ID for the interval" (no successor / predecessor)."""
    if len(arg) > 1 and arg[:1] == b"(":
        sid = parse_id(arg[1:], missing_seq, strict=True)
        if start:
            return None if sid == MAX_ID else sid + 1
        return None if sid == 0 else sid - 1
    return parse_id(arg, missing_seq)


def xrange(ks: Keyspace, argv: Argv) -> Any:
    rev = argv[0].lower() == b"xrevrange"
    start_arg, end_arg = (argv[3], argv[2]) if rev else (argv[2], argv[3])
    start = parse_interval(start_arg, 0, True)
    if start is None:
        raise CommandError("invalid start ID for the interval")
    end = parse_interval(end_arg, MAX_SEQ, False)
    if end is None:
        raise CommandError("invalid end ID for the interval")
    count = -1
    j = 4
    while j < len(argv):
        if argv[j].lower() == b"count" and j + 1 < len(argv):
            count = max(0, parse_int(argv[j + 1]))
            j += 2
        else:
            raise CommandError(SYNTAX)
    stream = ks.typed(argv[1], StreamValue)
    if stream is None:
        return []
    if count == 0:
        return NULL_ARRAY
    return [entry_reply(sid, fields)
            for sid, fields in stream.range(start, end, max(count, 0), rev)]


def xdel(ks: Keyspace, argv: Argv) -> Any:
    stream = ks.typed(argv[1], StreamValue)
    if stream is None:
        return 0
    ids = [parse_id(arg, strict=True) for arg in argv[2:]]
    present = list(dict.fromkeys(sid for sid in ids if sid in stream.data))
    if not present:
        return 0
    ks.log((b"XDEL", argv[1], *map(format_id, present)))
    for sid in present:
        ks.grow(stream, stream.delete(sid))
    stream.fix_first()
    ks.notify("xdel", argv[1])
    return len(present)


def xtrim(ks: Keyspace, argv: Argv) -> Any:
    args = parse_trim(argv, False, ks.encodings.stream_node_max_entries)
    stream = ks.typed(argv[1], StreamValue)
    if stream is None:
        return 0
    trimmed = _trim_count(stream, args)
    if trimmed:
        ks.log(_trim_log(argv[1], stream, trimmed))
        ks.grow(stream, stream.pop_head(trimmed))
        ks.notify("xtrim", argv[1])
    return trimmed


def xsetid(ks: Keyspace, argv: Argv) -> Any:
    sid = parse_id(argv[2], strict=True)
    entries_added = -1
    max_deleted = 0
    i = 3
    while i < len(argv):
        opt = argv[i].lower()
        more = len(argv) - 1 - i
        if opt == b"entriesadded" and more:
            entries_added = parse_int(argv[i + 1])
            if entries_added < 0:
                raise CommandError("entries_added must be positive")
        elif opt == b"maxdeletedid" and more:
            max_deleted = parse_id(argv[i + 1], strict=True)
            if sid < max_deleted:
                raise CommandError("The ID specified in XSETID is smaller than the provided "
                                   "max_deleted_entry_id")
        else:
            raise CommandError(SYNTAX)
        i += 2
    stream = ks.typed(argv[1], StreamValue)
    if stream is None:
        raise CommandError("no such key")
    if len(stream):
        if sid < stream.last_valid():
            raise CommandError("The ID specified in XSETID is smaller than the target stream "
                               "top item")
        if entries_added != -1 and len(stream) > entries_added:
            raise CommandError("The entries_added specified in XSETID is smaller than the "
                               "target stream length")
    ks.log(argv)
    stream.last_id = sid
    if entries_added != -1:
        stream.entries_added = entries_added
    if max_deleted:
        stream.max_deleted = max_deleted
    ks.notify("xsetid", argv[1])
    return SimpleString("OK")


def xstate(ks: Keyspace, argv: Argv) -> Any:
    """``XSTATE key last-id entries-added max-deleted-id``: only the log
    writes it (a stream's counters, which no client command sets all of;
    the key is created empty if missing, as an empty stream can be)."""
    stream = ks.typed(argv[1], StreamValue)
    if stream is None:
        stream = StreamValue()
        ks.put(argv[1], stream)
    stream.last_id = parse_id(argv[2])
    stream.entries_added = parse_int(argv[3])
    stream.max_deleted = parse_id(argv[4])
    stream.fix_first()
    return SimpleString("OK")


# -- XREAD / XREADGROUP's arguments ------------------------------------------------

class ReadArgs:
    """XREAD/XREADGROUP parsed: keys and their ID arguments (``$``, ``>``
    or an ID), COUNT (0: none), BLOCK ms (-1: none), GROUP, NOACK."""

    __slots__ = ("block", "consumer", "count", "group", "ids", "keys", "noack")

    def __init__(self) -> None:
        self.block = -1
        self.count = 0
        self.group: bytes | None = None
        self.consumer = b""
        self.noack = False
        self.keys: list[bytes] = []
        self.ids: list[bytes] = []


def parse_read(argv: Argv, parse_block: Any = None) -> ReadArgs:
    """Redis's xreadCommand option loop (BLOCK's value is checked by
    ``parse_block``, the RESP port's timeout parser, when given)."""
    group_cmd = len(argv[0]) == 10
    args = ReadArgs()
    streams_at = 0
    i = 1
    n = len(argv)
    while i < n:
        more = n - i - 1
        opt = argv[i].lower()
        if opt == b"block" and more:
            i += 1
            args.block = parse_block(argv[i]) if parse_block is not None else 0
        elif opt == b"count" and more:
            i += 1
            args.count = max(0, parse_int(argv[i]))
        elif opt == b"streams" and more:
            streams_at = i + 1
            if (n - streams_at) % 2:
                raise CommandError("Unbalanced XREAD list of streams: for each stream key an "
                                   "ID or '$' must be specified.")
            break
        elif opt == b"group" and more >= 2:
            if not group_cmd:
                raise CommandError("The GROUP option is only supported by XREADGROUP. You "
                                   "called XREAD instead.")
            args.group, args.consumer = argv[i + 1], argv[i + 2]
            i += 2
        elif opt == b"noack":
            if not group_cmd:
                raise CommandError("The NOACK option is only supported by XREADGROUP. You "
                                   "called XREAD instead.")
            args.noack = True
        else:
            raise CommandError(SYNTAX)
        i += 1
    if not streams_at:
        raise CommandError(SYNTAX)
    if group_cmd and args.group is None:
        raise CommandError("Missing GROUP option for XREADGROUP")
    half = (n - streams_at) // 2
    args.keys = list(argv[streams_at:streams_at + half])
    args.ids = list(argv[streams_at + half:])
    return args


def xread(ks: Keyspace, argv: Argv) -> Any:
    """XREAD without waiting (BLOCK's timeout is the RESP port's business)."""
    args = parse_read(argv)
    starts: list[int] = []
    streams: list[StreamValue | None] = []
    for key, arg in zip(args.keys, args.ids, strict=True):
        stream = ks.typed(key, StreamValue)
        streams.append(stream)
        if arg == b"$":
            starts.append(stream.last_id if stream is not None else 0)
        elif arg == b">":
            raise CommandError("The > ID can be specified only when calling XREADGROUP using "
                               "the GROUP <group> <consumer> option.")
        else:
            starts.append(parse_id(arg, strict=True))
    out: list[tuple[bytes, list[Any]]] = []
    for key, stream, after in zip(args.keys, streams, starts, strict=True):
        if stream is None or not len(stream) or stream.last_valid() <= after:
            continue
        entries = stream.range(after + 1, MAX_ID, args.count)
        out.append((key, [entry_reply(sid, fields) for sid, fields in entries]))
    return ArrayMap(out) if out else NULL_ARRAY


COMMANDS = {
    b"xadd": xadd, b"xlen": xlen, b"xrange": xrange, b"xrevrange": xrange, b"xdel": xdel,
    b"xtrim": xtrim, b"xsetid": xsetid, b"xread": xread,
}
