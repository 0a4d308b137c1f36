"""The append-only log file: load (with torn-tail repair), append, fsync, rewrite.

Record format: records.py and docs/storage.md. This module owns the file
descriptor and the durability machinery; the store (embedded.py) owns the
lock that orders writes. Lock order: store lock -> ``_fsync_lock`` ->
``_cond``; the flusher threads never take the store lock.

fsync policies, with Redis's meanings (appendfsync):

* ``always``: a write is acknowledged only once fsynced. Writers append under
  the store lock and take a :class:`DurabilityBarrier` for the log position
  they reached; one flusher thread fsyncs everything appended so far and
  resolves every barrier up to that point (group commit: 50 concurrent
  writers share fsyncs instead of paying 50).
* ``everysec``: a background thread fsyncs once a second if anything is new.
* ``no``: the kernel writes back when it likes.

Batching (``AppendOnlyLog.batching``, switched on by a service a server runs,
as Redis does it): ``append`` only frames the record into a buffer, and the
barrier a session takes after its writes is what writes it. An event-loop
model calls :meth:`DurabilityBarrier.flush` once at the end of a loop
iteration: ONE ``write()`` for every record of that iteration (all
connections) before any of those replies is sent; under ``always`` the
replies also wait for the flusher thread's fsync, which covers every batch
written while the previous fsync ran (group commit across iterations: the
loop keeps reading and writing the next batches meanwhile; fsyncing in the
loop itself, as Redis's ``beforeSleep`` does, measured half as fast on a
disk with 6 ms fsyncs because nothing overlaps the disk). A thread model's
``wait()`` writes what is buffered (one write per chunk a thread handled,
plus whatever other threads buffered meanwhile) and, under ``always``,
waits for the same flusher.
A failed batch write resolves every barrier the batch covered False with the
error (each of those writes gets an error reply, none is acknowledged); the
batch stays buffered, since its writes are already applied in memory, and
the next write retries it first: while it still fails, new writes are
refused before they change anything (Redis's MISCONF), so the retained batch
is bounded and the log never misses a write that memory holds.

A failed write() is undone (the file is cut back to the last whole record,
so no torn record is left in the middle for a later write to bury) and
raises StoreWriteError; the next write tries again, so a disk that frees up
recovers by itself. A failed fsync is sticky: after it the kernel may have
dropped the dirty pages and cleared the error ("fsyncgate", PostgreSQL
2018), so a retry that succeeds proves nothing. Every pending barrier
resolves False and every later write raises StoreWriteError until the
process is restarted and replays what is really on disk.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import threading
from collections.abc import Callable, Iterable

from sockworks.storage import records
from sockworks.storage.base import StoreError, StoreWriteError

__all__ = [
    "FSYNC_POLICIES",
    "DEFAULT_FSYNC",
    "AppendOnlyLog",
    "CorruptLogError",
    "DurabilityBarrier",
    "LoadedLog",
    "load_log",
]

logger = logging.getLogger(__name__)

FSYNC_POLICIES = ("always", "everysec", "no")
#: Redis's appendfsync default: at most about a second of writes lost on a
#: power failure, at a fraction of the cost of an fsync per write.
DEFAULT_FSYNC = "everysec"
#: Period of the everysec flusher (Redis: once per second).
EVERYSEC_INTERVAL = 1.0
#: Buffer for writing a compacted log: large sequential writes.
REWRITE_BUFFER_BYTES = 1 << 20
# Bound once: append() runs for every write.
_frame = records.frame
_MAX_PAYLOAD = records.MAX_PAYLOAD


class CorruptLogError(StoreError):
    """The log is damaged before its end: valid records follow a bad one.

    This is not a crash-torn tail, so the store refuses to start rather than
    drop the records after the damage; the file is left exactly as it was.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(
            f"{path}: corrupt record at byte {offset} ({reason}); valid records follow it, "
            "so this is not a torn tail from a crash. Refusing to start; the file was "
            "not modified (restore it from a backup or cut it at that offset by hand)"
        )
        self.path = path
        self.offset = offset


#: Guards every barrier's state (sections are a few instructions long, so
#: one lock for all costs less than creating a lock per write).
_BARRIER_LOCK = threading.Lock()


