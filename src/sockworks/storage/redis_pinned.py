"""Dedicated Redis connections: a client's WATCH ... EXEC, subscriptions, blocking pops.

A pooled connection serves whoever asks next, so it cannot hold state that
belongs to one client: a WATCH, or subscribed mode. Here that state gets a
connection of its own, taken when the client needs it and handed back when
it is done:

* ``PinnedRedisStore`` (in storage/redis_store.py, ``RedisStore.pinned()``, from WATCH until EXEC,
  DISCARD or UNWATCH): on one Redis server every call of the client runs on
  its connection; on Redis Cluster only WATCH, the MULTI/EXEC and UNWATCH do
  (on the primary of the watched keys' slot) and its other calls go through
  the cluster pool, routed as usual. That is the same thing for WATCH: Redis
  aborts EXEC when a watched key is touched by any connection, the
  watcher's own included. EXEC's null reply (a watched key changed) raises
  :class:`~sockworks.storage.base.TransactionAborted`. If the connection is
  lost, the WATCH is lost with it: every later call of the pinned store,
  EXEC included, raises StoreUnavailable, so a transaction never runs
  unguarded.
* :class:`RedisSubscriber` (``RedisStore.open_subscriber()``): a connection in
  subscribed mode and the reader thread that hands each message to a
  callback as it arrives. The reader queues nothing: the callback delivers
  to the client (whose output limit is the bound) or returns False, and the
  subscriber closes. A lost connection, or an unsubscription the client did
  not ask for (Redis drops shard subscriptions when their slot moves), calls
  ``on_lost`` once: the client is disconnected, never left subscribed to
  nothing. A connection silent for :data:`PING_AFTER` is PINGed, so a
  backend that stops answering without closing counts as lost too.
* :class:`RedisBlockedCall` (``RedisStore.open_blocking()``): a blocking
  command (BLPOP...) waiting in Redis, read by a thread of its own; CLIENT
  UNBLOCK reaches it through its CLIENT ID.

Connections come from no redis-py pool (see :class:`Pin`). Bound:
:class:`PinBudget`, one per store, counts every dedicated connection
(``--store-pinned-connections``, ``redis_store.DEFAULT_MAX_PINNED``); at
the limit the client gets an error and nothing is opened.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from sockworks.storage.base import BlockedCall, StoreError, StoreUnavailable, Subscriber
from sockworks.storage.redis_replies import retag

if TYPE_CHECKING:
    # (Type only: redis_store imports this module.)
    from sockworks.storage.redis_store import RedisStore

__all__ = ["CROSSSLOT", "Pin", "PinBudget", "RedisBlockedCall", "RedisSubscriber"]

logger = logging.getLogger(__name__)

#: Redis Cluster's text for keys in several slots.
CROSSSLOT: Final = "CROSSSLOT Keys in request don't hash to the same slot"
#: How often an idle reader looks up from the socket to see if it must stop.
READ_POLL: Final = 0.5
#: A subscriber connection silent this long is asked for a PING: a backend
#: that stopped answering without closing the socket (a partition, a
#: frozen process) must not leave the client subscribed to nothing. The
#: answer must come within the socket timeout.
PING_AFTER: Final = 5.0
#: Confirmations of (UN)SUBSCRIBE, the replies the session waits for.
_CONFIRMATIONS: Final = frozenset({b"subscribe", b"psubscribe", b"ssubscribe", b"unsubscribe",
                                   b"punsubscribe", b"sunsubscribe"})
_MESSAGES: Final = frozenset({b"message", b"pmessage", b"smessage"})


class PinBudget:
    """How many dedicated connections are open, against the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def take(self) -> None:
        with self._lock:
            if self._used >= self.limit:
                raise StoreError(
                    f"max number of dedicated Redis connections reached ({self.limit}, "
                    "--store-pinned-connections): WATCH and subscriptions each need one")
            self._used += 1

    def give(self) -> None:
        with self._lock:
            self._used -= 1


