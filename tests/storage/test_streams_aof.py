"""Streams through the append-only log: every write replays to the same
stream (entries, last ID after deletes, counters, groups, pending entries
with their delivery times and counts), IDs made by ``*`` included; a
compaction writes each stream so that it loads back the same; memory
accounting is the same after a replay as it was kept incrementally.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from sockworks.storage.embedded import PersistentStore
from sockworks.storage.memory import MemoryStore
from sockworks.storage.model.streamvalue import StreamValue


def dump(store: MemoryStore) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    for key in store.keys(b"*"):
        value = store.lookup(key)
        assert isinstance(value, StreamValue)
        groups = {
            name: (g.last_id, g.entries_read, sorted(g.consumers),
                   [(sid, n.consumer.name, n.time, n.count) for sid, n in g.pel.items()])
            for name, g in value.groups.items()}
        out[key] = (list(value.ids), [value.data[sid][0] for sid in value.ids],
                    value.last_id, value.first_id, value.max_deleted, value.entries_added,
                    groups, store.expire_at(key))
    return out


def random_stream_writes(store: MemoryStore, rng: random.Random, count: int) -> None:
    keys = [b"s%d" % i for i in range(4)]
    groups = [b"g%d" % i for i in range(3)]
    consumers = [b"c%d" % i for i in range(3)]

    def some_id() -> bytes:
        return b"%d-%d" % (rng.randrange(1, 40), rng.randrange(3))

    commands = [
        lambda: [b"XADD", rng.choice(keys), b"*", b"f", b"%d" % rng.randrange(99)],
        lambda: [b"XADD", rng.choice(keys), some_id(), b"f", b"v"],
        lambda: [b"XADD", rng.choice(keys), b"MAXLEN", b"~", b"3", b"*", b"f", b"v"],
        lambda: [b"XADD", rng.choice(keys), b"MINID", b"=", some_id(), b"*", b"a", b"b"],
        lambda: [b"XDEL", rng.choice(keys), some_id()],
        lambda: [b"XTRIM", rng.choice(keys), b"MAXLEN", b"%d" % rng.randrange(6)],
        lambda: [b"XSETID", rng.choice(keys), b"9999999999999-0"],
        lambda: [b"XGROUP", b"CREATE", rng.choice(keys), rng.choice(groups), b"0",
                 b"MKSTREAM"],
        lambda: [b"XGROUP", b"SETID", rng.choice(keys), rng.choice(groups), b"0"],
        lambda: [b"XGROUP", b"DELCONSUMER", rng.choice(keys), rng.choice(groups),
                 rng.choice(consumers)],
        lambda: [b"XREADGROUP", b"GROUP", rng.choice(groups), rng.choice(consumers), b"COUNT",
                 b"2", b"STREAMS", rng.choice(keys), b">"],
        lambda: [b"XREADGROUP", b"GROUP", rng.choice(groups), rng.choice(consumers), b"NOACK",
                 b"STREAMS", rng.choice(keys), b">"],
        lambda: [b"XREADGROUP", b"GROUP", rng.choice(groups), rng.choice(consumers),
                 b"STREAMS", rng.choice(keys), b"0"],
        lambda: [b"XACK", rng.choice(keys), rng.choice(groups), some_id()],
        lambda: [b"XCLAIM", rng.choice(keys), rng.choice(groups), rng.choice(consumers), b"0",
                 some_id(), some_id()],
        lambda: [b"XAUTOCLAIM", rng.choice(keys), rng.choice(groups), rng.choice(consumers),
                 b"0", b"0", b"COUNT", b"2"],
        lambda: [b"COPY", rng.choice(keys), rng.choice(keys), b"REPLACE"],
        lambda: [b"RENAME", rng.choice(keys), rng.choice(keys)],
    ]
    for _ in range(count):
        try:
            store.execute_command(rng.choice(commands)())
        except Exception:
            pass
        if rng.random() < 0.02:
            store.delete([rng.choice(keys)])


def test_replay_reproduces_streams(tmp_path: Path) -> None:
    for seed in range(4):
        path = tmp_path / f"run{seed}"
        store = PersistentStore(str(path), "no")
        random_stream_writes(store, random.Random(seed), 800)
        before = dump(store)
        assert any(groups for *_, groups, _ in before.values())
        used = store.used_memory()
        store.close()
        again = PersistentStore(str(path), "no")
        try:
            assert dump(again) == before
            assert again.used_memory() == used
        finally:
            again.close()


def test_an_auto_id_replays_to_the_same_id_and_last_id_survives_deletes(
        tmp_path: Path) -> None:
    store = PersistentStore(str(tmp_path), "no")
    made = store.execute_command([b"XADD", b"s", b"*", b"f", b"v"])
    store.execute_command([b"XADD", b"s", b"99999999999999-5", b"f", b"v"])
    store.execute_command([b"XDEL", b"s", b"99999999999999-5"])
    store.close()
    again = PersistentStore(str(tmp_path), "no")
    try:
        assert again.execute_command([b"XRANGE", b"s", b"-", b"+"]) == [[made, [b"f", b"v"]]]
        info = dict(again.execute_command([b"XINFO", b"STREAM", b"s"]).items)
        assert info[b"last-generated-id"] == b"99999999999999-5"
        assert info[b"max-deleted-entry-id"] == b"99999999999999-5"
        assert info[b"entries-added"] == 2
        # The next auto ID is past the deleted one, as before the restart.
        assert again.execute_command([b"XADD", b"s", b"*", b"f", b"v"]) == b"99999999999999-6"
    finally:
        again.close()


def test_compaction_writes_streams_that_load_back_the_same(tmp_path: Path) -> None:
    store = PersistentStore(str(tmp_path), "no")
    for i in range(1, 30):
        store.execute_command([b"XADD", b"s", b"%d-1" % i, b"f", b"%d" % i])
    store.execute_command([b"XDEL", b"s", b"29-1", b"3-1"])
    store.execute_command([b"XGROUP", b"CREATE", b"s", b"g", b"0"])
    store.execute_command([b"XREADGROUP", b"GROUP", b"g", b"alice", b"COUNT", b"5",
                           b"STREAMS", b"s", b">"])
    store.execute_command([b"XGROUP", b"CREATECONSUMER", b"s", b"g", b"idle"])
    store.execute_command([b"XGROUP", b"CREATE", b"empty", b"g", b"$", b"MKSTREAM"])
    store.execute_command([b"XADD", b"gone", b"1-1", b"f", b"v"])
    store.execute_command([b"XDEL", b"gone", b"1-1"])
    before = dump(store)
    store.compact()
    store.close()
    again = PersistentStore(str(tmp_path), "no")
    try:
        assert dump(again) == before
    finally:
        again.close()
