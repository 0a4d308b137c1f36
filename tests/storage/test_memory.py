"""MemoryStore: the Store contract, a hypothesis model check, expiry, counters."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockworks.storage.base import (
    IntegerOverflow,
    NotAnInteger,
    SetResult,
    Store,
    StoreError,
)
from sockworks.storage.embedded import open_embedded_store
from sockworks.storage.memory import I64_MAX, I64_MIN, MemoryStore, parse_int64
from tests.storage.store_contract import StoreContract, wait_until


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[Store]:
        s = MemoryStore()
        yield s
        s.close()

    # The embedded store isolates groups (its lock), and keeps atomic(), its
    # own block form of the same lock (not part of the Store contract).
    def test_groups_are_isolated(self) -> None:
        store = MemoryStore()
        assert store.isolates_groups
        store.mset([(b"x", b"0"), (b"y", b"0")])
        stop = threading.Event()
        torn: list[list[bytes | None]] = []

        def reader() -> None:
            while not stop.is_set():
                x, y = store.run_grouped(lambda st: (st.get(b"x"), st.get(b"y")))
                with store.atomic():
                    x2, y2 = store.get(b"x"), store.get(b"y")
                if x != y or x2 != y2:
                    torn.append([x, y, x2, y2])

        def both(st: Store) -> None:
            st.incrby(b"x", 1)
            st.incrby(b"y", 1)

        readers = [threading.Thread(target=reader) for _ in range(2)]
        for t in readers:
            t.start()
        try:
            for i in range(300):
                if i % 3 == 0:
                    store.run_grouped(both)
                elif i % 3 == 1:
                    # A batch call may make several calls here (isolates_groups).
                    store.execute_batch([both])
                else:
                    with store.atomic():
                        both(store)
        finally:
            stop.set()
            for t in readers:
                t.join(30)
        assert torn == []
        assert store.mget([b"x", b"y"]) == [b"300", b"300"]
        store.close()

    def test_atomic_nests(self) -> None:
        store = MemoryStore()
        with store.atomic(), store.atomic():
            store.set(b"k", b"v")
        assert store.run_grouped(lambda st: st.run_grouped(lambda inner: inner.get(b"k"))) \
            == b"v"
        store.close()


class FakeClock:
    """Wall-clock milliseconds under the test's control."""

    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


# -- the model -----------------------------------------------------------------


@dataclass
class Model:
    """A plain dict with Redis's semantics, the reference for MemoryStore."""

    clock: FakeClock
    data: dict[bytes, tuple[bytes, int]]  # key -> (value, expire_at or 0)

    def live(self, key: bytes) -> tuple[bytes, int] | None:
        item = self.data.get(key)
        if item is not None and item[1] and item[1] <= self.clock.now:
            del self.data[key]
            return None
        return item

    def apply(self, op: tuple[object, ...]) -> object:
        name = op[0]
        now = self.clock.now
        if name == "advance":
            self.clock.now += int(op[1])  # type: ignore[call-overload]
            return None
        key: bytes = op[1]  # type: ignore[assignment]
        item = self.live(key)
        if name == "get":
            return None if item is None else item[0]
        if name == "set":
            _, _, value, px, nx, xx, keepttl = op
            if (nx and item is not None) or (xx and item is None):
                return SetResult(False)
            if px is not None:
                at = now + px  # type: ignore[operator]
            elif keepttl and item is not None:
                at = item[1]
            else:
                at = 0
            self.data[key] = (value, at)  # type: ignore[assignment]
            return SetResult(True)
        if name == "delete":
            if item is None:
                return 0
            del self.data[key]
            return 1
        if name == "incrby":
            try:
                current = 0 if item is None else parse_int64(item[0])
            except NotAnInteger:
                return "NotAnInteger"
            result = current + op[2]  # type: ignore[operator]
            if not I64_MIN <= result <= I64_MAX:
                return "IntegerOverflow"
            self.data[key] = (b"%d" % result, 0 if item is None else item[1])
            return result
        if name == "pexpire":
            if item is None:
                return False
            ms: int = op[2]  # type: ignore[assignment]
            if ms <= 0:
                del self.data[key]
            else:
                self.data[key] = (item[0], now + ms)
            return True
        if name == "persist":
            if item is None or not item[1]:
                return False
            self.data[key] = (item[0], 0)
            return True
        if name == "pttl":
            if item is None:
                return -2
            return -1 if not item[1] else item[1] - now
        if name == "exists":
            return int(item is not None)
        if name == "mset":
            for k, v in op[2]:  # type: ignore[attr-defined]
                self.data[k] = (v, 0)
            return None
        if name == "flushdb":
            self.data.clear()
            return None
        raise AssertionError(name)

    def contents(self) -> dict[bytes, bytes]:
        return {k: v for k, (v, at) in self.data.items() if not at or at > self.clock.now}


