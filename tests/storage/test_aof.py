"""The persistent embedded store: restart, torn tails, corruption, compaction,
group commit, disk full and kill -9 (the cases of redis tests/integration/aof.tcl)."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sockworks.storage import records
from sockworks.storage.aof import FSYNC_POLICIES, CorruptLogError
from sockworks.storage.base import SetResult, Store, StoreError, StoreWriteError
from sockworks.storage.embedded import AOF_FILENAME, PersistentStore, open_embedded_store
from tests.storage.store_contract import StoreContract, run_threads, wait_until

CHILD = Path(__file__).with_name("aof_child.py")


class TestPersistentStore(StoreContract):
    @pytest.fixture(params=FSYNC_POLICIES)
    def store(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
        s = open_embedded_store(str(tmp_path), request.param)
        yield s
        s.close()


class FakeClock:
    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def log_of(data_dir: Path) -> Path:
    return data_dir / AOF_FILENAME


def dump(store: Store) -> dict[bytes, tuple[bytes | None, int]]:
    """Every key with its value and TTL state (-1 none, else 1)."""
    return {k: (store.get(k), -1 if store.pttl(k) == -1 else 1) for k in store.keys(b"*")}


def write_keys(data_dir: Path, count: int) -> list[int]:
    """Write k0..k{count-1}, one record each; returns the file size after
    each record (the record boundaries)."""
    store = open_embedded_store(str(data_dir), "no", active_expiry=False)
    boundaries = []
    for i in range(count):
        store.set(b"k%d" % i, b"value-%d" % i)
        boundaries.append(os.path.getsize(log_of(data_dir)))
    store.close()
    return boundaries


def present(store: Store, count: int) -> list[int]:
    return [i for i in range(count) if store.get(b"k%d" % i) == b"value-%d" % i]


# -- restart ------------------------------------------------------------------------


@pytest.mark.parametrize("policy", FSYNC_POLICIES)
def test_restart_keeps_every_kind_of_write(tmp_path: Path, policy: str) -> None:
    store = open_embedded_store(str(tmp_path), policy)
    store.set(b"doomed", b"1")
    store.flushdb()
    store.set(b"plain", b"v")
    store.set(b"\xff\x00bin", bytes(range(256)))
    store.mset([(b"m1", b"a"), (b"m2", b"b"), (b"m3", b"c")])
    store.delete([b"m2"])
    store.incrby(b"n", 41)
    store.incrby(b"n", 1)
    store.set(b"ttl", b"t", px=600_000)
    store.set(b"persisted", b"p", px=600_000)
    store.persist(b"persisted")
    store.set(b"expired-later", b"x")
    store.pexpire(b"expired-later", 600_000)
    store.set(b"keep", b"k", px=600_000)
    store.set(b"keep", b"k2", keepttl=True)
    store.pexpire(b"m3", 0)
    store.set(b"nx", b"1", nx=True)
    store.set(b"nx", b"2", nx=True)  # not written: must not be logged either
    before = dump(store)
    store.close()

    reopened = open_embedded_store(str(tmp_path), policy)
    try:
        assert dump(reopened) == before
        assert reopened.get(b"n") == b"42"
        assert reopened.get(b"nx") == b"1"
        assert 0 < reopened.pttl(b"ttl") <= 600_000
        assert reopened.info()["aof_truncated_bytes"] == 0
    finally:
        reopened.close()


def test_expiry_survives_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    store = open_embedded_store(str(tmp_path), "no", clock=clock)
    store.set(b"short", b"v", px=10_000)
    store.set(b"long", b"v")
    store.pexpire(b"long", 50_000)
    store.close()

    clock.now += 4_000  # "the server was down for 4 s"
    store = open_embedded_store(str(tmp_path), "no", clock=clock)
    assert store.pttl(b"short") == 6_000
    assert store.pttl(b"long") == 46_000
    store.close()

    clock.now += 6_000
    store = open_embedded_store(str(tmp_path), "no", clock=clock)
    try:
        assert store.get(b"short") is None
        assert store.pttl(b"long") == 40_000
        assert store.dbsize() == 1
    finally:
        store.close()


def test_new_and_partly_created_logs_start_empty(tmp_path: Path) -> None:
    log_of(tmp_path).write_bytes(records.MAGIC[:3])  # crash while creating it
    store = open_embedded_store(str(tmp_path), "no")
    try:
        assert store.dbsize() == 0
        store.set(b"a", b"1")
    finally:
        store.close()
    assert log_of(tmp_path).read_bytes().startswith(records.MAGIC)


def test_data_dir_is_locked_against_a_second_store(tmp_path: Path) -> None:
    store = open_embedded_store(str(tmp_path), "no")
    try:
        with pytest.raises(StoreError, match="in use by another process"):
            open_embedded_store(str(tmp_path), "no")
        store.set(b"a", b"1")  # the refused second open left the first intact
    finally:
        store.close()
    again = open_embedded_store(str(tmp_path), "no")  # released on close
    again.close()


def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    store = open_embedded_store(str(tmp_path), "always")
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError):
        store.set(b"a", b"1")


# -- torn tail and corruption ------------------------------------------------------------


@pytest.mark.parametrize("where", ["last-byte", "in-header", "in-payload", "header-only"])
def test_torn_last_record_is_cut_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    bounds = write_keys(tmp_path, 10)
    cut = {
        "last-byte": bounds[-1] - 1,
        "in-header": bounds[-2] + 3,
        "in-payload": bounds[-2] + records.HEADER.size + 4,
        "header-only": bounds[-2] + records.HEADER.size,
    }[where]
    with open(log_of(tmp_path), "r+b") as f:
        f.truncate(cut)
    with caplog.at_level(logging.WARNING, logger="sockworks.storage.aof"):
        store = open_embedded_store(str(tmp_path), "no")
    try:
        assert any("torn last record" in r.getMessage() for r in caplog.records)
        assert present(store, 10) == list(range(9))
        assert os.path.getsize(log_of(tmp_path)) == bounds[-2]
        assert store.info()["aof_truncated_bytes"] == cut - bounds[-2]
        store.set(b"k9", b"value-9")  # appends after the repaired end
    finally:
        store.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sockworks.storage.aof"):
        store = open_embedded_store(str(tmp_path), "no")
    try:
        assert present(store, 10) == list(range(10))
        assert not caplog.records
    finally:
        store.close()


@pytest.mark.parametrize("length", [1, 7, 8, 100, 5000])
def test_random_garbage_appended_is_cut_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, length: int
) -> None:
    bounds = write_keys(tmp_path, 10)
    rng = random.Random(length)
    with open(log_of(tmp_path), "ab") as f:
        f.write(bytes(rng.randrange(256) for _ in range(length)))
    with caplog.at_level(logging.WARNING, logger="sockworks.storage.aof"):
        store = open_embedded_store(str(tmp_path), "no")
    try:
        assert any("torn last record" in r.getMessage() for r in caplog.records)
        assert present(store, 10) == list(range(10))
        assert os.path.getsize(log_of(tmp_path)) == bounds[-1]
    finally:
        store.close()


def test_bad_checksum_on_the_last_record_is_a_torn_tail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bounds = write_keys(tmp_path, 5)
    image = bytearray(log_of(tmp_path).read_bytes())
    image[-3] ^= 0xFF
    log_of(tmp_path).write_bytes(bytes(image))
    with caplog.at_level(logging.WARNING, logger="sockworks.storage.aof"):
        store = open_embedded_store(str(tmp_path), "no")
    try:
        assert present(store, 5) == [0, 1, 2, 3]
        assert os.path.getsize(log_of(tmp_path)) == bounds[-2]
    finally:
        store.close()


def corrupt(tmp_path: Path, offset: int, value: bytes) -> bytes:
    image = bytearray(log_of(tmp_path).read_bytes())
    image[offset : offset + len(value)] = value
    log_of(tmp_path).write_bytes(bytes(image))
    return bytes(image)


@pytest.mark.parametrize("damage", ["payload", "length", "crc", "zero-fill"])
def test_garbage_in_the_middle_refuses_to_start_and_keeps_the_file(
    tmp_path: Path, damage: str
) -> None:
    bounds = write_keys(tmp_path, 10)
    record = bounds[2]  # the 4th record starts here
    if damage == "payload":
        image = corrupt(tmp_path, record + records.HEADER.size + 6, b"\x00\xff")
    elif damage == "length":
        image = corrupt(tmp_path, record, b"\x05\x00\x00\x00")
    elif damage == "crc":
        image = corrupt(tmp_path, record + 4, b"\xde\xad\xbe\xef")
    else:
        image = corrupt(tmp_path, record, bytes(bounds[3] - record))
    with pytest.raises(CorruptLogError) as info:
        open_embedded_store(str(tmp_path), "no")
    assert info.value.offset == record
    assert str(log_of(tmp_path)) in str(info.value)
    assert f"byte {record}" in str(info.value)
    assert log_of(tmp_path).read_bytes() == image  # nothing on disk was lost
    # The refused start released the data dir lock: a second attempt reports
    # the same corruption, not "in use".
    with pytest.raises(CorruptLogError):
        open_embedded_store(str(tmp_path), "no")


def test_valid_checksum_with_unknown_op_refuses_to_start(tmp_path: Path) -> None:
    write_keys(tmp_path, 2)
    with open(log_of(tmp_path), "ab") as f:
        f.write(records.frame(b"Zjunk"))
    before = log_of(tmp_path).read_bytes()
    with pytest.raises(CorruptLogError, match="unknown op"):
        open_embedded_store(str(tmp_path), "no")
    assert log_of(tmp_path).read_bytes() == before


def test_not_a_log_refuses_to_start(tmp_path: Path) -> None:
    log_of(tmp_path).write_bytes(b"*2\r\n$3\r\nSET\r\n" * 10)
    with pytest.raises(CorruptLogError, match="bad signature"):
        open_embedded_store(str(tmp_path), "no")
    assert log_of(tmp_path).read_bytes() == b"*2\r\n$3\r\nSET\r\n" * 10


# -- compaction --------------------------------------------------------------------------


def test_compact_rewrites_live_data_only(tmp_path: Path) -> None:
    clock = FakeClock()
    store = open_embedded_store(str(tmp_path), "everysec", clock=clock)
    for i in range(2000):
        store.set(b"hot", b"%d" % i)
    store.mset([(b"k%d" % i, b"v") for i in range(50)])
    store.delete([b"k%d" % i for i in range(25)])
    store.set(b"ttl", b"t", px=60_000)
    store.set(b"dead", b"d", px=10)
    clock.now += 100
    before = os.path.getsize(log_of(tmp_path))
    status = store.compact()
    after = os.path.getsize(log_of(tmp_path))
    assert "compacted 27 keys" in status
    assert after < before / 10
    info = store.info()
    assert info["aof_rewrites"] == 1
    assert info["aof_size"] == info["aof_base_size"] == after
    store.set(b"post", b"p")  # appended to the new file
    expected = dump(store)
    store.close()
    assert not [n for n in os.listdir(tmp_path) if "rewrite" in n]
    reopened = open_embedded_store(str(tmp_path), "no", clock=clock)
    try:
        assert dump(reopened) == expected
        assert reopened.pttl(b"ttl") == 59_900  # absolute: the 100 ms passed count
        assert reopened.get(b"hot") == b"1999"
    finally:
        reopened.close()


@pytest.mark.parametrize("policy", ["always", "no"])
def test_compaction_under_concurrent_writes_keeps_every_write(
    tmp_path: Path, policy: str
) -> None:
    store = open_embedded_store(str(tmp_path), policy)
    store.mset([(b"base%d" % i, b"x" * 20) for i in range(20_000)])
    done = threading.Event()
    compactions = 0

    def writer(t: int) -> None:
        for n in range(1500):
            store.set(b"w%d:%d" % (t, n), b"%d" % n)
            store.incrby(b"total", 1)
            if n % 100 == 0:
                store.delete([b"base%d" % (t * 1000 + n)])

    def compactor() -> None:
        nonlocal compactions
        while not done.is_set() and compactions < 50:
            store.compact()
            compactions += 1

    thread = threading.Thread(target=compactor)
    thread.start()
    try:
        run_threads(8, writer)
    finally:
        done.set()
        thread.join(60)
    assert compactions >= 1
    store.compact()  # once more after the writers, so the last file is a rewrite
    expected = dump(store)
    assert store.get(b"total") == b"12000"
    store.close()
    reopened = open_embedded_store(str(tmp_path), policy)
    try:
        assert dump(reopened) == expected
        assert reopened.get(b"total") == b"12000"
        assert all(reopened.get(b"w%d:%d" % (t, n)) == b"%d" % n
                   for t in range(8) for n in range(1500))
    finally:
        reopened.close()


def test_auto_compaction_when_the_log_doubles(tmp_path: Path) -> None:
    store = PersistentStore(str(tmp_path), "no", auto_compact_min_size=20_000,
                            auto_compact_percentage=100)
    try:
        for i in range(3000):
            store.set(b"counter", b"%d" % i)
        assert wait_until(lambda: store.info()["aof_rewrites"] >= 1)
        assert wait_until(lambda: not store.info()["aof_rewrite_in_progress"])
        uncompacted = len(records.MAGIC) + sum(
            len(records.frame(records.encode_set(b"counter", b"%d" % i, 0))) for i in range(3000)
        )
        assert store.info()["aof_size"] < uncompacted - 20_000
    finally:
        store.close()
    reopened = open_embedded_store(str(tmp_path), "no")
    try:
        assert reopened.get(b"counter") == b"2999"
    finally:
        reopened.close()


# -- durability --------------------------------------------------------------------------


def test_group_commit_shares_fsyncs(tmp_path: Path) -> None:
    store = open_embedded_store(str(tmp_path), "always")
    results: list[bool] = []
    lock = threading.Lock()

    def client(t: int) -> None:
        for n in range(20):
            store.set(b"c%d:%d" % (t, n), b"v")
            barrier = store.durability_barrier()
            assert barrier is not None
            ok = barrier.wait(30)
            with lock:
                results.append(ok)

    try:
        run_threads(50, client)
        assert results == [True] * 1000
        info = store.info()
        assert info["aof_pending_barriers"] == 0
        assert info["aof_pending_fsync_bytes"] == 0
        # 50 clients waiting together share fsyncs: far fewer than writes.
        assert 1 <= info["aof_fsyncs"] < 1000
    finally:
        store.close()


def test_barrier_callbacks_run_once_with_the_result(tmp_path: Path) -> None:
    store = open_embedded_store(str(tmp_path), "always")
    try:
        store.set(b"a", b"1")
        barrier = store.durability_barrier()
        assert barrier is not None
        called: list[bool] = []
        fired = threading.Event()

        def callback(ok: bool) -> None:
            called.append(ok)
            fired.set()

        barrier.add_done_callback(callback)
        assert fired.wait(30)
        assert barrier.wait(30) is True
        late: list[bool] = []
        barrier.add_done_callback(late.append)  # already resolved: runs now
        assert called == [True] and late == [True]
        # Nothing new appended: the barrier is already resolved.
        assert store.durability_barrier() is not None
        assert store.durability_barrier().wait(0) is True  # type: ignore[union-attr]
    finally:
        store.close()


@pytest.mark.parametrize("policy", ["everysec", "no"])
def test_no_barrier_without_always(tmp_path: Path, policy: str) -> None:
    store = open_embedded_store(str(tmp_path), policy)
    try:
        store.set(b"a", b"1")
        assert store.durability_barrier() is None
        if policy == "everysec":  # the background thread catches up
            assert wait_until(lambda: store.info()["aof_pending_fsync_bytes"] == 0)
            assert store.info()["aof_fsyncs"] >= 1
    finally:
        store.close()


def test_disk_full_fails_writes_and_keeps_reads(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(CHILD), "diskfull", str(tmp_path)],
        capture_output=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    report = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert report["failed_key"], report
    assert "cannot write to the log" in report["error"]
    assert report["failed_key_present"] is False
    assert report["read_ok"] is True
    assert "compaction failed" in report["compact_error"]
    assert report["temp_files"] == []
    assert report["status_while_full"] == "err"
    # The partial record was cut off: the file ends on a record boundary.
    assert report["size_while_full"] == report["logged_size"]
    assert report["status_after"] == "ok"

    store = open_embedded_store(str(tmp_path), "no")
    try:
        assert store.info()["aof_truncated_bytes"] == 0
        assert store.get(b"before") == b"x" * 100
        for key in report["acked"]:
            assert store.get(key.encode()) == b"y" * 100
        assert store.get(report["failed_key"].encode()) is None
        assert store.get(b"after") == b"z"
    finally:
        store.close()


def test_kill_9_under_write_load_loses_no_acknowledged_write(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), "acked", str(tmp_path), "8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines: list[bytes] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read)
    reader.start()
    target = random.Random().randrange(300, 3000)
    try:
        wait_until(lambda: len(lines) >= target, timeout=45)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
        reader.join(30)
        stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    acked = [line.split() for line in lines if line.endswith(b"\n") and line != b"ready\n"]
    assert len(acked) > 100, stderr.decode(errors="replace")

    store = open_embedded_store(str(tmp_path), "always")
    try:
        counters: dict[bytes, int] = {}
        for key, counter in acked:
            t, n = key[1:].split(b":")
            assert store.get(key) == b"v" * (int(n) % 50), key
            name = b"counter:" + t
            counters[name] = max(counters.get(name, 0), int(counter))
        for name, value in counters.items():
            stored = store.get(name)
            assert stored is not None and int(stored) >= value
    finally:
        store.close()


def test_replay_loads_many_keys(tmp_path: Path) -> None:
    """A log of 100,000 records reloads completely (the 1,000,000-key timing
    is measured by hand; see docs/storage.md)."""
    store = open_embedded_store(str(tmp_path), "no", active_expiry=False)
    store.mset([(b"key:%d" % i, b"value:%d" % i) for i in range(100_000)])
    for i in range(0, 100_000, 2):
        store.set(b"key:%d" % i, b"v2:%d" % i)
    store.close()
    reopened = open_embedded_store(str(tmp_path), "no", active_expiry=False)
    try:
        assert reopened.dbsize() == 100_000
        assert reopened.get(b"key:4") == b"v2:4"
        assert reopened.get(b"key:5") == b"value:5"
        assert reopened.info()["aof_loaded_records"] == 50_001
    finally:
        reopened.close()


def swap_log_fd(store: Store, replacement: int) -> tuple[int, int]:
    """Put a real failing file (/dev/full, a pipe) where the log's descriptor
    is, with dup2: the store keeps using the same fd number, and the kernel
    returns the errors. Returns (fd, saved copy of the original)."""
    fd = store._aof._fd  # type: ignore[attr-defined]
    saved = os.dup(fd)
    os.dup2(replacement, fd)
    return fd, saved


def test_failed_write_changes_nothing_and_recovers(tmp_path: Path) -> None:
    store = open_embedded_store(str(tmp_path), "always")
    store.mset([(b"a", b"1"), (b"n", b"5"), (b"gone", b"x")])
    store.set(b"t", b"v", px=600_000)
    before = dump(store)
    full = os.open("/dev/full", os.O_WRONLY)
    fd, saved = swap_log_fd(store, full)
    try:
        writes: list[Callable[[], object]] = [
            lambda: store.set(b"a", b"2"),
            lambda: store.set(b"new", b"v", px=1000),
            lambda: store.mset([(b"a", b"3"), (b"b", b"4")]),
            lambda: store.delete([b"gone"]),
            lambda: store.incrby(b"n", 1),
            lambda: store.pexpire(b"a", 1000),
            lambda: store.pexpire(b"a", 0),
            lambda: store.persist(b"t"),
            lambda: store.flushdb(),
        ]
        for write in writes:
            with pytest.raises(StoreWriteError, match="No space left on device"):
                write()
        assert dump(store) == before  # nothing changed, reads work
        assert store.info()["aof_last_write_status"] == "err"
        assert store.set(b"a", b"2", nx=True) == SetResult(False)  # no-op: no write needed
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(full)
    store.set(b"after", b"ok")  # the disk has room again: no restart needed
    barrier = store.durability_barrier()
    assert barrier is not None and barrier.wait(30)
    assert store.info()["aof_last_write_status"] == "ok"
    store.close()
    reopened = open_embedded_store(str(tmp_path), "no")
    try:
        assert dump(reopened) == {**before, b"after": (b"ok", -1)}
    finally:
        reopened.close()


def test_failed_fsync_fails_barriers_and_disables_writes(tmp_path: Path) -> None:
    store = open_embedded_store(str(tmp_path), "always")
    store.set(b"kept", b"1")
    barrier = store.durability_barrier()
    assert barrier is not None and barrier.wait(30)
    read_end, write_end = os.pipe()  # fsync on a pipe fails with EINVAL
    fd, saved = swap_log_fd(store, write_end)
    try:
        store.set(b"lost", b"2")  # write() to the pipe works...
        barrier = store.durability_barrier()
        assert barrier is not None
        assert barrier.wait(30) is False  # ...but it never became durable
        with pytest.raises(StoreWriteError, match="writes disabled: fsync failed"):
            store.set(b"more", b"3")
        assert store.get(b"kept") == b"1"  # reads keep working
        info = store.info()
        assert info["aof_writes_disabled"] == 1
        assert "fsync failed" in info["aof_last_write_error"]
        late = store.durability_barrier()
        assert late is not None and late.wait(0) is False
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(read_end)
        os.close(write_end)
        store.close()
    reopened = open_embedded_store(str(tmp_path), "no")
    try:
        assert reopened.get(b"kept") == b"1"
        assert reopened.get(b"more") is None
    finally:
        reopened.close()


def test_leftover_rewrite_files_are_removed_at_start(tmp_path: Path) -> None:
    write_keys(tmp_path, 3)
    (tmp_path / f"{AOF_FILENAME}.rewrite-12345").write_bytes(records.MAGIC + b"partial")
    store = open_embedded_store(str(tmp_path), "no")
    try:
        assert present(store, 3) == [0, 1, 2]
        assert sorted(os.listdir(tmp_path)) == [AOF_FILENAME, "sockworks.lock"]
    finally:
        store.close()
