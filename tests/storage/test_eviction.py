"""The embedded store's memory limit: accounting, each eviction policy, the
log of evictions, OOM under noeviction, and SCAN's bounded work.

Every assertion is about data and counts, never timings; memory is checked
against tracemalloc within a stated factor (2x either way)."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import pytest

from sockworks.storage import eviction
from sockworks.storage.base import OutOfMemory
from sockworks.storage.embedded import open_embedded_store
from sockworks.storage.eviction import bytes_to_human, parse_memory
from sockworks.storage.memory import SCAN_MAX_COUNT, MemoryStore

#: The accounting must be within this factor of what tracemalloc sees.
TRACEMALLOC_FACTOR = 2.0
VALUE = b"v" * 100
#: One entry's cost: the slack over maxmemory a check-before-write allows.
SLACK = 32 + len(VALUE) + eviction.ENTRY_OVERHEAD + eviction.EXPIRY_OVERHEAD


def recount(store: MemoryStore) -> int:
    """used_memory from scratch (what the incremental count must equal)."""
    data, expires = store._data, store._expires
    return (sum(len(k) + len(v) for k, v in data.items())
            + eviction.ENTRY_OVERHEAD * len(data) + eviction.EXPIRY_OVERHEAD * len(expires))


@pytest.mark.parametrize(("text", "value"), [
    ("0", 0), ("100", 100), ("1k", 1000), ("1kb", 1024), ("1K", 1000), ("1KB", 1024),
    ("100mb", 100 * 1024**2), ("100m", 100 * 1000**2), ("2gb", 2 * 1024**3), ("2G", 2 * 10**9),
    ("7b", 7),
])
def test_parse_memory_is_redis_memtoull(text: str, value: int) -> None:
    assert parse_memory(text) == value


@pytest.mark.parametrize("text", ["", "-1", "1.5mb", "mb", "1 mb", "1tb", "+1", "1kbb"])
def test_parse_memory_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_memory(text)


def test_bytes_to_human_is_redis() -> None:
    assert [bytes_to_human(n) for n in (0, 1023, 1024, 1536, 1024**2, 3 * 1024**3)] == [
        "0B", "1023B", "1.00K", "1.50K", "1.00M", "3.00G"]


@pytest.mark.parametrize("policy", ["noeviction", "allkeys-lru", "allkeys-lfu"])
def test_accounting_is_incremental_and_exact(policy: str) -> None:
    rng = random.Random(10)
    now = [1_000_000]
    store = MemoryStore(clock=lambda: now[0], maxmemory_policy=policy)
    for _ in range(5000):
        key = b"k%d" % rng.randrange(300)
        op = rng.randrange(9)
        if op == 0:
            store.delete([key])
        elif op == 1:
            store.pexpire(key, rng.randrange(-5, 50))
        elif op == 2:
            store.persist(key)
        elif op == 3:
            store.set(key, b"x" * rng.randrange(50), px=rng.randrange(1, 100))
        elif op == 4:
            store.mset([(key, b"y" * rng.randrange(30)), (key + b"b", b"z")])
        elif op == 5:
            store.delete([key])
            store.incrby(key, 7)
        elif op == 6:
            now[0] += rng.randrange(20)  # some keys expire, lazily or by the cycle
            store.expire_cycle()
        elif op == 7:
            store.get(key)
        else:
            store.set(key, b"w" * rng.randrange(80), keepttl=True)
        assert store.used_memory() == recount(store)
    store.flushdb()
    assert store.used_memory() == 0


@pytest.mark.parametrize("ttl", [False, True])
@pytest.mark.parametrize("policy", ["noeviction", "allkeys-lru"])
def test_accounting_is_within_a_factor_of_tracemalloc(policy: str, ttl: bool) -> None:
    count = 20_000
    tracemalloc.start()
    try:
        store = MemoryStore(maxmemory_policy=policy)
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            store.set(b"key:%08d" % i, b"%064d" % i, px=10**9 if ttl else None)
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    used = store.used_memory()
    assert used / TRACEMALLOC_FACTOR <= traced <= used * TRACEMALLOC_FACTOR, (traced, used)


def fill(store: MemoryStore, prefix: bytes, count: int, px: int | None = None) -> None:
    for i in range(count):
        store.set(prefix + b"%05d" % i, VALUE, px=px)


def test_noeviction_refuses_writes_but_not_reads_deletes_expire_flush() -> None:
    store = MemoryStore(maxmemory=20_000)
    with pytest.raises(OutOfMemory) as raised:
        fill(store, b"k", 1000)
    assert str(raised.value) == "OOM command not allowed when used memory > 'maxmemory'."
    assert store.used_memory() <= 20_000 + SLACK
    kept = store.dbsize()
    assert kept > 10
    for write in (lambda: store.set(b"x", b"1"), lambda: store.mset([(b"x", b"1")]),
                  lambda: store.incrby(b"x", 1), lambda: store.set(b"k00000", b"", xx=True)):
        with pytest.raises(OutOfMemory):
            write()
    assert store.get(b"k00000") == VALUE
    assert store.pexpire(b"k00001", 10_000) and store.pttl(b"k00001") > 0
    assert store.delete([b"k00002", b"k00003", b"k00004"]) == 3
    assert store.make_room()  # the deletes brought it under the limit
    store.set(b"x", b"1")
    store.flushdb()
    assert store.used_memory() == 0 and store.info()["evicted_keys"] == 0


@pytest.mark.parametrize("policy", [p for p in eviction.POLICIES if p.startswith("allkeys-")])
def test_allkeys_policies_stay_under_the_limit(policy: str) -> None:
    store = MemoryStore(maxmemory=50_000, maxmemory_policy=policy)
    fill(store, b"k", 3000)
    assert store.used_memory() <= 50_000 + SLACK
    assert store.info()["evicted_keys"] > 2000
    assert store.used_memory() == recount(store)


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru"])
def test_lru_keeps_the_recently_read_keys(policy: str) -> None:
    store = MemoryStore(maxmemory=100_000, maxmemory_policy=policy, maxmemory_samples=10)
    px = 10**9 if policy.startswith("volatile") else None
    fill(store, b"hot", 50, px)
    for i in range(2000):
        for j in range(0, 50, 10):
            store.get(b"hot%05d" % ((i + j) % 50))  # every hot key read often
        store.set(b"cold%05d" % i, VALUE, px=px)
    hot = sum(store.get(b"hot%05d" % i) is not None for i in range(50))
    assert hot >= 45, hot
    assert store.info()["evicted_keys"] > 1000


@pytest.mark.parametrize("policy", ["allkeys-lfu", "volatile-lfu"])
def test_lfu_keeps_the_frequently_read_keys(policy: str) -> None:
    store = MemoryStore(maxmemory=100_000, maxmemory_policy=policy, maxmemory_samples=10)
    px = 10**9 if policy.startswith("volatile") else None
    fill(store, b"hot", 50, px)
    for _ in range(200):
        for i in range(50):
            store.get(b"hot%05d" % i)
    fill(store, b"cold", 2000, px)
    hot = sum(store.get(b"hot%05d" % i) is not None for i in range(50))
    assert hot >= 45, hot


@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-lfu", "volatile-random",
                                    "volatile-ttl"])
def test_volatile_policies_evict_only_keys_with_a_ttl(policy: str) -> None:
    store = MemoryStore(maxmemory=60_000, maxmemory_policy=policy)
    fill(store, b"persistent", 100)
    for i in range(2000):
        store.set(b"ttl%05d" % i, VALUE, px=1_000_000 + i * 1000)
    assert store.used_memory() <= 60_000 + SLACK
    assert all(store.get(b"persistent%05d" % i) == VALUE for i in range(100))
    if policy == "volatile-ttl":
        # Exactly the soonest-expiring went: the survivors are the latest.
        alive = [i for i in range(2000) if store.get(b"ttl%05d" % i) is not None]
        assert alive == list(range(2000 - len(alive), 2000))
    # With no TTL keys left, nothing is evictable: OOM, as Redis.
    store.delete([b"ttl%05d" % i for i in range(2000)])
    with pytest.raises(OutOfMemory):
        fill(store, b"more", 400)
    assert store.info()["evicted_keys"] > 0 and store.dbsize() > 100


@pytest.mark.parametrize("policy", [p for p in eviction.POLICIES if p != "noeviction"])
def test_replay_after_evictions_gives_the_same_data(policy: str, tmp_path: Path) -> None:
    store = open_embedded_store(str(tmp_path), "no", active_expiry=False, maxmemory=80_000,
                                maxmemory_policy=policy)
    try:
        for i in range(1500):
            # One key in ten has no TTL (volatile-* cannot evict those).
            store.set(b"k%05d" % i, VALUE, px=10**9 if i % 10 else None)
            if i % 7 == 0:
                store.get(b"k%05d" % (i // 2))
        assert store.info()["evicted_keys"] > 500
        before = {k: store.get(k) for k in store.keys(b"*")}
    finally:
        store.close()
    reopened = open_embedded_store(str(tmp_path), "no", active_expiry=False)
    try:
        assert {k: reopened.get(k) for k in reopened.keys(b"*")} == before
        assert isinstance(reopened, MemoryStore)
        assert reopened.used_memory() == recount(reopened)
    finally:
        reopened.close()


def test_expiry_keeps_working_at_the_limit() -> None:
    now = [1_000_000]
    store = MemoryStore(clock=lambda: now[0], maxmemory=30_000)
    with pytest.raises(OutOfMemory):
        fill(store, b"k", 1000, px=50)
    now[0] += 100
    assert store.expire_cycle() > 0
    assert store.used_memory() == 0
    store.set(b"after", b"1")


def test_lowering_the_limit_evicts_in_bounded_batches() -> None:
    store = MemoryStore(maxmemory_policy="allkeys-random")
    fill(store, b"k", 3000)
    store.configure_memory(maxmemory=1000)
    store.set(b"x", b"1")  # evicts at most EVICT_BATCH, then goes ahead
    assert 0 < store.info()["evicted_keys"] <= 1000
    store.set(b"y", b"1")
    store.set(b"z", b"1")
    assert store.used_memory() <= 1000 + SLACK


def test_scan_work_per_call_is_bounded_and_the_cursor_valid() -> None:
    store = MemoryStore()
    store.mset([(b"k%06d" % i, b"") for i in range(3 * SCAN_MAX_COUNT)])
    cursor, keys = store.scan(0, None, 100_000_000)
    assert len(keys) == SCAN_MAX_COUNT and cursor != 0
    seen = set(keys)
    while cursor:
        cursor, keys = store.scan(cursor, None, 100_000_000)
        assert len(keys) <= SCAN_MAX_COUNT
        seen.update(keys)
    assert len(seen) == 3 * SCAN_MAX_COUNT


def test_scan_returns_a_key_whose_slot_triggered_compaction() -> None:
    # A new key whose slot made the slot list compact itself must keep it.
    store = MemoryStore()
    for i in range(5000):
        store.set(b"t", b"1")
        store.delete([b"t"])
        store.set(b"k%d" % i, b"1")
        store.delete([b"k%d" % i])
    store.set(b"survivor", b"1")
    found: list[bytes] = []
    cursor = 0
    while True:
        cursor, keys = store.scan(cursor, None, 1000)
        found += keys
        if cursor == 0:
            break
    assert found == [b"survivor"]
