"""Dedicated Redis connections: a client's WATCH ... EXEC, subscriptions, blocking pops.

A pooled connection serves whoever asks next, so it cannot hold state that
belongs to one client: a WATCH, or subscribed mode. Here that state gets a
connection of its own, taken when the client needs it and handed back when
it is done:

* :class:`PinnedRedisStore` (``RedisStore.pinned()``, from WATCH until EXEC,
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
from typing import Any, Final

from sockworks.storage.base import (
    BatchCall,
    BlockedCall,
    StoreError,
    StoreUnavailable,
    Subscriber,
    TransactionAborted,
    WatchSet,
)
from sockworks.storage.redis_plans import BatchRecorder
from sockworks.storage.redis_replies import retag
from sockworks.storage.redis_store import RedisStore, client_text, translate_error

__all__ = ["CROSSSLOT", "Pin", "PinBudget", "PinnedRedisStore", "RedisBlockedCall",
           "RedisSubscriber"]

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
                    raise translate_error(exc) from None
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


class _Channel:
    """What ``RedisStore._run`` sends a command to: the pinned connection."""

    def __init__(self, store: PinnedRedisStore) -> None:
        self._store = store

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return self._store.run_pinned(args, options)


class PinnedRedisStore(RedisStore):
    """``parent`` with one client's WATCH connection (module docstring)."""

    def __init__(self, parent: RedisStore) -> None:  # pylint: disable=super-init-not-called
        # Shares the parent's clients and pools; opens only its own pin.
        self._parent = parent
        self._redis = parent._redis
        self.url = parent.url
        self.max_connections = parent.max_connections
        self.is_cluster = parent.is_cluster
        self._client = parent._client
        self._cluster = None
        self._closed = False
        self._lock = threading.Lock()
        self._healthy = True
        self.pins = parent.pins
        self._pin: Pin | None = None
        self._slot: int | None = None
        self._lost: str | None = None
        self._channel = _Channel(self)

    # -- routing ---------------------------------------------------------------
    def _target(self) -> Any:
        self._check_open()
        if self.is_cluster:
            return self._parent._target()
        return self._channel

    def _connection(self, slot: int | None) -> Pin:
        if self._lost is not None:
            raise StoreUnavailable(self._lost)
        if self._pin is None:
            node = self._parent.slot_node(slot) if slot is not None else ""
            self._pin = Pin(self._parent, node)
            self._slot = slot
        return self._pin

    def _fail(self, exc: BaseException) -> StoreError:
        error = translate_error(exc)
        if isinstance(error, StoreUnavailable) and self._pin is not None:
            self._lost = (f"{error}; the connection that held this client's WATCH was "
                          "lost, so its transaction is discarded")
            self._pin.release(reusable=False)
            return StoreUnavailable(self._lost)
        return error

    def run_pinned(self, args: Sequence[Any], options: dict[str, Any]) -> Any:
        """One command on the pinned connection, parsed as redis-py parses
        it for the pool (its reply callbacks)."""
        pin = self._connection(None)
        errors = self._redis.exceptions
        try:
            pin.conn.send_command(*args)
            return pin.client.parse_response(pin.conn, args[0], **options)
        except (errors.ConnectionError, errors.TimeoutError, OSError) as exc:
            raise self._fail(exc) from None

    # -- WATCH -----------------------------------------------------------------
    def watch(self, watch: WatchSet, keys: Sequence[bytes]) -> None:
        slot = None
        if self.is_cluster:
            slots = {self._parent.key_slot(key) for key in keys}
            if len(slots) > 1 or (self._slot is not None and slots != {self._slot}):
                raise StoreError(CROSSSLOT)
            slot = slots.pop()
        pin = self._connection(slot)
        errors = self._redis.exceptions
        try:
            pin.conn.send_command("WATCH", *keys)
            pin.conn.read_response()
        except (errors.ConnectionError, errors.TimeoutError, OSError) as exc:
            raise self._fail(exc) from None
        except errors.RedisError as exc:
            raise translate_error(exc) from None
        for key in keys:
            watch.keys[key] = False

    def watch_broken(self, watch: WatchSet) -> bool:
        if self._lost is not None:
            raise StoreUnavailable(self._lost)
        return False  # Redis decides, at EXEC

    def unwatch(self, watch: WatchSet) -> None:
        watch.keys.clear()
        watch.dirty = False
        pin, self._pin = self._pin, None
        if pin is None:
            return
        reusable = self._lost is None
        if reusable:
            try:
                pin.conn.send_command("UNWATCH")
                pin.conn.read_response()
            except (self._redis.exceptions.RedisError, OSError):
                reusable = False
        pin.release(reusable=reusable)

    def execute_batch(self, calls: Sequence[BatchCall]) -> list[Any]:
        """MULTI, the calls, EXEC on the pinned connection; EXEC's null
        reply raises TransactionAborted."""
        if self._pin is None and self._lost is None:
            return self._parent.execute_batch(calls)
        recorder = BatchRecorder()
        plans = [recorder.record(call) for call in calls]
        sent = [plan for plan in plans if plan.args]
        if self.is_cluster:
            self._check_slots([plan.args for plan in sent])
        pin = self._connection(self._slot)
        errors = self._redis.exceptions
        commands = [("MULTI",), *[plan.args for plan in sent], ("EXEC",)]
        refused: list[BaseException] = []
        replies: Any = None
        try:
            pin.conn.send_packed_command(pin.conn.pack_commands(commands))
            for index in range(len(commands)):
                try:
                    reply = pin.conn.read_response()
                except errors.ResponseError as exc:
                    if index == len(commands) - 1:
                        # EXECABORT: say which command Redis refused.
                        raise translate_error(refused[0] if refused else exc) from None
                    refused.append(exc)
                    continue
                if index == len(commands) - 1:
                    replies = reply
        except (errors.ConnectionError, errors.TimeoutError, OSError) as exc:
            raise self._fail(exc) from None
        if replies is None:
            raise TransactionAborted()
        callbacks = pin.client.response_callbacks
        results: list[Any] = []
        reply_iter = iter(replies)
        for plan in plans:
            reply = next(reply_iter) if plan.args else None
            if isinstance(reply, Exception):
                results.append(self._reply_error(reply))
                continue
            name = plan.args[0] if plan.args else None
            if isinstance(name, str) and name in callbacks:
                reply = callbacks[name](reply, **plan.options)
            results.append(plan.convert(reply))
        return results

    def _check_slots(self, commands: Sequence[Sequence[Any]]) -> None:
        """Redis Cluster: every queued key in the watched keys' slot."""
        for args in commands:
            if str(args[0]).upper() in ("DBSIZE", "KEYS", "SCAN", "FLUSHDB"):
                raise StoreError("on Redis Cluster, MULTI/EXEC cannot run DBSIZE, KEYS, "
                                 "SCAN or FLUSHDB")
            slot = self._parent.command_slot(args)
            if slot is not None and slot != self._slot:
                raise StoreError(CROSSSLOT)

    def pinned(self) -> RedisStore:
        return self

    def close(self) -> None:
        """Hand the connection back (UNWATCH first); the parent stays open."""
        if self._pin is not None:
            self.unwatch(WatchSet())
        self._closed = True


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
                    failed = translate_error(exc)
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
                    self._lose(f"redis unavailable: {client_text(exc)}")
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
            raise translate_error(exc) from None
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
            error = translate_error(exc)
            reusable = True
        except (errors.RedisError, OSError, ValueError, TypeError, AttributeError) as exc:
            if self._done:
                drop(self._store, conn)  # cancelled: dropped under the read
                return
            error = StoreUnavailable(f"redis unavailable: {client_text(exc)}")
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