class Pin:
    """One dedicated connection, counted against the store's budget.

    Not from a redis-py pool: a connection whose owner may still be reading
    it (a subscriber's reader thread, a cancelled blocking call) must never
    serve anyone else, so only a connection handed back clean (``reusable``:
    its owner is done with it) is kept for reuse; any other is closed and
    dropped.
    """

    def __init__(self, store: RedisStore, node: str) -> None:
        self._store = store
        self.budget = store.pins
        self.budget.take()
        try:
            connection_class, options, self.client = store.pin_source(node)
            conn = store.take_idle_pin(node)
            if conn is None:
                conn = connection_class(**options)
                try:
                    conn.connect()
                except store._redis.exceptions.RedisError as exc:
                    raise store.translate(exc) from None
            self.conn: Any = conn
        except BaseException:
            self.budget.give()
            raise
        self.node = node
        self._released = False
        self._lock = threading.Lock()

    def release(self, *, reusable: bool) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        if not (reusable and self._store.keep_idle_pin(self.node, self.conn)):
            drop(self._store, self.conn)
        self.budget.give()


def drop(store: RedisStore, conn: Any) -> None:
    """Close ``conn``; a dead socket may fail to close, which changes nothing."""
    with contextlib.suppress(store._redis.exceptions.RedisError, OSError):
        conn.disconnect()


class RedisSubscriber(Subscriber):
    """A connection in subscribed mode and its reader thread (module docstring)."""

    def __init__(self, store: RedisStore, node: str,
                 on_message: Callable[[list[bytes]], bool],
                 on_lost: Callable[[str], None], timeout: float) -> None:
        self._pin = Pin(store, node)
        self._store = store
        self._on_message = on_message
        self._on_lost = on_lost
        self._timeout = timeout
        self._cond = threading.Condition()
        self._expected = 0
        self._confirmed: collections.deque[Any] = collections.deque()
        self._send_lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._read_loop, daemon=True,
                                        name="sockworks-subscriber")
        self._thread.start()

    def command(self, argv: Sequence[bytes], replies: int) -> None:
        errors = self._store._redis.exceptions
        with self._send_lock:
            failed: StoreError | None = None
            with self._cond:
                # Checked and sent under the lock _lose takes first: a lost
                # connection is never written to (redis-py would reconnect it).
                if self._closing:
                    raise StoreUnavailable("redis unavailable: the subscriber connection "
                                           "was lost")
                self._expected += replies
                try:
                    self._pin.conn.send_command(*argv)
                except (errors.RedisError, OSError) as exc:
                    failed = self._store.translate(exc)
            if failed is not None:
                self._lose(str(failed))
                raise failed
            deadline = time.monotonic() + self._timeout
            with self._cond:
                while len(self._confirmed) < replies and not self._closing:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if len(self._confirmed) < replies:
                    reason = ("redis unavailable: the subscriber connection was lost"
                              if self._closing else
                              "redis unavailable: timed out waiting for the confirmation")
                    closing = self._closing
                else:
                    for _ in range(replies):
                        self._confirmed.popleft()
                    return
        if not closing:
            self._lose(reason)
        raise StoreUnavailable(reason)

    def _read_loop(self) -> None:
        try:
            self._read()
        finally:
            if self._closing:
                # A read racing close() may have made redis-py reconnect.
                drop(self._store, self._pin.conn)

    def _read(self) -> None:
        conn = self._pin.conn
        errors = self._store._redis.exceptions
        heard = time.monotonic()
        pinged: float | None = None
        while not self._closing:
            try:
                if not conn.can_read(timeout=READ_POLL):
                    now = time.monotonic()
                    if pinged is not None and now - pinged > self._timeout:
                        self._lose(f"redis unavailable: no answer to PING for "
                                   f"{self._timeout:g}s")
                        return
                    # Not while the session sends (and waits for its
                    # confirmations, which this thread must read).
                    if (pinged is None and now - heard > PING_AFTER
                            and self._send_lock.acquire(blocking=False)):
                        try:
                            conn.send_command("PING")
                        finally:
                            self._send_lock.release()
                        pinged = now
                    continue
                reply = conn.read_response()
                heard, pinged = time.monotonic(), None
            except (errors.RedisError, OSError, ValueError, TypeError, AttributeError) as exc:
                # (TypeError/AttributeError: close() dropped the socket
                # under the read; anything else is the connection failing.)
                if not self._closing:
                    self._lose(f"redis unavailable: {self._store.outage_text(exc)}")
                return
            if not isinstance(reply, list) or not reply:
                continue
            kind = bytes(reply[0]).lower()
            if kind in _MESSAGES:
                if not self._on_message(reply):   # the client is gone
                    with self._cond:
                        self._closing = True
                        self._cond.notify_all()
                    self._pin.release(reusable=False)
                    return
            elif kind in _CONFIRMATIONS:
                with self._cond:
                    if self._expected > 0:
                        self._expected -= 1
                        self._confirmed.append(reply)
                        self._cond.notify_all()
                        continue
                # Redis unsubscribed us by itself (a shard slot moved away).
                self._lose(f"Redis ended the subscription to {bytes(reply[1])!r} "
                           "(its slot moved?)")
                return

    def _lose(self, reason: str) -> None:
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._pin.release(reusable=False)
        self._on_lost(reason)

    def close(self) -> None:
        with self._cond:
            was_closing, self._closing = self._closing, True
            self._cond.notify_all()
        if not was_closing:
            self._pin.release(reusable=False)
        if threading.current_thread() is not self._thread:
            self._thread.join(self._timeout + READ_POLL)