def run_op(store: MemoryStore, op: tuple[object, ...], clock: FakeClock) -> object:
    name = op[0]
    if name == "advance":
        clock.now += int(op[1])  # type: ignore[call-overload]
        return None
    key: bytes = op[1]  # type: ignore[assignment]
    if name == "get":
        return store.get(key)
    if name == "set":
        _, _, value, px, nx, xx, keepttl = op
        return store.set(key, value, px=px, nx=nx, xx=xx, keepttl=keepttl)  # type: ignore[arg-type]
    if name == "delete":
        return store.delete([key])
    if name == "incrby":
        try:
            return store.incrby(key, op[2])  # type: ignore[arg-type]
        except (NotAnInteger, IntegerOverflow) as exc:
            return type(exc).__name__
    if name == "pexpire":
        return store.pexpire(key, op[2])  # type: ignore[arg-type]
    if name == "persist":
        return store.persist(key)
    if name == "pttl":
        return store.pttl(key)
    if name == "exists":
        return store.exists([key])
    if name == "mset":
        store.mset(op[2])  # type: ignore[arg-type]
        return None
    if name == "flushdb":
        store.flushdb()
        return None
    raise AssertionError(name)


keys = st.sampled_from([b"a", b"b", b"c", b"\xff\x00"])
values = st.one_of(
    st.sampled_from([b"0", b"1", b"-7", b"9223372036854775807", b"-9223372036854775808",
                     b"x", b"", b"01", b"+1"]),
    st.binary(max_size=8),
)
deltas = st.one_of(st.integers(-5, 5), st.sampled_from([I64_MAX, I64_MIN]))
ops = st.one_of(
    st.tuples(st.just("advance"), st.integers(0, 50)),
    st.tuples(st.just("get"), keys),
    st.tuples(st.just("set"), keys, values, st.one_of(st.none(), st.integers(1, 60)),
              st.booleans(), st.booleans(), st.booleans()).filter(
        lambda op: not (op[4] and op[5]) and not (op[3] is not None and op[6])),
    st.tuples(st.just("delete"), keys),
    st.tuples(st.just("incrby"), keys, deltas),
    st.tuples(st.just("pexpire"), keys, st.integers(-1, 60)),
    st.tuples(st.just("persist"), keys),
    st.tuples(st.just("pttl"), keys),
    st.tuples(st.just("exists"), keys),
    st.tuples(st.just("mset"), keys, st.lists(st.tuples(keys, values), min_size=1, max_size=3)),
    st.tuples(st.just("flushdb"), keys),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(ops, max_size=60))
def test_memory_store_matches_dict_model(program: list[tuple[object, ...]]) -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    model = Model(FakeClock(clock.now), {})
    try:
        for op in program:
            assert run_op(store, op, clock) == model.apply(op), op
            model.clock.now = clock.now
        store.expire_cycle()
        assert {k: store.get(k) for k in store.keys(b"*")} == model.contents()
        assert store.dbsize() == len(model.contents())
    finally:
        store.close()


@settings(max_examples=40, deadline=None)
@given(st.lists(ops, max_size=40))
def test_log_replay_matches_dict_model(tmp_path_factory: pytest.TempPathFactory,
                                       program: list[tuple[object, ...]]) -> None:
    """Every write's log record replays to the same state (with its TTLs)."""
    data_dir = str(tmp_path_factory.mktemp("replay"))
    clock = FakeClock()
    store = open_embedded_store(data_dir, "no", active_expiry=False, clock=clock)
    model = Model(FakeClock(clock.now), {})
    try:
        for op in program:
            assert run_op(store, op, clock) == model.apply(op), op
            model.clock.now = clock.now
    finally:
        store.close()
    reopened = open_embedded_store(data_dir, "no", active_expiry=False, clock=clock)
    try:
        expected = model.contents()
        assert {k: reopened.get(k) for k in reopened.keys(b"*")} == expected
        for key in expected:
            assert reopened.pttl(key) == model.apply(("pttl", key))
    finally:
        reopened.close()


