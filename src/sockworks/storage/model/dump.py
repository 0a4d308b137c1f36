"""DUMP and RESTORE: values to and from Redis 7.0's serialization (cluster.c, rdb.c).

:func:`serialize` writes a value as redis-server 7.0 restores it, in the
plain encodings every Redis reads: STRING (stored as is), LIST_QUICKLIST_2
(listpack nodes of at most ``_LIST_NODE_BYTES``), SET, ZSET_2 (binary
doubles), HASH, and STREAM_LISTPACKS_2 (nodes of ``stream-node-max-entries``
entries, each with its master entry, as t_stream.c lays them out).

:func:`deserialize` reads every encoding redis-server 7.0 writes for DUMP
(STRING with its integer and LZF encodings, LIST_QUICKLIST_2 with packed
and plain nodes, SET and SET_INTSET, ZSET_2 and ZSET_LISTPACK, HASH and
HASH_LISTPACK, STREAM_LISTPACKS_2 with groups, PELs and consumers) and the
older ones Redis 7.0 still loads (LIST, ZSET with text scores,
LIST_ZIPLIST, LIST_QUICKLIST, ZSET_ZIPLIST, HASH_ZIPLIST, STREAM_LISTPACKS);
not the Redis 2.x ZIPMAP, nor module values. A payload is hostile until
proven otherwise: every count is checked against the bytes left before
anything is read (protocols/rdb.py), nested containers are validated as
Redis's ``sanitize-dump-payload yes`` does, and beyond that what this
store's structures need (stream entries in ID order, a stream's length
matching its entries). Anything wrong is Redis's "Bad data format", and
the keyspace is not touched.

RESTORE's payload is checked (CRC64) and decoded by :func:`prepare_restore`
before the store takes its lock (memory.py's ``execute_command`` runs
``PREPARE``): only the checks Redis makes before the payload's (OOM, syntax,
BUSYKEY, TTL) and the write itself run under the lock, so a big or bad
payload stalls no other client. A value decoded with encoding thresholds
that CONFIG SET changed meanwhile is decoded again under the lock.

RESTORE logs what Redis propagates: ``DEL key`` then the RESTORE with its
expiry made absolute (``ABSTTL``), so a replay decodes the same bytes to the
same value at any later time (a compaction then writes the key in its
shortest form, as any other).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import struct
from collections.abc import Callable, Sequence
from typing import Any, Final

from sockworks.protocols import rdb
from sockworks.protocols.resp import SimpleString
from sockworks.storage.model.bitmaps import MAX_BITS
from sockworks.storage.model.common import SYNTAX, CommandError, parse_double, parse_int
from sockworks.storage.model.keyspace import Keyspace
from sockworks.storage.model.streamvalue import (
    CONSUMER_OVERHEAD,
    MAX_SEQ,
    NACK_OVERHEAD,
    Consumer,
    Group,
    Nack,
    StreamValue,
)
from sockworks.storage.model.values import (
    HASH_FIELD_OVERHEAD,
    LIST_ELEMENT_OVERHEAD,
    SET_MEMBER_OVERHEAD,
    Encodings,
    HashValue,
    ListValue,
    SetValue,
    Value,
    ZSetValue,
    is_int_string,
)

__all__ = ["BAD_FORMAT", "BAD_PAYLOAD", "COMMANDS", "MAX_DECODED", "PREPARE", "Decoded", "decode",
           "deserialize", "over_budget", "prepare_restore", "serialize"]

Argv = Sequence[bytes]

#: Redis's errors (cluster.c restoreCommand).
BAD_PAYLOAD: Final = "DUMP payload version or checksum are wrong"
BAD_FORMAT: Final = "Bad data format"
BUSYKEY: Final = "BUSYKEY Target key name already exists."
#: What LZF decompression may produce in one payload: Redis's largest
#: proto-max-bulk-len (512 MiB), the bound of SETBIT's MAX_BITS. The RESP
#: port checks a payload against its own, lower, --max-bulk first.
MAX_DECODED: Final = MAX_BITS // 8
#: A quicklist node's listpack size (list-max-listpack-size -2: 8 KiB).
_LIST_NODE_BYTES: Final = 8192
_U64: Final = (1 << 64) - 1

# rdb.h's object types.
STRING, LIST, SET, ZSET, HASH, ZSET_2 = 0, 1, 2, 3, 4, 5
LIST_ZIPLIST, SET_INTSET, ZSET_ZIPLIST, HASH_ZIPLIST, LIST_QUICKLIST = 10, 11, 12, 13, 14
STREAM, HASH_LISTPACK, ZSET_LISTPACK, LIST_QUICKLIST_2, STREAM_2 = 15, 16, 17, 18, 19
_PLAIN, _PACKED = 1, 2  # quicklist node containers
_DELETED, _SAMEFIELDS = 1, 2  # stream entry flags


# -- writing ------------------------------------------------------------------------------

def serialize(value: Value, enc: Encodings) -> bytes:
    """DUMP's payload of ``value``."""
    L, S = rdb.length, rdb.string
    if type(value) is bytes:
        body = bytes((STRING,)) + S(value)
    elif isinstance(value, ListValue):
        nodes: list[bytes] = []
        chunk: list[bytes] = []
        size = 0
        for item in value:
            if chunk and size + len(item) + 11 > _LIST_NODE_BYTES:
                nodes.append(rdb.listpack(chunk))
                chunk, size = [], 0
            chunk.append(item)
            size += len(item) + 11
        if chunk:
            nodes.append(rdb.listpack(chunk))
        body = b"".join((bytes((LIST_QUICKLIST_2,)), L(len(nodes)),
                         *(L(_PACKED) + S(node) for node in nodes)))
    elif isinstance(value, SetValue):
        body = b"".join((bytes((SET,)), L(len(value)), *map(S, value)))
    elif isinstance(value, ZSetValue):
        body = b"".join((bytes((ZSET_2,)), L(len(value)),
                         *(S(m) + struct.pack("<d", score) for score, m in value.order)))
    elif isinstance(value, HashValue):
        body = b"".join((bytes((HASH,)), L(len(value)),
                         *(S(f) + S(v) for f, v in value.items())))
    else:
        assert isinstance(value, StreamValue)
        body = _serialize_stream(value, enc)
    return rdb.seal(body)


