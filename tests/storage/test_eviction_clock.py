"""allkeys-lru's CLOCK hand (storage/memory.py, storage/slots.py): batch
eviction under the limit, the hand's compaction of the slot list, exact
accounting through the vectorised path, WATCH and the log on eviction.

Every assertion is about data, counts and bounds, never timings."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockworks.storage import eviction
from sockworks.storage.base import StoreWriteError, WatchSet
from sockworks.storage.embedded import open_embedded_store
from sockworks.storage.memory import CLOCK_HYSTERESIS_SHIFT, EVICT_BATCH, MemoryStore
from sockworks.storage.model.values import value_size
from sockworks.storage.slots import REBUILD_FLOOR

VALUE = b"v" * 100
#: One entry's cost: the slack over maxmemory a check-before-write allows.
SLACK = 32 + len(VALUE) + eviction.ENTRY_OVERHEAD + eviction.EXPIRY_OVERHEAD


def recount(store: MemoryStore) -> int:
    data, expires = store._data, store._expires
    return (sum(len(k) + value_size(v) + eviction.ENTRY_OVERHEAD for k, v in data.items())
            + eviction.EXPIRY_OVERHEAD * len(expires))


def check_slots(store: MemoryStore) -> None:
    """Every live key has a slot; sequence numbers ascend; the hand's
    stretch is within the list."""
    index = store._slots
    assert set(store._data) <= set(index.keys)
    assert all(a < b for a, b in zip(index.seqs, index.seqs[1:], strict=False))
    assert index.kept_from <= index.hand <= len(index.keys)
    assert len(index.kept_keys) == len(index.kept_seqs)


def scan_all(store: MemoryStore) -> set[bytes]:
    found: set[bytes] = set()
    cursor = 0
    for _ in range(100_000):
        cursor, keys = store.scan(cursor, None, 1000)
        found.update(keys)
        if cursor == 0:
            return found
    raise AssertionError("SCAN did not finish")


def test_batch_eviction_stays_under_the_limit_and_evicts_little_below_it() -> None:
    limit = 1_000_000
    store = MemoryStore(maxmemory=limit, maxmemory_policy="allkeys-lru")
    rng = random.Random(7)
    lowest_after_eviction = limit
    for i in range(20_000):
        evicted = store.info()["evicted_keys"]
        store.set(b"k%d" % rng.randrange(100_000), VALUE)
        used = store.used_memory()
        assert used <= limit + SLACK  # never more over than one command added
        if store.info()["evicted_keys"] != evicted:
            lowest_after_eviction = min(lowest_after_eviction, used)
        if i % 997 == 0:
            assert used == recount(store)
    assert store.info()["evicted_keys"] > 5000
    # A batch goes down to the hysteresis mark, not further (plus one key's
    # worth, as the run's size is estimated from the average entry).
    margin = limit >> CLOCK_HYSTERESIS_SHIFT
    assert limit - margin - 3 * SLACK <= lowest_after_eviction <= limit
    check_slots(store)
    assert scan_all(store) == set(store._data)


def test_the_hand_compacts_the_slot_list_without_a_compaction_job() -> None:
    store = MemoryStore(maxmemory=2_000_000, maxmemory_policy="allkeys-lru")
    rng = random.Random(3)
    jobs = 0
    for i in range(60_000):
        store.set(b"key:%d" % rng.randrange(1_000_000), VALUE)
        if i % 10 == 0:
            store.get(b"key:%d" % rng.randrange(1_000_000))
        jobs += store._slots.compacting
        # Dropped slots never outnumber the live keys by much.
        assert len(store._slots.keys) <= 2 * len(store._data) + 2 * REBUILD_FLOOR + EVICT_BATCH
    assert jobs == 0
    assert store.info()["evicted_keys"] > 40_000
    check_slots(store)
    assert scan_all(store) == set(store._data)


def test_a_key_accessed_after_creation_gets_a_second_chance() -> None:
    # 100 keys fit (306 bytes each), 104 do not.
    store = MemoryStore(maxmemory=32_000, maxmemory_policy="allkeys-lru")
    for i in range(100):
        store.set(b"old%03d" % i, VALUE)
    assert store.info()["evicted_keys"] == 0
    # The oldest keys: half of them read, half overwritten, then new keys
    # push the hand past them once.
    for i in range(0, 20, 2):
        store.get(b"old%03d" % i)
        store.set(b"old%03d" % (i + 1), VALUE)
    for i in range(100):
        store.set(b"new%03d" % i, VALUE)
    assert store.info()["evicted_keys"] >= 60
    assert all(store.get(b"old%03d" % i) is not None for i in range(20))
    assert all(store.get(b"old%03d" % i) is None for i in range(20, 40))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["set", "ttl", "del", "get", "hash", "big"]),
                          st.integers(0, 400)), min_size=1, max_size=1500))
def test_random_churn_at_the_limit_keeps_accounting_exact(ops: list[tuple[str, int]]) -> None:
    # Deleted keys leave dead slots, hashes take the aggregate path, TTLs
    # the expiry accounting, reads the second chance: the vectorised run
    # must count every byte and keep every live key's slot.
    store = MemoryStore(maxmemory=40_000, maxmemory_policy="allkeys-lru")
    for op, n in ops:
        key = b"k%d" % n
        if op == "set":
            store.set(key, VALUE)
        elif op == "ttl":
            store.set(key, VALUE, px=10**9)
        elif op == "del":
            store.delete([key])
        elif op == "get":
            store.get(key)
        elif op == "big":
            store.set(key, b"x" * 5000)
        else:
            store.execute_command([b"HSET", b"h" + key, b"f", VALUE])
        assert store.used_memory() <= 40_000 + 5000 + SLACK
    assert store.used_memory() == recount(store)
    check_slots(store)
    assert scan_all(store) == set(store._data)


def test_evicting_a_watched_key_breaks_the_watch() -> None:
    store = MemoryStore(maxmemory=50_000, maxmemory_policy="allkeys-lru")
    store.set(b"watched", VALUE)
    watch = WatchSet()
    store.watch(watch, [b"watched"])
    for i in range(1000):
        store.set(b"k%d" % i, VALUE)
    assert store.get(b"watched") is None
    assert store.watch_broken(watch)


def test_events_name_every_evicted_key() -> None:
    store = MemoryStore(maxmemory=50_000, maxmemory_policy="allkeys-lru")
    events: list[tuple[str, bytes]] = []
    store.key_events = lambda kind, key: events.append((kind, key))
    written = [b"k%d" % i for i in range(1000)]
    for key in written:
        store.set(key, VALUE)
    evicted = {key for kind, key in events if kind == "evicted"}
    assert len(evicted) == store.info()["evicted_keys"] > 500
    assert evicted == set(written) - set(store._data)


def test_a_failed_eviction_log_write_evicts_nothing(tmp_path: Path) -> None:
    store = open_embedded_store(str(tmp_path), "no", active_expiry=False, maxmemory=50_000,
                                maxmemory_policy="allkeys-lru")
    assert isinstance(store, MemoryStore)
    try:
        for i in range(200):  # past the limit: evicting
            store.set(b"k%03d" % i, VALUE)
        evicted = store.info()["evicted_keys"]
        assert evicted > 0
        while store.used_memory() <= 50_000:  # the next write must evict
            store.set(b"pad%d" % store.used_memory(), VALUE)
        before = dict(store._data)

        def refuse(payload: bytes) -> None:
            raise StoreWriteError("disk full")

        original = store._log
        store._log = refuse  # type: ignore[method-assign]
        with pytest.raises(StoreWriteError):
            store.set(b"k%03d" % 200, VALUE)
        store._log = original  # type: ignore[method-assign]
        assert dict(store._data) == before
        check_slots(store)
        assert scan_all(store) == set(before)
        # Writes work again, and evict.
        for i in range(400, 500):
            store.set(b"k%03d" % i, VALUE)
        assert store.info()["evicted_keys"] > evicted
        check_slots(store)
    finally:
        store.close()