class DurabilityBarrier:
    """Resolves True once the log is fsynced up to ``seq`` (False if it failed).

    Implements core.service.Barrier. One is made per acknowledged batch of
    writes under ``always``, so it is kept light: the Event a blocking
    waiter needs is only created if somebody waits (event-loop models use
    callbacks instead).
    """

    __slots__ = ("_callbacks", "_event", "_log", "_state", "error", "seq")

    def __init__(self, seq: int, log: AppendOnlyLog | None = None) -> None:
        self.seq = seq
        #: The log whose buffered records this barrier guards (batching), or None.
        self._log = log
        self._state: bool | None = None
        self._event: threading.Event | None = None
        self._callbacks: list[Callable[[bool], None]] = []
        #: Why it failed (the text a client's error reply carries).
        self.error = ""

    def resolve(self, ok: bool, error: str = "") -> None:
        with _BARRIER_LOCK:
            if self._state is not None:
                return
            self._state = ok
            if not ok:
                self.error = error or "the write could not be made durable"
            event = self._event
            callbacks, self._callbacks = self._callbacks, []
        if event is not None:
            event.set()
        for fn in callbacks:
            fn(ok)

    @property
    def done(self) -> bool:
        return self._state is not None

    def flush(self) -> bool | None:
        """Write what this barrier guards now, in this thread (an event
        loop's end of iteration: one write for every barrier it covers); its
        result, or None while the fsync ``always`` needs is still running
        (in the flusher thread: ``add_done_callback`` says when)."""
        if self._state is None and self._log is not None:
            self._log.flush(inline_fsync=False)
        return self._state

    def wait(self, timeout: float | None = None) -> bool:
        if self._state is None and self._log is not None:
            # Batching: write the buffered records (one write for this
            # thread's chunk and whatever else is buffered); under always
            # the flusher's group commit resolves the barrier.
            self._log.flush(inline_fsync=False)
        with _BARRIER_LOCK:
            if self._state is not None:
                return self._state
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        if not event.wait(timeout):
            return False
        return bool(self._state)

    def add_done_callback(self, fn: Callable[[bool], None]) -> None:
        with _BARRIER_LOCK:
            state = self._state
            if state is None:
                self._callbacks.append(fn)
        if state is None:
            if self._log is not None:
                self._log.flush(inline_fsync=False)
            return
        fn(state)


def _resolved(ok: bool, error: str = "") -> DurabilityBarrier:
    barrier = DurabilityBarrier(0)
    barrier.resolve(ok, error)
    return barrier


#: Barriers for "already durable" / "can never be": shared, immutable once resolved.
_DURABLE = _resolved(True)
_FAILED = _resolved(False, "the write could not be made durable")