def _serialize_stream(stream: StreamValue, enc: Encodings) -> bytes:
    L, S = rdb.length, rdb.string
    per_node = enc.stream_node_max_entries if enc.stream_node_max_entries > 0 else 100
    ids = list(stream.ids)
    parts = [bytes((STREAM_2,)), L((len(ids) + per_node - 1) // per_node)]
    for start in range(0, len(ids), per_node):
        chunk = ids[start:start + per_node]
        master = chunk[0]
        names = stream.data[master][0][0::2]
        items: list[bytes | int] = [len(chunk), 0, len(names), *names, 0]
        for sid in chunk:
            fields = stream.data[sid][0]
            ms_diff = _signed(((sid >> 64) - (master >> 64)) & _U64)
            seq_diff = _signed(((sid & MAX_SEQ) - (master & MAX_SEQ)) & _U64)
            if fields[0::2] == names:
                items += [_SAMEFIELDS, ms_diff, seq_diff, *fields[1::2], len(names) + 3]
            else:
                n = len(fields) // 2
                items += [0, ms_diff, seq_diff, n, *fields, 2 * n + 4]
        parts.append(S(master.to_bytes(16, "big")) + S(rdb.listpack(items)))
    parts.append(L(len(ids)))
    for sid in (stream.last_id, stream.first_id, stream.max_deleted):
        parts.append(L(sid >> 64) + L(sid & MAX_SEQ))
    parts.append(L(stream.entries_added))
    parts.append(L(len(stream.groups)))
    for name, group in stream.groups.items():
        parts.append(S(name) + L(group.last_id >> 64) + L(group.last_id & MAX_SEQ)
                     + L(group.entries_read & _U64))
        parts.append(L(len(group.pel)))
        parts.extend(sid.to_bytes(16, "big") + struct.pack("<q", nack.time) + L(nack.count)
                     for sid, nack in group.pel.items())
        parts.append(L(len(group.consumers)))
        for cname, consumer in group.consumers.items():
            parts.append(S(cname) + struct.pack("<q", consumer.seen) + L(len(consumer.pel)))
            parts.extend(sid.to_bytes(16, "big") for sid in consumer.pel)
    return b"".join(parts)


def _signed(n: int) -> int:
    return n - (1 << 64) if n >= 1 << 63 else n


# -- reading ------------------------------------------------------------------------------

def deserialize(body: bytes, enc: Encodings, budget: int = MAX_DECODED) -> Value:
    """The value in a payload's ``body`` (its footer already checked);
    RdbError for anything malformed. Bytes after the object are ignored,
    as Redis ignores them."""
    r = rdb.Reader(body, budget)
    kind = r.byte()
    loader = _LOADERS.get(kind)
    if loader is None:
        raise rdb.RdbError(f"object type {kind} cannot be restored")
    return loader(r, kind, enc)


def _text(item: bytes | int) -> bytes:
    return b"%d" % item if isinstance(item, int) else item


def _load_string(r: rdb.Reader, kind: int, enc: Encodings) -> Value:
    return r.string()


def _list_of(items: list[bytes]) -> ListValue:
    if not items:
        raise rdb.RdbError("empty list")
    lst = ListValue()
    lst.extend(items)
    lst.nbytes = sum(map(len, items)) + LIST_ELEMENT_OVERHEAD * len(items)
    return lst


def _load_list(r: rdb.Reader, kind: int, enc: Encodings) -> Value:
    if kind == LIST:
        return _list_of([r.string() for _ in range(r.count(1))])
    if kind == LIST_ZIPLIST:
        return _list_of(rdb.read_ziplist(r.string()))
    items: list[bytes] = []
    for _ in range(r.count(2 if kind == LIST_QUICKLIST_2 else 1)):
        container = r.length() if kind == LIST_QUICKLIST_2 else _PACKED
        if container not in (_PLAIN, _PACKED):
            raise rdb.RdbError("Quicklist integrity check failed.")
        data = r.string()
        if not data:
            raise rdb.RdbError("empty quicklist node")
        if container == _PLAIN:
            items.append(data)
        elif kind == LIST_QUICKLIST_2:
            # Inline, not _text per item: this is RESTORE's per-element loop.
            node = rdb.read_listpack(data)
            items.extend([x if isinstance(x, bytes) else b"%d" % x for x in node])
        else:
            items.extend(rdb.read_ziplist(data))
    return _list_of(items)


def _set_of(members: list[bytes], enc: Encodings) -> SetValue:
    s = SetValue()
    s.update(members)
    if len(s) != len(members):
        raise rdb.RdbError("Duplicate set members detected")
    if not s:
        raise rdb.RdbError("empty set")
    s.nbytes = sum(map(len, members)) + SET_MEMBER_OVERHEAD * len(members)
    s.big = len(s) > enc.set_max_intset_entries or not all(map(is_int_string, members))
    return s


def _load_set(r: rdb.Reader, kind: int, enc: Encodings) -> Value:
    if kind == SET_INTSET:
        return _set_of([b"%d" % n for n in rdb.read_intset(r.string())], enc)
    return _set_of([r.string() for _ in range(r.count(1))], enc)


def _pairs(items: Sequence[bytes | int]) -> list[tuple[bytes, bytes]]:
    if len(items) % 2:
        raise rdb.RdbError("odd number of items in a pairs container")
    texts = list(map(_text, items))
    return list(zip(texts[0::2], texts[1::2]))


def _zset_of(pairs: list[tuple[bytes, float]], enc: Encodings) -> ZSetValue:
    z = ZSetValue()
    grown = 0
    for member, score in pairs:
        if math.isnan(score):
            raise rdb.RdbError("Zset with NAN score detected")
        if member in z.scores:
            raise rdb.RdbError("Duplicate zset fields detected")
        grown += z.add(member, score, enc)
    if not z.scores:
        raise rdb.RdbError("empty sorted set")
    z.nbytes = grown
    return z


def _score(text: bytes) -> float:
    try:
        return parse_double(text)
    except CommandError:
        raise rdb.RdbError("bad score") from None


def _load_zset(r: rdb.Reader, kind: int, enc: Encodings) -> Value:
    if kind in (ZSET_ZIPLIST, ZSET_LISTPACK):
        data = r.string()
        items = rdb.read_ziplist(data) if kind == ZSET_ZIPLIST else rdb.read_listpack(data)
        return _zset_of([(m, _score(s)) for m, s in _pairs(items)], enc)
    read_score = r.binary_double if kind == ZSET_2 else r.text_double
    pairs = []
    for _ in range(r.count(2)):
        member = r.string()
        pairs.append((member, read_score()))
    return _zset_of(pairs, enc)


def _load_hash(r: rdb.Reader, kind: int, enc: Encodings) -> Value:
    if kind == HASH:
        pairs = [(r.string(), r.string()) for _ in range(r.count(2))]
    else:
        data = r.string()
        pairs = _pairs(rdb.read_ziplist(data) if kind == HASH_ZIPLIST
                       else rdb.read_listpack(data))
    h = HashValue()
    h.update(pairs)
    if len(h) != len(pairs):
        raise rdb.RdbError("Duplicate hash fields detected")
    if not h:
        raise rdb.RdbError("empty hash")
    limit = enc.hash_max_listpack_value
    h.nbytes = sum(len(f) + len(v) + HASH_FIELD_OVERHEAD for f, v in pairs)
    h.big = (len(h) > enc.hash_max_listpack_entries
             or any(len(f) > limit or len(v) > limit for f, v in pairs))
    return h


def _int(items: list[bytes | int], i: int) -> int:
    if i >= len(items) or not isinstance(items[i], int):
        raise rdb.RdbError("Stream listpack integrity check failed.")
    return items[i]  # type: ignore[return-value]  # checked just above


def _node_entries(master: int, items: list[bytes | int]) -> list[tuple[int, tuple[bytes, ...]]]:
    """The live entries of one stream listpack (t_stream.c's layout, checked
    as streamValidateListpackIntegrity does with deep sanitization)."""
    if not items:
        raise rdb.RdbError("Empty listpack inside stream")
    count, deleted, nfields = _int(items, 0), _int(items, 1), _int(items, 2)
    if count < 0 or deleted < 0 or nfields < 0 or 3 + nfields >= len(items):
        raise rdb.RdbError("Stream listpack integrity check failed.")
    names = tuple(map(_text, items[3:3 + nfields]))
    pos = 3 + nfields
    if _int(items, pos) != 0:
        raise rdb.RdbError("Stream listpack integrity check failed.")
    pos += 1
    out = []
    if count + deleted > len(items):
        raise rdb.RdbError("Stream listpack integrity check failed.")
    for _ in range(count + deleted):
        flags, ms_diff, seq_diff = _int(items, pos), _int(items, pos + 1), _int(items, pos + 2)
        pos += 3
        if flags & _SAMEFIELDS:
            n, extra = nfields, 3
            if pos + n > len(items):
                raise rdb.RdbError("Stream listpack integrity check failed.")
            values = list(map(_text, items[pos:pos + n]))
            fields = tuple(x for pair in zip(names, values) for x in pair)
            pos += n
        else:
            n = _int(items, pos)
            pos += 1
            extra = n + 4
            if n < 0 or pos + 2 * n > len(items):
                raise rdb.RdbError("Stream listpack integrity check failed.")
            fields = tuple(map(_text, items[pos:pos + 2 * n]))
            pos += 2 * n
        if _int(items, pos) != n + extra:
            raise rdb.RdbError("Stream listpack integrity check failed.")
        pos += 1
        if not flags & _DELETED:
            ms = ((master >> 64) + ms_diff) & _U64
            seq = ((master & MAX_SEQ) + seq_diff) & _U64
            out.append((ms << 64 | seq, fields))
    if pos != len(items) or len(out) != count:
        raise rdb.RdbError("Stream listpack integrity check failed.")
    return out


def _stream_id(r: rdb.Reader) -> int:
    ms = r.length()
    seq = r.length()
    return ms << 64 | seq


def _load_stream(r: rdb.Reader, kind: int, enc: Encodings) -> Value:
    stream = StreamValue()
    grown = 0
    last = -1
    for _ in range(r.count(2)):
        key = r.string()
        if len(key) != 16:
            raise rdb.RdbError("Stream node key entry is not the size of a stream ID")
        for sid, fields in _node_entries(int.from_bytes(key, "big"),
                                         rdb.read_listpack(r.string())):
            if sid <= last:
                raise rdb.RdbError("stream entries out of order")
            if not fields:
                raise rdb.RdbError("stream entry without fields")
            last = sid
            # Nodes as this store makes them (what MAXLEN ~ trims by).
            grown += stream.append(sid, fields, enc.stream_node_max_bytes,
                                   enc.stream_node_max_entries)
    length = r.length()
    last_id = _stream_id(r)
    if length != len(stream) or last_id < last:
        raise rdb.RdbError("Stream length inconsistent with its entries")
    stream.last_id = last_id
    if kind == STREAM_2:
        _stream_id(r)  # the first ID: computed from the entries instead
        stream.max_deleted = _stream_id(r)
        stream.entries_added = r.length()
        if stream.entries_added < length:
            raise rdb.RdbError("stream entries_added below its length")
    else:
        stream.entries_added = length
    stream.fix_first()
    for _ in range(r.count(3)):
        name = r.string()
        if name in stream.groups:
            raise rdb.RdbError("Duplicated consumer group name")
        group_id = _stream_id(r)
        if kind == STREAM_2:
            read = r.length()
            entries_read = -1 if read == _U64 else read
        else:
            entries_read = stream.estimate_read(group_id)
        group = stream.groups[name] = Group(group_id, entries_read)
        grown += CONSUMER_OVERHEAD + len(name)
        for _ in range(r.count(16 + 8 + 1)):
            sid = int.from_bytes(r.take(16), "big")
            time = r.millis()
            count = r.length()
            if sid in group.pel:
                raise rdb.RdbError("Duplicated global PEL entry loading stream consumer group")
            group.pel[sid] = Nack(None, time, count)  # type: ignore[arg-type]  # owner next
            grown += NACK_OVERHEAD
        for _ in range(r.count(1 + 8 + 1)):
            cname = r.string()
            if cname in group.consumers:
                raise rdb.RdbError("Duplicate stream consumer detected.")
            consumer = group.consumers[cname] = Consumer(cname, r.millis())
            grown += CONSUMER_OVERHEAD + len(cname)
            for _ in range(r.count(16)):
                sid = int.from_bytes(r.take(16), "big")
                nack = group.pel.get(sid)
                if nack is None:
                    raise rdb.RdbError("Consumer entry not found in group global PEL")
                if nack.consumer is not None:
                    raise rdb.RdbError("Stream consumer PEL entry already has a consumer")
                nack.consumer = consumer
                consumer.pel[sid] = nack
        if any(nack.consumer is None for nack in group.pel.values()):
            raise rdb.RdbError("Stream CG PEL entry without consumer")
    stream.nbytes = grown
    return stream


_Loader = Callable[[rdb.Reader, int, Encodings], Value]
_LOADERS: Final[dict[int, _Loader]] = {
    STRING: _load_string,
    LIST: _load_list, LIST_ZIPLIST: _load_list, LIST_QUICKLIST: _load_list,
    LIST_QUICKLIST_2: _load_list,
    SET: _load_set, SET_INTSET: _load_set,
    ZSET: _load_zset, ZSET_2: _load_zset, ZSET_ZIPLIST: _load_zset, ZSET_LISTPACK: _load_zset,
    HASH: _load_hash, HASH_ZIPLIST: _load_hash, HASH_LISTPACK: _load_hash,
    STREAM: _load_stream, STREAM_2: _load_stream,
}


def over_budget(payload: bytes, budget: int) -> bool:
    """Whether a payload's LZF strings decompress to more than ``budget``
    bytes (the RESP port's --max-bulk, lower than MAX_DECODED). Any other
    fault is left to RESTORE itself, which reports it in Redis's order."""
    if len(payload) * rdb.LZF_MAX_RATIO <= budget:
        return False  # cannot: no need to parse it twice
    body = rdb.unseal(payload)
    if body is None:
        return False
    try:
        deserialize(body, Encodings(), budget)
    except rdb.BudgetError:
        return True
    except rdb.RdbError:
        return False
    return False


# -- the commands ---------------------------------------------------------------------------

def dump(ks: Keyspace, argv: Argv) -> Any:
    value = ks.lookup(argv[1])
    return None if value is None else serialize(value, ks.encodings)


@dataclasses.dataclass(frozen=True, slots=True)
class Decoded:
    """A RESTORE payload checked and decoded: the value, or Redis's error
    for it; ``enc``, the encoding thresholds the value was built with."""

    enc: Encodings
    value: Value | None
    error: str | None


def decode(payload: bytes, enc: Encodings) -> Decoded:
    """Check a payload's footer (the CRC64 over all of it) and decode it."""
    body = rdb.unseal(payload)
    if body is None:
        return Decoded(enc, None, BAD_PAYLOAD)
    try:
        return Decoded(enc, deserialize(body, enc), None)
    except rdb.RdbError:
        return Decoded(enc, None, BAD_FORMAT)


def prepare_restore(argv: Argv, enc: Encodings) -> Callable[[Keyspace, Argv], Any]:
    """RESTORE with its payload checked and decoded now, without the store
    lock (``enc`` is copied: CONFIG SET may change it meanwhile)."""
    if len(argv) < 4:
        return restore
    return functools.partial(restore, decoded=decode(argv[3], dataclasses.replace(enc)))


def restore(ks: Keyspace, argv: Argv, decoded: Decoded | None = None) -> Any:
    """RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f],
    checked in restoreCommand's order. IDLETIME and FREQ are checked and
    then have no effect (this store keeps no LRU/LFU clock). ``decoded``:
    the payload as :func:`prepare_restore` found it before the lock."""
    key = argv[1]
    replace = absttl = False
    idle = freq = -1
    i = 4
    while i < len(argv):
        opt = argv[i].lower()
        more = i + 1 < len(argv)
        if opt == b"replace":
            replace = True
        elif opt == b"absttl":
            absttl = True
        elif opt == b"idletime" and more and freq == -1:
            idle = parse_int(argv[i + 1])
            if idle < 0:
                raise CommandError("Invalid IDLETIME value, must be >= 0")
            i += 1
        elif opt == b"freq" and more and idle == -1:
            freq = parse_int(argv[i + 1])
            if not 0 <= freq <= 255:
                raise CommandError("Invalid FREQ value, must be >= 0 and <= 255")
            i += 1
        else:
            raise CommandError(SYNTAX)
        i += 1
    existing = ks.lookup(key)
    if existing is not None and not replace:
        raise CommandError(BUSYKEY)
    ttl = parse_int(argv[2])
    if ttl < 0:
        raise CommandError("Invalid TTL value, must be >= 0")
    if decoded is None or decoded.enc != ks.encodings:
        decoded = decode(argv[3], ks.encodings)
    if decoded.error is not None:
        raise CommandError(decoded.error)
    value = decoded.value
    assert value is not None
    at = ttl + ks.now() if ttl and not absttl else ttl
    if at and at <= ks.now():
        # Already expired: Redis answers OK and creates nothing (a key
        # REPLACE removed stays removed: propagated as DEL).
        if existing is not None:
            ks.delete([key])
        return SimpleString("OK")
    # Logged as Redis propagates it: the payload with an absolute expiry
    # (0: none), after a DEL for REPLACE; a replay decodes the same bytes
    # to the same value, consumers' seen-times and delivery times included.
    ks.log((b"DEL", key), (b"RESTORE", key, b"%d" % at, argv[3], b"ABSTTL"))
    if existing is not None:
        ks.drop(key)
    ks.put(key, value, at)
    return SimpleString("OK")


COMMANDS = {b"dump": dump, b"restore": restore}
#: What a command can do before the store lock, from its arguments only:
#: ``PREPARE[name](argv, encodings)`` is the function to run under the lock.
PREPARE: Final[dict[bytes, Callable[[Argv, Encodings], Callable[[Keyspace, Argv], Any]]]] = {
    b"restore": prepare_restore,
}