class RedisBlockedCall(BlockedCall):
    """A blocking command on a dedicated connection (see BlockedCall). The
    connection's CLIENT ID is read first, so CLIENT UNBLOCK can reach the
    wait in Redis (then Redis answers it, and no popped element is lost)."""

    def __init__(self, store: RedisStore, node: str, argv: Sequence[bytes],
                 retag_as: Sequence[bytes],
                 on_done: Callable[[Any, StoreError | None], None]) -> None:
        self._store = store
        self._argv = list(argv)
        self._retag_as = list(retag_as)
        self._on_done = on_done
        self._pin = Pin(store, node)
        self._lock = threading.Lock()
        self._done = False
        self._finished = threading.Event()
        errors = store._redis.exceptions
        try:
            self._pin.conn.send_command("CLIENT", "ID")
            self.backend_id = int(self._pin.conn.read_response())
        except (errors.RedisError, OSError, ValueError) as exc:
            self._pin.release(reusable=False)
            raise self._store.translate(exc) from None
        self._thread = threading.Thread(target=self._wait, daemon=True,
                                        name="sockworks-blocked")

    def start(self) -> None:
        self._thread.start()

    def _wait(self) -> None:
        conn = self._pin.conn
        errors = self._store._redis.exceptions
        result: Any = None
        error: StoreError | None = None
        reusable = False
        try:
            conn.send_command(*self._argv)
            while True:
                if self._done:
                    drop(self._store, conn)  # a read racing cancel() may have reconnected
                    return
                if conn.can_read(timeout=READ_POLL):
                    break
            raw = conn.read_response()
            result = None if raw is None else retag(self._retag_as, raw)
            reusable = True
        except errors.ResponseError as exc:
            error = self._store.translate(exc)
            reusable = True
        except (errors.RedisError, OSError, ValueError, TypeError, AttributeError) as exc:
            if self._done:
                drop(self._store, conn)  # cancelled: dropped under the read
                return
            error = StoreUnavailable(f"redis unavailable: {self._store.outage_text(exc)}")
        with self._lock:
            if self._done:
                return
            self._done = True
        self._pin.release(reusable=reusable)
        try:
            self._on_done(result, error)
        finally:
            self._finished.set()

    def unblock(self, error: bool) -> bool:
        if self._done:
            return False
        reply = self._store.execute_command(
            [b"CLIENT", b"UNBLOCK", b"%d" % self.backend_id, b"ERROR" if error else b"TIMEOUT"])
        return bool(reply)

    def cancel(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._pin.release(reusable=False)
        self._finished.set()

    def join(self, timeout: float) -> None:
        self._finished.wait(timeout)