def fsync_dir(path: str) -> None:
    """Make a rename or create in ``path`` durable (POSIX needs the dir fsynced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LoadedLog:
    """A log file read at start-up: its bytes and where its records are."""

    def __init__(self, path: str, image: bytes, spans: list[tuple[int, int]], end: int,
                 truncated: int) -> None:
        self.path = path
        self.image = image
        self.spans = spans
        self.end = end
        self.truncated = truncated


def load_log(path: str) -> LoadedLog:
    """Read the log at ``path`` (creating it if missing) and repair a torn tail.

    Raises CorruptLogError, without touching the file, when damage is
    followed by valid records.
    """
    magic = records.MAGIC
    try:
        with open(path, "rb") as f:
            image = f.read()
    except FileNotFoundError:
        image = b""
    if len(image) < len(magic) and magic.startswith(image):
        # New, or a crash while creating it: nothing was ever logged.
        _create(path)
        return LoadedLog(path, magic, [], len(magic), 0)
    if not image.startswith(magic):
        raise CorruptLogError(path, 0, "not a sockworks log: bad signature")
    scan = records.scan_log(image)
    if scan.corrupt_at is not None:
        raise CorruptLogError(path, scan.corrupt_at, "bad length or checksum")
    truncated = 0
    if scan.torn:
        truncated = len(image) - scan.good_end
        logger.warning(
            "%s: torn last record at byte %d (%d bytes, a crash mid-write?): cutting it off "
            "and starting with the %d complete records before it",
            path, scan.good_end, truncated, len(scan.records),
        )
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, scan.good_end)
            os.fsync(fd)
        finally:
            os.close(fd)
    return LoadedLog(path, image, scan.records, scan.good_end, truncated)


def _create(path: str) -> None:
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(records.MAGIC)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fsync_dir(os.path.dirname(os.path.abspath(path)))
    except OSError as exc:  # some filesystems cannot fsync a directory
        logger.warning("%s: fsync of the directory failed: %s", path, exc)


class AppendOnlyLog:
    """An open log: append records, fsync by policy, resolve barriers, rewrite."""

    def __init__(self, path: str, size: int, fsync: str) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {', '.join(FSYNC_POLICIES)}")
        self.path = path
        self.policy = fsync
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._size = size
        self._base_size = size
        #: _cond's own lock, taken directly on the per-write paths (a
        #: Condition's ``with`` is a Python-level call, the lock's is not).
        self._state_lock = threading.Lock()
        self._cond = threading.Condition(self._state_lock)
        self._fsync_lock = threading.Lock()
        # Sequence numbers are bytes ever appended in this process, so they
        # keep growing across a rewrite that shrinks the file.
        self._appended = 0        # written to the file
        self._synced = 0
        #: Bytes ever handed to append(): equal to _appended unless batching.
        self._queued = 0
        #: Batching (module docstring): records framed but not yet written,
        #: a failed batch kept for the retry, and the barriers waiting for
        #: their records to be written. _write_lock orders the writes.
        self.batching = False
        self._buf: list[bytes] = []
        self._retry = b""
        self._unwritten: collections.deque[DurabilityBarrier] = collections.deque()
        self._write_lock = threading.Lock()
        #: The batch write and the fsync (seams: tests count calls, inject
        #: ENOSPC, or look at what clients received when they happen).
        self._os_write: Callable[[int, bytes], int] = os.write
        self._os_fsync: Callable[[int], None] = os.fsync
        self._waiters: collections.deque[DurabilityBarrier] = collections.deque()
        self._failed: str | None = None
        self._last_error: str = ""
        self._fsyncs = 0
        self._rewrite_buf: list[bytes] | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        if fsync == "always":
            self._thread = threading.Thread(target=self._flush_always, name="sockworks-aof-fsync",
                                            daemon=True)
        elif fsync == "everysec":
            self._thread = threading.Thread(target=self._flush_everysec,
                                            name="sockworks-aof-fsync", daemon=True)
        if self._thread is not None:
            self._thread.start()

    # -- appending (store lock held) --------------------------------------
    def append(self, payload: bytes) -> int:
        """Log ``payload`` (store lock held); the log's size after it, what
        is still buffered included."""
        if self._failed is not None:
            raise StoreWriteError(f"writes disabled: {self._failed}; restart to recover")
        if self._fd < 0:
            raise StoreWriteError("the log is closed")
        if len(payload) > _MAX_PAYLOAD:
            # Replay would take a longer record for damage: refuse it now.
            raise StoreWriteError("write too large for one log record")
        record = _frame(payload)
        size = len(record)
        if self.batching:
            if self._retry:
                # A failed batch waits (its writes are in memory): it goes
                # first, and while it cannot be written this write is
                # refused before it changes anything.
                error, _ = self._write_pending()
                if error is not None:
                    raise StoreWriteError(error)
            # Appends are serialised by the store lock; _write_pending takes
            # from the front of the list only (each list operation is atomic).
            self._buf.append(record)
            self._queued += size
            if self._rewrite_buf is not None:
                self._rewrite_buf.append(record)
            return self._size + self._queued - self._appended
        written = 0
        try:
            written = os.write(self._fd, record)
            while written < size:  # a short write (rare): finish the record
                written += os.write(self._fd, record[written:])
        except OSError as exc:
            self._undo_partial(written)
            self._last_error = f"{exc.strerror or exc} (errno {exc.errno})"
            logger.error("%s: write failed: %s", self.path, self._last_error)
            raise StoreWriteError(f"cannot write to the log: {exc.strerror or exc}") from None
        self._size += size
        if self._rewrite_buf is not None:
            self._rewrite_buf.append(record)
        # No _cond here: appends are serialised by the store lock, so this is
        # the only writer, and readers (the flusher, barrier()) take the
        # count under _cond after the append that produced it returned.
        self._appended += size
        self._queued += size
        if self._last_error:
            self._last_error = ""
        return self._size

    def _write_pending(self) -> tuple[str | None, int]:
        """Write every buffered record with one write() (batching). Returns
        (None, end) or (the error a client is told, the end of the batch
        that failed); a failed batch is kept and retried first next time."""
        with self._write_lock:
            if self._failed is not None:
                return f"writes disabled: {self._failed}; restart to recover", self._queued
            if self._fd < 0:
                return "the log is closed", self._queued
            buf = self._buf
            count = len(buf)
            if not count and not self._retry:
                return None, self._appended
            taken = buf[:count]
            del buf[:count]
            data = b"".join(taken)
            if self._retry:
                data = self._retry + data
            size = len(data)
            written = 0
            try:
                write = self._os_write
                written = write(self._fd, data)
                while written < size:  # a short write (rare): finish the batch
                    written += write(self._fd, data[written:])
            except OSError as exc:
                self._undo_partial(written)
                self._retry = data
                self._last_error = f"{exc.strerror or exc} (errno {exc.errno})"
                logger.error("%s: write failed: %s", self.path, self._last_error)
                return (f"cannot write to the log: {exc.strerror or exc}",
                        self._appended + size)
            self._retry = b""
            self._size += size
            with self._state_lock:
                self._appended += size
                end = self._appended
            if self._last_error:
                self._last_error = ""
            return None, end

    def flush(self, *, inline_fsync: bool) -> None:
        """Write the buffered records, then resolve the barriers they cover:
        True (under ``always``: after an fsync, in this thread when
        ``inline_fsync``, else the flusher's group commit), or False with
        the error when the write failed."""
        error, end = self._write_pending()
        done: list[DurabilityBarrier] = []
        failed: list[DurabilityBarrier] = []
        always = self.policy == "always"
        with self._cond:
            written = self._appended
            pending = self._unwritten
            if error is None:
                while pending and pending[0].seq <= written:
                    if always:
                        self._waiters.append(pending.popleft())
                    else:
                        done.append(pending.popleft())
            else:
                if self._failed is not None or self._fd < 0:
                    end = self._queued  # nothing will ever be written
                while pending and pending[0].seq <= end:
                    failed.append(pending.popleft())
            fsync = always and bool(self._waiters)
            if fsync and not inline_fsync:
                self._cond.notify()
        for barrier in done:
            barrier.resolve(True)
        for barrier in failed:
            barrier.resolve(False, error or "")
        if fsync and inline_fsync:
            self._fsync_upto(written)

    def _undo_partial(self, written: int) -> None:
        """Cut off a partly written record so the file ends on a record
        boundary (RLIMIT_FSIZE and ENOSPC both allow a short write first)."""
        if not written:
            return
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as exc:
            self._failed = f"cannot cut a partial record off the log: {exc.strerror}"
            logger.error("%s: %s", self.path, self._failed)

    # -- durability ------------------------------------------------------------
    def barrier(self) -> DurabilityBarrier | None:
        """A barrier for everything appended so far (``always`` only)."""
        if self.batching:
            return self._batch_barrier()
        if self.policy != "always":
            return None
        with self._cond:
            if self._failed is not None:
                return _resolved(False, f"writes disabled: {self._failed}")
            if self._appended <= self._synced:
                return _DURABLE
            barrier = DurabilityBarrier(self._appended)
            self._waiters.append(barrier)
            self._cond.notify()
            return barrier

    def _batch_barrier(self) -> DurabilityBarrier:
        """A barrier for everything appended so far, to flush (batching).

        One barrier per batch, not per caller: while the newest one still
        waits for its write, later callers share it and its ``seq`` grows to
        cover their records too (a loop iteration's 50 replies resolve with
        one barrier). A flush that took the buffer before the growth leaves
        it unresolved, and its next flush writes the rest."""
        with self._state_lock:
            if self._failed is not None:
                return _resolved(False, f"writes disabled: {self._failed}; restart to recover")
            seq = self._queued
            if seq <= self._appended:
                if self.policy != "always" or seq <= self._synced:
                    return _DURABLE
                barrier = DurabilityBarrier(seq, self)
                self._waiters.append(barrier)  # written: only the fsync is missing
                return barrier
            pending = self._unwritten
            if pending and pending[-1]._state is None:
                barrier = pending[-1]
                barrier.seq = seq
                return barrier
            barrier = DurabilityBarrier(seq, self)
            pending.append(barrier)
            return barrier

    def _fsync_upto(self, target: int) -> None:
        """fsync, then resolve every barrier the fsync covered."""
        with self._fsync_lock:
            ok = self._failed is None and self._fd >= 0
            if ok and self._synced >= target:
                pass  # an fsync that finished meanwhile covered it (group commit)
            elif ok:
                try:
                    self._os_fsync(self._fd)
                except OSError as exc:
                    ok = False
                    self._failed = f"fsync failed: {exc.strerror or exc}"
                    self._last_error = self._failed
                    logger.error("%s: %s; refusing further writes", self.path, self._failed)
            with self._cond:
                self._fsyncs += ok
                if ok:
                    self._synced = max(self._synced, target)
                done: list[DurabilityBarrier] = []
                while self._waiters and (not ok or self._waiters[0].seq <= self._synced):
                    done.append(self._waiters.popleft())
        error = "" if ok else f"writes disabled: {self._failed or 'the log is closed'}"
        for barrier in done:
            barrier.resolve(ok, error)

    def _flush_always(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._waiters:
                    self._cond.wait()
                if self._stopping and not self._waiters:
                    return
                target = self._appended
            self._fsync_upto(target)

    def _flush_everysec(self) -> None:
        while True:
            with self._cond:
                if not self._stopping:
                    self._cond.wait(EVERYSEC_INTERVAL)
                if self._stopping:
                    return
            if self.batching and (self._buf or self._retry):
                # Records nobody flushed (a write without a barrier), or a
                # failed batch to retry once a second, as Redis does.
                self.flush(inline_fsync=False)
            with self._cond:
                target = self._appended
                if target <= self._synced:
                    continue
            self._fsync_upto(target)

    # -- rewrite (compaction) ---------------------------------------------------
    def begin_rewrite(self) -> None:
        """Start collecting appended records (store lock held, same moment as
        the snapshot is taken). Buffered records are written first, so the
        old file holds exactly what the snapshot holds."""
        if self.batching:
            error, _ = self._write_pending()
            if error is not None:
                raise StoreWriteError(error)
        self._rewrite_buf = []

    def write_snapshot(self, items: Iterable[bytes]) -> tuple[str, int]:
        """Write a new log from record payloads (one per key) to a temp
        file in the same directory, fsynced. Runs without the store lock.
        Returns (temp path, number of keys)."""
        tmp = f"{self.path}.rewrite-{os.getpid()}"
        count = 0
        try:
            with open(tmp, "wb", buffering=REWRITE_BUFFER_BYTES) as f:
                f.write(records.MAGIC)
                write, frame = f.write, records.frame
                for payload in items:
                    write(frame(payload))
                    count += 1
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return tmp, count

    def finish_rewrite(self, tmp: str) -> tuple[int, list[DurabilityBarrier]]:
        """Append what was written meanwhile, then atomically replace the log
        (store lock held). Returns the new size and the barriers the new,
        fsynced file satisfies: resolve them after releasing the store lock,
        so no barrier callback ever runs under it."""
        buffered = self._rewrite_buf or []
        self._rewrite_buf = None
        fd = os.open(tmp, os.O_WRONLY | os.O_APPEND)
        try:
            tail = b"".join(buffered)
            written = 0
            while written < len(tail):
                written += os.write(fd, tail[written:])
            os.fsync(fd)
            size = os.fstat(fd).st_size
            os.replace(tmp, self.path)
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp)
            raise
        try:
            fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        except OSError as exc:  # the rename happened; only its durability is unsure
            logger.warning("%s: fsync of the directory failed: %s", self.path, exc)
        with self._write_lock, self._fsync_lock:
            old, self._fd = self._fd, fd
            os.close(old)
            self._size = self._base_size = size
            # Records still buffered (or a failed batch) went into the new
            # file with the side buffer: they must not be written again.
            self._buf.clear()
            self._retry = b""
            with self._cond:
                # The new file holds everything appended so far and is fsynced.
                self._appended = self._queued
                self._synced = self._appended
                done = list(self._waiters)
                self._waiters.clear()
        return size, done

    def abort_rewrite(self) -> None:
        self._rewrite_buf = None

    # -- state ---------------------------------------------------------------------
    @property
    def size(self) -> int:
        """The log's size, records still buffered included."""
        return self._size + self._queued - self._appended

    @property
    def base_size(self) -> int:
        return self._base_size

    def info(self) -> dict[str, object]:
        with self._cond:
            return {
                "aof_path": self.path,
                "aof_fsync": self.policy,
                "aof_size": self._size,
                "aof_base_size": self._base_size,
                "aof_fsyncs": self._fsyncs,
                "aof_pending_fsync_bytes": self._queued - self._synced,
                "aof_pending_barriers": len(self._waiters) + len(self._unwritten),
                "aof_buffered_bytes": self._queued - self._appended,
                "aof_batching": int(self.batching),
                "aof_last_write_status": "err" if (self._failed or self._last_error) else "ok",
                "aof_last_write_error": self._failed or self._last_error,
                "aof_writes_disabled": int(self._failed is not None),
            }

    def close(self) -> None:
        """Stop the flusher, fsync what is left, close the file."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._fd >= 0 and self.batching:
            self.flush(inline_fsync=True)
        if self._fd >= 0:
            with self._cond:
                target = self._appended
            self._fsync_upto(target)
            with self._fsync_lock:
                os.close(self._fd)
                self._fd = -1
        with self._cond:
            leftover = [*self._waiters, *self._unwritten]
            self._waiters.clear()
            self._unwritten.clear()
        for barrier in leftover:
            barrier.resolve(False, "the log is closed")


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            logger.warning("cannot remove %s: %s", path, exc)