def test_replay_lets_a_later_record_keep_a_key_whose_ttl_has_passed(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    # Found by the property above: PERSIST (or a new TTL, or a write) after a
    # TTL that is past by the time of the restart. Nothing expires while the
    # log replays (Redis's loading); what is past due goes at the end.
    data_dir = str(tmp_path_factory.mktemp("replay"))
    clock = FakeClock()
    store = open_embedded_store(data_dir, "no", active_expiry=False, clock=clock)
    try:
        store.set(b"kept", b"v")
        store.pexpire(b"kept", 1)
        store.persist(b"kept")
        store.set(b"extended", b"v")
        store.pexpire(b"extended", 1)
        store.pexpire(b"extended", 100_000)
        store.set(b"gone", b"v", px=1)
        store.execute_command([b"HSET", b"h", b"f1", b"v"])
        store.pexpire(b"h", 1)
        store.execute_command([b"HSET", b"h", b"f2", b"v"])  # alive: the TTL stays
        clock.now += 5
    finally:
        store.close()
    reopened = open_embedded_store(data_dir, "no", active_expiry=False, clock=clock)
    try:
        assert reopened.get(b"kept") == b"v" and reopened.pttl(b"kept") == -1
        assert reopened.pttl(b"extended") == 100_000 - 5
        assert reopened.get(b"gone") is None
        # Not brought back without its TTL by the replayed HSET.
        assert reopened.exists([b"h"]) == 0
        assert sorted(reopened.keys(b"*")) == [b"extended", b"kept"]
    finally:
        reopened.close()


# -- behaviour specific to the embedded store ------------------------------------


def test_parse_int64() -> None:
    assert parse_int64(b"0") == 0
    assert parse_int64(b"-1") == -1
    assert parse_int64(b"9223372036854775807") == I64_MAX
    assert parse_int64(b"-9223372036854775808") == I64_MIN
    for bad in (b"", b"-", b"-0", b"00", b"+5", b" 5", b"5\n", b"99999999999999999999999"):
        with pytest.raises(NotAnInteger):
            parse_int64(bad)


def test_incrby_refuses_delta_outside_int64() -> None:
    store = MemoryStore()
    with pytest.raises(NotAnInteger):
        store.incrby(b"n", I64_MAX + 1)
    assert store.get(b"n") is None


def test_expiry_uses_the_clock_exactly() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.set(b"k", b"v", px=100)
    clock.now += 99
    assert store.pttl(b"k") == 1
    assert store.get(b"k") == b"v"
    clock.now += 1
    assert store.get(b"k") is None
    assert store.pttl(b"k") == -2
    assert store.info()["expired_keys"] == 1


def test_expire_cycle_reclaims_memory_without_access() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for i in range(5000):
        store.set(b"t%d" % i, b"v", px=10 + i % 7)
    store.set(b"kept", b"v", px=1_000_000)
    store.set(b"plain", b"v")
    store.pexpire(b"t0", 500)  # a changed TTL leaves a stale heap entry behind
    clock.now += 100
    total = 0
    for _ in range(100):  # each cycle has a bounded budget; loop until done
        total += store.expire_cycle()
        if store.info()["keys"] == 3:
            break
    info = store.info()
    assert info["keys"] == 3  # raw memory count: only t0, kept and plain remain
    assert info["expires"] == 2
    assert info["expired_keys"] == total == 4999
    assert store.get(b"t0") == b"v"


def test_background_sweeper_reclaims_and_stops_on_close() -> None:
    store = MemoryStore()
    store.start_expiry(interval=0.01)
    store.start_expiry(interval=0.01)  # idempotent
    sweeper = store._sweeper
    assert sweeper is not None and sweeper.is_alive()
    for i in range(200):
        store.set(b"k%d" % i, b"v", px=20)
    assert wait_until(lambda: store.info()["keys"] == 0)
    assert store.info()["expired_keys"] == 200
    store.close()
    assert not sweeper.is_alive()


def test_hits_and_misses_count_get_and_mget() -> None:
    store = MemoryStore()
    store.set(b"a", b"1")
    store.get(b"a")
    store.get(b"b")
    store.mget([b"a", b"a", b"c"])
    store.exists([b"a", b"zz"])  # not counted, as in Redis
    info = store.info()
    assert (info["keyspace_hits"], info["keyspace_misses"]) == (3, 2)
    assert info["persistence"] == "off"


def test_closed_store_refuses_calls() -> None:
    store = MemoryStore()
    store.close()
    with pytest.raises(StoreError):
        store.get(b"a")
    with pytest.raises(StoreError):
        store.set(b"a", b"b")


def test_scan_cursor_survives_slot_compaction() -> None:
    store = MemoryStore()
    stable = [b"s%d" % i for i in range(100)]
    store.mset([(k, b"v") for k in stable])
    cursor, found = store.scan(0, None, 30)
    seen = set(found)
    # Enough churn to force the dead-slot rebuild several times mid-scan.
    for i in range(5000):
        store.set(b"tmp%d" % i, b"v")
        store.delete([b"tmp%d" % i])
    assert len(store._slots.keys) < 2000
    for _ in range(100):
        if cursor == 0:
            break
        cursor, found = store.scan(cursor, None, 30)
        seen.update(found)
    assert cursor == 0
    assert set(stable) <= seen


def test_invalid_ttl_overflow() -> None:
    store = MemoryStore()
    store.set(b"k", b"v")
    with pytest.raises(StoreError):
        store.pexpire(b"k", I64_MAX)
    with pytest.raises(StoreError):
        store.set(b"k", b"v", px=I64_MAX)
    assert store.pttl(b"k") == -1


def test_open_embedded_store_without_dir_is_memory_only() -> None:
    store = open_embedded_store(None)
    try:
        assert type(store) is MemoryStore
        assert store.durability_barrier() is None
        assert store.compact() == "nothing to compact"
    finally:
        store.close()
    with pytest.raises(ValueError):
        open_embedded_store(None, "sometimes")
