"""The Store contract every backend passes: subclass and provide a ``store`` fixture.

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self) -> Iterator[Store]:
            s = MyStore(...); s.flushdb(); yield s; s.close()

The tests check behaviour only through the Store interface (base.py), with
Redis's semantics as the reference, so the embedded store and the Redis
backend are held to the same rules. Timing-dependent checks (expiry) use TTLs
of tens of milliseconds and poll with a bounded deadline; none asserts speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from sockworks.storage.base import (
    IntegerOverflow,
    NotAnInteger,
    SetResult,
    Store,
    StoreError,
)

I64_MAX = (1 << 63) - 1
I64_MIN = -(1 << 63)
BINARY = bytes(range(256))


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` (bounded, never asserts speed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def run_threads(count: int, target: Callable[[int], None]) -> None:
    """Run ``target(i)`` in ``count`` threads; re-raise the first failure."""
    errors: list[BaseException] = []

    def wrapped(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "worker threads hung"
    if errors:
        raise errors[0]


class StoreContract:
    """Backend-agnostic behaviour; needs a ``store`` fixture (empty store)."""

    # -- strings ----------------------------------------------------------
    def test_set_get_roundtrip(self, store: Store) -> None:
        assert store.get(b"k") is None
        assert store.set(b"k", b"v") == SetResult(True)
        assert store.get(b"k") == b"v"
        assert store.set(b"k", b"w").written
        assert store.get(b"k") == b"w"

    def test_binary_keys_and_values(self, store: Store) -> None:
        key = b"\xff\xfe\x00key\n"
        store.set(key, BINARY)
        assert store.get(key) == BINARY
        assert store.set(b"empty", b"").written
        assert store.get(b"empty") == b""
        assert store.exists([b"empty"]) == 1

    def test_set_nx_xx(self, store: Store) -> None:
        assert store.set(b"k", b"1", xx=True) == SetResult(False)
        assert store.get(b"k") is None
        assert store.set(b"k", b"1", nx=True) == SetResult(True)
        assert store.set(b"k", b"2", nx=True) == SetResult(False)
        assert store.get(b"k") == b"1"
        assert store.set(b"k", b"3", xx=True) == SetResult(True)
        assert store.get(b"k") == b"3"

    def test_set_get_option_returns_old_value(self, store: Store) -> None:
        assert store.set(b"k", b"1", get=True) == SetResult(True, None)
        assert store.set(b"k", b"2", get=True) == SetResult(True, b"1")
        assert store.set(b"k", b"3", nx=True, get=True) == SetResult(False, b"2")
        assert store.get(b"k") == b"2"

    def test_set_rejects_bad_options(self, store: Store) -> None:
        with pytest.raises(StoreError):
            store.set(b"k", b"v", nx=True, xx=True)
        with pytest.raises(StoreError):
            store.set(b"k", b"v", px=0)
        with pytest.raises(StoreError):
            store.set(b"k", b"v", px=-5)
        with pytest.raises(StoreError):
            store.set(b"k", b"v", px=1000, keepttl=True)
        assert store.get(b"k") is None

    def test_set_ttl_and_keepttl(self, store: Store) -> None:
        store.set(b"k", b"v", px=100_000)
        assert 0 < store.pttl(b"k") <= 100_000
        store.set(b"k", b"w", keepttl=True)
        assert 0 < store.pttl(b"k") <= 100_000
        store.set(b"k", b"x")  # a plain SET clears the TTL (Redis)
        assert store.pttl(b"k") == -1

    def test_mget_mset(self, store: Store) -> None:
        store.mset([(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])
        assert store.mget([b"a", b"b", b"c", b"a"]) == [b"3", b"2", None, b"3"]
        store.set(b"t", b"v", px=100_000)
        store.mset([(b"t", b"w")])
        assert store.pttl(b"t") == -1

    def test_exists_counts_duplicates(self, store: Store) -> None:
        store.set(b"a", b"1")
        assert store.exists([b"a", b"a", b"b"]) == 2
        assert store.exists([]) == 0

    def test_delete(self, store: Store) -> None:
        store.mset([(b"a", b"1"), (b"b", b"2")])
        assert store.delete([b"a", b"a", b"x"]) == 1
        assert store.get(b"a") is None
        assert store.delete([b"a"]) == 0
        assert store.delete([b"b"]) == 1
        assert store.dbsize() == 0

    # -- integers -----------------------------------------------------------
    def test_incrby(self, store: Store) -> None:
        assert store.incrby(b"n", 1) == 1
        assert store.incrby(b"n", 41) == 42
        assert store.incrby(b"n", -50) == -8
        assert store.get(b"n") == b"-8"
        store.set(b"m", b"10")
        assert store.incrby(b"m", 0) == 10

    @pytest.mark.parametrize(
        "value",
        [b"abc", b"", b" 1", b"1 ", b"+1", b"01", b"-0", b"1.5", b"1e3", b"0x10",
         b"9223372036854775808", b"-9223372036854775809", b"\xff", b"--1", b"-"],
    )
    def test_incrby_refuses_non_canonical_integers(self, store: Store, value: bytes) -> None:
        store.set(b"n", value)
        with pytest.raises(NotAnInteger):
            store.incrby(b"n", 1)
        assert store.get(b"n") == value

    def test_incrby_accepts_the_int64_limits(self, store: Store) -> None:
        store.set(b"a", str(I64_MAX).encode())
        assert store.incrby(b"a", -1) == I64_MAX - 1
        store.set(b"b", str(I64_MIN).encode())
        assert store.incrby(b"b", 1) == I64_MIN + 1
        store.set(b"c", b"0")
        assert store.incrby(b"c", I64_MIN) == I64_MIN

    def test_incrby_overflow(self, store: Store) -> None:
        store.set(b"n", str(I64_MAX).encode())
        with pytest.raises(IntegerOverflow):
            store.incrby(b"n", 1)
        assert store.get(b"n") == str(I64_MAX).encode()
        store.set(b"m", str(I64_MIN).encode())
        with pytest.raises(IntegerOverflow):
            store.incrby(b"m", -1)

    def test_incrby_keeps_ttl(self, store: Store) -> None:
        store.set(b"n", b"5", px=100_000)
        assert store.incrby(b"n", 1) == 6
        assert 0 < store.pttl(b"n") <= 100_000

    def test_concurrent_incr_is_exact(self, store: Store) -> None:
        # Issue 3: 50 clients x 1000 INCR each totals exactly 50,000.
        def worker(_: int) -> None:
            for _ in range(1000):
                store.incrby(b"counter", 1)

        run_threads(50, worker)
        assert store.get(b"counter") == b"50000"

    # -- expiry ---------------------------------------------------------------
    def test_ttl_queries(self, store: Store) -> None:
        assert store.pttl(b"k") == -2
        store.set(b"k", b"v")
        assert store.pttl(b"k") == -1
        assert store.pexpire(b"k", 100_000)
        assert 0 < store.pttl(b"k") <= 100_000
        assert store.persist(b"k")
        assert store.pttl(b"k") == -1
        assert not store.persist(b"k")
        assert not store.persist(b"missing")
        assert not store.pexpire(b"missing", 1000)

    def test_pexpire_non_positive_deletes(self, store: Store) -> None:
        store.set(b"k", b"v")
        assert store.pexpire(b"k", 0)
        assert store.get(b"k") is None
        store.set(b"k", b"v")
        assert store.pexpire(b"k", -10)
        assert store.exists([b"k"]) == 0

    def test_expired_keys_are_never_returned(self, store: Store) -> None:
        store.set(b"gone", b"v", px=30)
        store.set(b"kept", b"v")
        assert wait_until(lambda: store.pttl(b"gone") == -2)
        assert store.get(b"gone") is None
        assert store.mget([b"gone", b"kept"]) == [None, b"v"]
        assert store.exists([b"gone"]) == 0
        assert store.keys(b"*") == [b"kept"]
        assert not store.persist(b"gone")
        assert not store.pexpire(b"gone", 1000)
        assert store.set(b"gone", b"new", xx=True) == SetResult(False)
        assert store.incrby(b"gone", 1) == 1  # starts from 0 again
        assert store.pttl(b"gone") == -1

    def test_expired_keys_leave_scan_and_dbsize(self, store: Store) -> None:
        for i in range(20):
            store.set(b"t%d" % i, b"v", px=30)
        store.set(b"kept", b"v")
        assert wait_until(lambda: store.dbsize() == 1)
        cursor, seen = 0, []
        for _ in range(100):
            cursor, found = store.scan(cursor, None, 7)
            seen += found
            if cursor == 0:
                break
        assert seen == [b"kept"]

    # -- keyspace ---------------------------------------------------------------
    def test_dbsize_and_flushdb(self, store: Store) -> None:
        assert store.dbsize() == 0
        store.mset([(b"a", b"1"), (b"b", b"2")])
        store.set(b"c", b"3", px=100_000)
        assert store.dbsize() == 3
        store.flushdb()
        assert store.dbsize() == 0
        assert store.get(b"a") is None
        assert store.pttl(b"c") == -2

    def test_keys_glob(self, store: Store) -> None:
        store.mset([(k, b"v") for k in (b"user:1", b"user:22", b"usr", b"a*b", b"\xffbin")])
        assert sorted(store.keys(b"user:*")) == [b"user:1", b"user:22"]
        assert sorted(store.keys(b"user:?")) == [b"user:1"]
        assert sorted(store.keys(b"us[a-z]*")) == [b"user:1", b"user:22", b"usr"]
        assert store.keys(b"a\\*b") == [b"a*b"]
        assert store.keys(b"\xff*") == [b"\xffbin"]
        assert len(store.keys(b"*")) == 5
        assert store.keys(b"nothing*") == []

    def test_scan_visits_every_key(self, store: Store) -> None:
        expected = {b"key:%d" % i for i in range(500)}
        store.mset([(k, b"v") for k in expected])
        seen: set[bytes] = set()
        cursor = 0
        for _ in range(10_000):
            cursor, found = store.scan(cursor, None, 37)
            seen.update(found)
            if cursor == 0:
                break
        assert cursor == 0
        assert seen == expected

    def test_scan_match(self, store: Store) -> None:
        store.mset([(b"a%d" % i, b"v") for i in range(100)] + [(b"b%d" % i, b"v") for i in range(100)])
        seen: set[bytes] = set()
        cursor = 0
        for _ in range(10_000):
            cursor, found = store.scan(cursor, b"a*", 10)
            seen.update(found)
            if cursor == 0:
                break
        assert seen == {b"a%d" % i for i in range(100)}

    def test_scan_guarantee_under_concurrent_changes(self, store: Store) -> None:
        # Keys present for the whole scan are returned at least once, while
        # other keys are added and deleted between the calls.
        stable = {b"stable:%d" % i for i in range(300)}
        store.mset([(k, b"v") for k in stable] + [(b"churn:%d" % i, b"v") for i in range(300)])
        seen: set[bytes] = set()
        cursor = 0
        for step in range(1, 10_000):
            cursor, found = store.scan(cursor, None, 25)
            seen.update(found)
            store.delete([b"churn:%d" % (step * 7 % 300)])
            store.mset([(b"new:%d:%d" % (step, j), b"v") for j in range(30)])
            store.delete([b"new:%d:%d" % (step - 1, j) for j in range(30)])
            if cursor == 0:
                break
        assert cursor == 0
        assert stable <= seen

    def test_scan_rejects_bad_arguments(self, store: Store) -> None:
        with pytest.raises(StoreError):
            store.scan(0, None, 0)

    # -- atomicity: execute_batch (MULTI/EXEC) and run_grouped -------------------------
    # Keys share a hash tag so a Redis Cluster can run the batch in one slot.
    def test_batch_is_not_interleaved(self, store: Store) -> None:
        store.mset([(b"{p}x", b"0"), (b"{p}y", b"0")])
        stop = threading.Event()
        torn: list[list[object]] = []

        def reader(_: int) -> None:
            while not stop.is_set():
                x, y = store.execute_batch([lambda st: st.get(b"{p}x"),
                                            lambda st: st.get(b"{p}y")])
                if x != y:
                    torn.append([x, y])

        readers = threading.Thread(target=run_threads, args=(2, reader))
        readers.start()
        try:
            for _ in range(300):
                store.execute_batch([lambda st: st.incrby(b"{p}x", 1),
                                     lambda st: st.incrby(b"{p}y", 1)])
        finally:
            stop.set()
            readers.join(30)
        assert torn == []
        assert store.mget([b"{p}x", b"{p}y"]) == [b"300", b"300"]

    def test_batch_results_and_per_call_errors_in_order(self, store: Store) -> None:
        store.set(b"{t}s", b"text")
        results = store.execute_batch([
            lambda st: st.incrby(b"{t}n", 5),
            lambda st: st.incrby(b"{t}s", 1),          # fails alone, as in EXEC
            lambda st: st.set(b"{t}k", b"v", get=True),
            lambda st: st.get(b"{t}n"),
            lambda st: st.exists([b"{t}n", b"{t}k", b"{t}n"]),
            lambda st: st.delete([]),
            lambda st: st.mset([(b"{t}m", b"1")]),
            lambda st: st.pexpire(b"{t}k", 60_000),
        ])
        assert results[0] == 5
        assert isinstance(results[1], NotAnInteger)
        assert results[2:7] == [SetResult(True, None), b"5", 3, 0, None]
        assert results[7] is True
        assert store.get(b"{t}k") == b"v"
        assert store.execute_batch([]) == []

    def test_run_grouped_returns_what_the_function_returns(self, store: Store) -> None:
        def append(st: Store) -> bytes:
            value = (st.get(b"k") or b"") + b"x"
            st.set(b"k", value)
            return value

        assert store.run_grouped(append) == b"x"
        assert store.run_grouped(append) == b"xx"
        assert isinstance(store.isolates_groups, bool)

    def test_info_is_flat_with_string_keys(self, store: Store) -> None:
        info = store.info()
        assert all(isinstance(k, str) for k in info)
        assert all(isinstance(v, (int, float, str)) for v in info.values())
