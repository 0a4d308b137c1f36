"""The embedded default store: MemoryStore plus an append-only log in a data dir.

``open_embedded_store(None)`` is a plain in-memory store;
``open_embedded_store(DIR, fsync)`` replays ``DIR/sockworks.aof`` and logs
every write to it before applying it (write-ahead, under the store lock), so a
write that cannot be logged raises StoreWriteError and changes nothing.

Compaction rewrites the log from live data without blocking clients for the
rewrite: under the lock it copies the dicts (a C-speed copy) and starts a side
buffer of new records; the copy is written to a temp file with no lock held;
then, under the lock again, the side buffer is appended, the file fsynced and
renamed over the log, and the directory fsynced. It runs on ``compact()``
(the COMPACT command) and automatically when the log reaches
``AUTO_COMPACT_MIN_SIZE`` and has grown ``AUTO_COMPACT_PERCENTAGE`` percent
past its size after the last rewrite (Redis's auto-aof-rewrite-min-size 64mb
and auto-aof-rewrite-percentage 100).

One process per data dir: an flock on ``DIR/sockworks.lock`` refuses a second
server on the same files, which would interleave two logs into garbage.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

from sockworks.core.service import Barrier
from sockworks.storage import records
from sockworks.storage.aof import FSYNC_POLICIES, AppendOnlyLog, CorruptLogError, load_log
from sockworks.storage.base import RewriteInProgress, Store, StoreError, StoreWriteError
from sockworks.storage.eviction import DEFAULT_SAMPLES
from sockworks.storage.memory import MemoryStore, wall_clock_ms
from sockworks.storage.model.values import Value, copy_value
from sockworks.storage.records import (
    RecordError,
    encode_command,
    encode_expireat,
    encode_set,
    value_commands,
)

__all__ = [
    "AOF_FILENAME",
    "AUTO_COMPACT_MIN_SIZE",
    "AUTO_COMPACT_PERCENTAGE",
    "PersistentStore",
    "open_embedded_store",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

AOF_FILENAME = "sockworks.aof"
LOCK_FILENAME = "sockworks.lock"
#: Do not bother compacting a log smaller than this (Redis: 64mb).
AUTO_COMPACT_MIN_SIZE = 64 * 1024 * 1024
#: ... or one that has grown less than this percentage since the last rewrite.
AUTO_COMPACT_PERCENTAGE = 100
#: After a failed automatic rewrite (disk full), wait this long before the
#: next attempt instead of retrying on every write.
AUTO_COMPACT_RETRY_DELAY = 60.0


def _lock_data_dir(data_dir: str) -> TextIO:
    path = os.path.join(data_dir, LOCK_FILENAME)
    handle = open(path, "a+", encoding="ascii")  # noqa: SIM115 - held open for the lock
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise StoreError(
            f"data dir {data_dir} is in use by another process (pid {holder})"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _remove_leftovers(data_dir: str) -> None:
    """Delete temp files of a rewrite or log creation that a crash
    interrupted: never renamed, so never part of the data (we hold the lock,
    so no other process is writing them)."""
    for name in os.listdir(data_dir):
        if name.startswith(AOF_FILENAME + ".rewrite-") or name == AOF_FILENAME + ".new":
            logger.info("removing %s left by an interrupted rewrite", name)
            os.unlink(os.path.join(data_dir, name))


def _snapshot_payload(key: bytes, value: Value, at: int) -> bytes:
    """One key of a compacted log in its shortest form: a SET, or one
    RPUSH/HSET/SADD/ZADD with every element, plus its expiry."""
    if value.__class__ is bytes:
        return encode_set(key, value, at)
    payload = b"".join(encode_command(cmd) for cmd in value_commands(key, value))
    return payload + encode_expireat(key, at) if at else payload


class PersistentStore(MemoryStore):
    """MemoryStore whose writes go to an append-only log first."""

    def __init__(
        self,
        data_dir: str,
        fsync: str = "everysec",
        *,
        clock: Callable[[], int] = wall_clock_ms,
        auto_compact_min_size: int = AUTO_COMPACT_MIN_SIZE,
        auto_compact_percentage: int = AUTO_COMPACT_PERCENTAGE,
        maxmemory: int = 0,
        maxmemory_policy: str = "noeviction",
        maxmemory_samples: int = DEFAULT_SAMPLES,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {', '.join(FSYNC_POLICIES)}")
        super().__init__(clock=clock, maxmemory=maxmemory, maxmemory_policy=maxmemory_policy,
                         maxmemory_samples=maxmemory_samples)
        os.makedirs(data_dir, exist_ok=True)
        self.data_dir = data_dir
        self._auto_min = auto_compact_min_size
        self._auto_pct = auto_compact_percentage
        path = os.path.join(data_dir, AOF_FILENAME)
        self._dir_lock = _lock_data_dir(data_dir)
        try:
            _remove_leftovers(data_dir)
            started = time.monotonic()
            loaded = load_log(path)
            try:
                self._replay(loaded.image, loaded.spans)
            except RecordError as exc:
                offset = exc.args[1] if len(exc.args) > 1 else 0
                raise CorruptLogError(path, offset, str(exc.args[0])) from None
            self._load_seconds = time.monotonic() - started
            self._loaded_records = len(loaded.spans)
            self._truncated = loaded.truncated
            del loaded
            self._aof = AppendOnlyLog(path, os.path.getsize(path), fsync)
        except BaseException:
            self._dir_lock.close()
            raise
        self._persistent = True
        #: Payloads of the run_isolated group in progress (None: none).
        self._group_log: list[bytes] | None = None
        self._group_bytes = 0
        self._closing = False
        self._compact_lock = threading.Lock()
        self._compact_thread: threading.Thread | None = None
        self._compacting = False
        self._compactions = 0
        self._compact_status = "never"
        self._compact_failed_at = -AUTO_COMPACT_RETRY_DELAY
        logger.info(
            "%s: loaded %d keys from %d records in %.3f s (fsync=%s)",
            path, len(self._data), self._loaded_records, self._load_seconds, fsync,
        )

    # -- the write-ahead hook (store lock held) -----------------------------
    def _log(self, payload: bytes) -> None:
        group = self._group_log
        if group is not None:
            # Inside run_isolated: collected, written as one record at the end.
            self._aof.check_writable()
            self._group_bytes += len(payload)
            if self._group_bytes > records.MAX_PAYLOAD:
                raise StoreWriteError("writes of one script or transaction exceed one log "
                                      "record")
            group.append(payload)
            return
        self._append(payload)

    def run_isolated(self, fn: Callable[[Store], T]) -> T:
        """``fn`` under the lock; its writes are logged as ONE record after
        it returns (or raises): replay applies all of them or none. Each
        write is applied as it is made (``fn`` reads its own writes), so if
        that record cannot be written, memory holds changes the log does
        not: the log then refuses every write until a restart, which
        replays the state before ``fn``."""
        with self._lock:
            if self._group_log is not None:
                return fn(self)  # nested: the outer group logs
            self._group_log, self._group_bytes = [], 0
            # A group, as in MemoryStore.run_grouped: clients blocked on
            # keys it pushed to are served once it is over and logged (their
            # pops are records of their own, after it).
            self._depth += 1
            try:
                try:
                    return fn(self)
                finally:
                    payloads, self._group_log = self._group_log, None
                    if payloads:
                        try:
                            self._append(b"".join(payloads))
                        except StoreWriteError as exc:
                            self._aof.fail(f"a script's or transaction's writes could not "
                                           f"be logged ({exc})")
                            raise
            finally:
                self._depth -= 1
                if self._signalled and not self._depth:
                    self._settle()

    def _append(self, payload: bytes) -> None:
        size = self._aof.append(payload)
        if (
            size >= self._auto_min
            and size * 100 >= self._aof.base_size * (100 + self._auto_pct)
            and not self._compacting
            and not self._closing
            and time.monotonic() - self._compact_failed_at >= AUTO_COMPACT_RETRY_DELAY
        ):
            logger.info("%s: log grew to %d bytes, compacting", self._aof.path, size)
            self._spawn_compaction("automatic compaction")

    def _spawn_compaction(self, what: str) -> None:
        """Rewrite in a background thread (store lock held by the caller)."""
        self._compacting = True  # claimed here so one request starts one rewrite
        self._compact_thread = threading.Thread(
            target=self._background_compact, args=(what,), name="sockworks-aof-rewrite",
            daemon=True,
        )
        self._compact_thread.start()

    def _background_compact(self, what: str) -> None:
        try:
            logger.info("%s: %s", what, self.compact())
        except StoreError as exc:
            logger.error("%s failed: %s", what, exc)

    def start_compaction(self) -> str:
        """COMPACT: like Redis's BGREWRITEAOF, rewrite in the background; the
        outcome is logged and shown by STATS/INFO (aof_rewrites, ...). While
        a rewrite runs (started by anyone, or automatic), RewriteInProgress:
        a client repeating COMPACT cannot chain rewrites back to back."""
        with self._lock:
            self._check_open()
            if self._closing:
                raise StoreError("store is closing")
            if self._compacting:
                raise RewriteInProgress()
            self._spawn_compaction("COMPACT")
        return "compaction started"

    def durability_barrier(self) -> Barrier | None:
        return self._aof.barrier()

    def batch_log_writes(self) -> None:
        self._aof.batching = True
        # Asked for once per output with writes: straight to the log's.
        self.durability_barrier = self._aof.barrier  # type: ignore[method-assign]

    # -- compaction ------------------------------------------------------------
    def compact(self) -> str:
        if not self._compact_lock.acquire(blocking=False):
            return "compaction already in progress"
        try:
            return self._compact()
        finally:
            with self._lock:
                self._compacting = False
            self._compact_lock.release()

    def _compact(self) -> str:
        started = time.monotonic()
        with self._lock:
            self._check_open()
            if self._closing:
                raise StoreError("store is closing")
            self._compacting = True
            now = self._clock()
            data = self._data.copy()
            # Strings are immutable; aggregates are copied here, under the
            # lock (O(their size)), since commands change them in place.
            for key in self._aggregates:
                data[key] = copy_value(data[key])
            expires = self._expires.copy()
            assert self.function_libraries is not None
            libraries = self.function_libraries.snapshot()
            before = self._aof.size
            self._aof.begin_rewrite()
        items = itertools.chain(libraries, (
            _snapshot_payload(k, v, expires.get(k, 0))
            for k, v in data.items()
            if not (k in expires and expires[k] <= now)
        ))
        try:
            tmp, count = self._aof.write_snapshot(items)
            with self._lock:
                size, satisfied = self._aof.finish_rewrite(tmp)
            for barrier in satisfied:
                barrier.resolve(True)
        except OSError as exc:
            with self._lock:
                self._aof.abort_rewrite()
                self._compact_failed_at = time.monotonic()
                self._compact_status = f"failed: {exc.strerror or exc}"
            logger.error("%s: compaction failed: %s", self._aof.path, exc)
            raise StoreWriteError(f"compaction failed: {exc.strerror or exc}") from None
        elapsed = time.monotonic() - started
        status = f"compacted {count} keys: {before} -> {size} bytes in {elapsed:.3f} s"
        with self._lock:
            self._compactions += 1
            self._compact_status = "ok"
        return status

    # -- administration ------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        info = super().info()
        with self._lock:
            info.update(self._aof.info())
            info.update(
                persistence="aof",
                aof_loaded_records=self._loaded_records,
                aof_load_seconds=round(self._load_seconds, 3),
                aof_truncated_bytes=self._truncated,
                aof_rewrite_in_progress=int(self._compacting),
                aof_rewrites=self._compactions,
                aof_last_rewrite_status=self._compact_status,
            )
        return info

    def close(self) -> None:
        if self.script_gate is not None:  # a running script holds the lock
            self.script_gate.stop()
        self.stop_expiry()
        with self._lock:
            if self._closed or self._closing:
                return
            self._closing = True
            thread = self._compact_thread
        if thread is not None:
            thread.join()
        # Also waits for a compact() running in a client's thread.
        with self._compact_lock:
            with self._lock:
                self._closed = True  # no write can append after this
            # Outside the store lock: the final fsync resolves barriers, and
            # their callbacks must never run under it.
            self._aof.close()
        self._dir_lock.close()


def open_embedded_store(
    data_dir: str | None,
    fsync: str = "everysec",
    *,
    active_expiry: bool = True,
    **options: Any,
) -> MemoryStore:
    """The store ``serve kv`` runs on: in memory, persistent with a data dir.

    Raises CorruptLogError (a StoreError) when the log is damaged in the
    middle, StoreError when another process holds the data dir, and
    ValueError for an unknown fsync policy or memory setting. ``active_expiry``
    starts the background expiry sweeper; ``close()`` stops it. ``options``
    go to the store: ``maxmemory=`` (bytes, 0 no limit),
    ``maxmemory_policy=`` (eviction.POLICIES), ``maxmemory_samples=``,
    ``clock=``, and for a data dir the auto-compaction thresholds.
    """
    if fsync not in FSYNC_POLICIES:
        raise ValueError(f"fsync policy must be one of {', '.join(FSYNC_POLICIES)}")
    store: MemoryStore
    if data_dir is None:
        store = MemoryStore(**options)
    else:
        store = PersistentStore(data_dir, fsync, **options)
    if active_expiry:
        store.start_expiry()
    return store
