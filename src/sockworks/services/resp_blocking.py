"""Blocking pops: BLPOP BRPOP BLMOVE BRPOPLPUSH BLMPOP BZPOPMIN BZPOPMAX BZMPOP
(and the waiting of XREAD/XREADGROUP BLOCK, whose requests
services/commands/streams.py builds: kind "stream", ``$`` resolved by the
request's ``prepare`` under the lock, XREADGROUP answered ``on_gone`` when
its stream is deleted or overwritten).

Each command is parsed here with Redis 7.0's argument order and error
texts, and turned into the plain command it amounts to: BLPOP ``k1 k2 t``
is ``LMPOP 2 k1 k2 LEFT``, BZPOPMIN is ``ZMPOP ... MIN``, BLMOVE is
``LMOVE``. That command runs first; if it finds something, its result is
the reply (reshaped: BLPOP answers ``[key, element]``). Inside EXEC, as in
Redis, that is all: a blocking command never blocks in a transaction.

Otherwise the client waits, in the :class:`BlockingRegistry` of its
(embedded) store: the attempt and the registration are one step under the
store's lock, so no push can slip between them. Waiters are kept per key
in arrival order. The store calls :meth:`BlockingRegistry._on_push` for a
key that got list or sorted-set elements (any port, any command, MULTI
included) and, once the outermost command or group that pushed is over
(still under its lock), :meth:`BlockingRegistry._settle`: the waiters of
each such key are served first come, first served, each with the plain
command on that one key (``LMPOP 1 key LEFT``), which the store logs as
the ``LPOP`` it is, so replaying the log gives the same data. Served
replies go to the client through ``ClientHandle.deliver`` (after the log's
fsync under ``--fsync always``), and the session's held-back requests run
after them (``ClientHandle.wake``).

Timeouts: one heap and one thread per registry (per store), started with
the first timed wait; a wait that ends otherwise leaves a stale entry,
and the heap is rebuilt when those outnumber the live ones. A timed-out
client gets Redis's null array (``*-1``, RESP3 ``_``). A client that
disconnects, is killed (CLIENT KILL, client eviction) or is unblocked
(CLIENT UNBLOCK) leaves the queues at once; at shutdown each waiting client
gets the null array before its connection closes.

Bounds: a waiting client is a connection (``--max-connections``); what it
holds is its keys (bounded by the request size limit), one queue entry per
key and one heap entry; requests it sends while it waits are held, and
over ``client-query-buffer-limit`` (the request size limit) it is closed.

The Redis backend (``--store redis://``): the command waits in that Redis,
as its blocking form of the plain command (:func:`backend_form`: ``BLPOP
k1 k2 t`` is sent as ``BLMPOP t 2 k1 k2 LEFT``, whose reply has the plain
command's shape, so the reply is built as above), on a dedicated
connection of the client's (``Store.open_blocking``, bounded by
``--store-pinned-connections``) read by a thread of its own; CLIENT UNBLOCK
is Redis's own CLIENT UNBLOCK of that connection.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final, Protocol

from sockworks.core.clients import ClientHandle
from sockworks.protocols.resp import NULL_ARRAY, encode
from sockworks.services.resp_commands import store_error
from sockworks.services.resp_context import CommandContext, Plan
from sockworks.storage.base import Store, StoreError
from sockworks.storage.memory import MemoryStore
from sockworks.storage.model.common import SYNTAX, CommandError
from sockworks.storage.model.lists import parse_mpop
from sockworks.storage.model.longdouble import INFINITE, long_double
from sockworks.storage.model.values import type_name

__all__ = ["BlockRequest", "BlockingRegistry", "Waiter", "backend_form", "registry_for",
           "BLOCKING_UNSUPPORTED", "UNBLOCKED_ERROR", "cmd_blpop", "cmd_brpop", "cmd_blmove",
           "cmd_brpoplpush", "cmd_blmpop", "cmd_bzpopmin", "cmd_bzpopmax", "cmd_bzmpop"]

NOT_A_FLOAT: Final = b"-ERR timeout is not a float or out of range\r\n"
NEGATIVE: Final = b"-ERR timeout is negative\r\n"
#: A store that can neither hold a wait nor pass it to a backend.
BLOCKING_UNSUPPORTED: Final = b"-ERR blocking commands are not supported by this store\r\n"
#: CLIENT UNBLOCK id ERROR (Redis 7.0's text).
UNBLOCKED_ERROR: Final = b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"
#: Redis's LLONG_MAX milliseconds: a longer timeout overflows its cast and
#: reads as negative ("timeout is negative", what redis-server answers).
_MAX_MS: Final = 2**63 - 1
#: Rebuild the timeout heap when stale entries exceed live ones plus this.
_HEAP_SLACK: Final = 1024


def parse_timeout(arg: bytes) -> float | bytes:
    """Seconds (0: forever) from a blocking command's timeout, or the error
    reply. As Redis 7.0: parsed like strtold (hex, exponents; no blanks, no
    NaN), times 1000, rounded up to whole milliseconds; infinities and
    values past LLONG_MAX milliseconds overflow into "negative"."""
    value = long_double(arg)
    if value is None:
        return NOT_A_FLOAT
    if value == INFINITE:
        return NEGATIVE
    assert isinstance(value, Fraction)
    ms = math.ceil(value * 1000)
    if ms < 0 or ms > _MAX_MS:
        return NEGATIVE
    return ms / 1000


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """A parsed blocking command: what to try, on which keys, how to answer."""

    keys: tuple[bytes, ...]
    #: "list", "zset" or "stream": the type whose pushes can serve it.
    kind: str
    #: The plain command tried first (all keys) and inside EXEC.
    attempt: list[bytes]
    #: Builds the plain command that serves it from one key.
    serve: Callable[[bytes], list[bytes]]
    #: The result of either command -> the reply value.
    shape: Callable[[Any], Any]
    #: Seconds to wait (0: forever).
    timeout: float
    #: In EXEC, an empty result is a null bulk (BLMOVE) or a null array.
    null_bulk: bool = False
    #: Run under the store's lock just before the first attempt (XREAD's
    #: ``$`` becomes the stream's last ID then, in ``attempt`` and ``serve``).
    prepare: Callable[[MemoryStore], None] | None = None
    #: The reply when serving it fails (default: the error as it is).
    on_error: Callable[[StoreError], bytes] | None = None
    #: The reply when the key is deleted or holds another type (XREADGROUP's
    #: error); None: keep waiting.
    on_gone: bytes | None = None
    #: When ``serve`` finds nothing: the result to answer anyway, or the
    #: null array to keep waiting (a stream whose new entry was deleted
    #: before the reader was served: Redis answers it an empty read).
    ready: Callable[[MemoryStore, bytes], Any] | None = None

    def reply(self, result: Any, proto: int) -> bytes:
        return encode(self.shape(result), proto)

    def empty_reply(self, proto: int) -> bytes:
        return encode(None if self.null_bulk else NULL_ARRAY, proto)


def backend_form(request: BlockRequest) -> list[bytes]:
    """The blocking command a Redis backend runs for ``request``: the plain
    command's blocking form (same reply shape), with its timeout."""
    attempt, seconds = request.attempt, b"%.3f" % request.timeout
    if attempt[0] == b"LMOVE":
        return [b"BLMOVE", *attempt[1:], seconds]
    return [b"B" + attempt[0], seconds, *attempt[1:]]


def _empty(result: Any) -> bool:
    return result is None or result is NULL_ARRAY


def _pop_shape(result: Any) -> Any:
    """LMPOP's ``[key, [element]]`` -> BLPOP's ``[key, element]``."""
    return result if _empty(result) else [result[0], result[1][0]]


def _zpop_shape(result: Any) -> Any:
    """ZMPOP's ``[key, [[member, score]]]`` -> BZPOPMIN's ``[key, member, score]``."""
    return result if _empty(result) else [result[0], *result[1][0]]


def _as_is(result: Any) -> Any:
    return result


def _keys_and_timeout(argv: list[bytes], plain: bytes, side: bytes, kind: str,
                      shape: Callable[[Any], Any]) -> BlockRequest | bytes:
    """BLPOP/BRPOP/BZPOPMIN/BZPOPMAX key [key ...] timeout."""
    timeout = parse_timeout(argv[-1])
    if isinstance(timeout, bytes):
        return timeout
    keys = tuple(argv[1:-1])
    return BlockRequest(keys, kind, [plain, b"%d" % len(keys), *keys, side],
                        lambda key: [plain, b"1", key, side], shape, timeout)


def _mpop(argv: list[bytes], plain: bytes, sides: tuple[bytes, bytes],
          kind: str) -> BlockRequest | bytes:
    """BLMPOP/BZMPOP timeout numkeys key [key ...] WHERE [COUNT count]:
    Redis checks numkeys, WHERE and COUNT before the timeout."""
    try:
        keys, first, count = parse_mpop(argv, 2, sides)
    except CommandError as exc:
        return store_error(exc)
    timeout = parse_timeout(argv[1])
    if isinstance(timeout, bytes):
        return timeout
    side = sides[0] if first else sides[1]
    tail = [side, b"COUNT", b"%d" % count]
    return BlockRequest(tuple(keys), kind, [plain, b"%d" % len(keys), *keys, *tail],
                        lambda key: [plain, b"1", key, *tail], _as_is, timeout)


def _move(source: bytes, dest: bytes, src_side: bytes, dst_side: bytes,
          timeout_arg: bytes) -> BlockRequest | bytes:
    timeout = parse_timeout(timeout_arg)
    if isinstance(timeout, bytes):
        return timeout
    attempt = [b"LMOVE", source, dest, src_side, dst_side]
    return BlockRequest((source,), "list", attempt, lambda key: attempt, _as_is, timeout,
                        null_bulk=True)


def parse_blpop(argv: list[bytes]) -> BlockRequest | bytes:
    return _keys_and_timeout(argv, b"LMPOP", b"LEFT", "list", _pop_shape)


def parse_brpop(argv: list[bytes]) -> BlockRequest | bytes:
    return _keys_and_timeout(argv, b"LMPOP", b"RIGHT", "list", _pop_shape)


def parse_bzpopmin(argv: list[bytes]) -> BlockRequest | bytes:
    return _keys_and_timeout(argv, b"ZMPOP", b"MIN", "zset", _zpop_shape)


def parse_bzpopmax(argv: list[bytes]) -> BlockRequest | bytes:
    return _keys_and_timeout(argv, b"ZMPOP", b"MAX", "zset", _zpop_shape)


def parse_blmpop(argv: list[bytes]) -> BlockRequest | bytes:
    return _mpop(argv, b"LMPOP", (b"LEFT", b"RIGHT"), "list")


def parse_bzmpop(argv: list[bytes]) -> BlockRequest | bytes:
    return _mpop(argv, b"ZMPOP", (b"MIN", b"MAX"), "zset")


def parse_blmove(argv: list[bytes]) -> BlockRequest | bytes:
    sides = (argv[3].upper(), argv[4].upper())
    if not all(side in (b"LEFT", b"RIGHT") for side in sides):
        return store_error(CommandError(SYNTAX))
    return _move(argv[1], argv[2], sides[0], sides[1], argv[5])


def parse_brpoplpush(argv: list[bytes]) -> BlockRequest | bytes:
    return _move(argv[1], argv[2], b"RIGHT", b"LEFT", argv[3])


def _run(ctx: CommandContext, request: BlockRequest | bytes) -> bytes | Plan[Any]:
    if isinstance(request, bytes):
        return request
    if ctx.may_block:
        return ctx.block(request)
    proto = ctx.proto  # inside EXEC: the plain command, never a wait
    req = request

    def finish(result: Any) -> bytes:
        return req.empty_reply(proto) if _empty(result) else req.reply(result, proto)

    return Plan(lambda st: st.execute_command(req.attempt), finish, True)


def cmd_blpop(ctx: CommandContext, argv: list[bytes]) -> bytes | Plan[Any]:
    return _run(ctx, parse_blpop(argv))


def cmd_brpop(ctx: CommandContext, argv: list[bytes]) -> bytes | Plan[Any]:
    return _run(ctx, parse_brpop(argv))


def cmd_blmove(ctx: CommandContext, argv: list[bytes]) -> bytes | Plan[Any]:
    return _run(ctx, parse_blmove(argv))


def cmd_brpoplpush(ctx: CommandContext, argv: list[bytes]) -> bytes | Plan[Any]:
    return _run(ctx, parse_brpoplpush(argv))


def cmd_blmpop(ctx: CommandContext, argv: list[bytes]) -> bytes | Plan[Any]:
    return _run(ctx, parse_blmpop(argv))


def cmd_bzpopmin(ctx: CommandContext, argv: list[bytes]) -> bytes | Plan[Any]:
    return _run(ctx, parse_bzpopmin(argv))


def cmd_bzpopmax(ctx: CommandContext, argv: list[bytes]) -> bytes | Plan[Any]:
    return _run(ctx, parse_bzpopmax(argv))


def cmd_bzmpop(ctx: CommandContext, argv: list[bytes]) -> bytes | Plan[Any]:
    return _run(ctx, parse_bzmpop(argv))


# -- waiting ---------------------------------------------------------------------

class BlockedClient(Protocol):
    """What the registry needs of a session (RespSession)."""

    @property
    def proto(self) -> int: ...

    @property
    def client(self) -> ClientHandle | None: ...

    def park(self, waiter: Waiter) -> None:
        """The session waits from now on (store lock held)."""

    def unblocked(self, reply: bytes) -> None:
        """Its wait is over with this reply (any thread)."""

    def served(self, command: list[bytes], result: Any, *, woken: bool) -> None:
        """``command`` popped ``result`` for it (store lock held), at once or
        ``woken`` by a push: its keyspace events."""


class Waiter:
    """One waiting client: its request and its deadline (monotonic; 0: none)."""

    __slots__ = ("session", "request", "deadline", "done")

    def __init__(self, session: BlockedClient, request: BlockRequest, deadline: float) -> None:
        self.session = session
        self.request = request
        self.deadline = deadline
        #: Served, timed out or cancelled (store lock held to change it).
        self.done = False


class BlockingRegistry:
    """The clients waiting on one embedded store's keys (module docstring)."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        #: key -> its waiters in arrival order (a dict as an ordered set).
        self._waiting: dict[bytes, dict[Waiter, None]] = {}
        #: Keys pushed to during the current command/group, in order.
        self._ready: dict[bytes, None] = {}
        self._serving = False
        #: Clients waiting now (INFO blocked_clients).
        self.blocked = 0
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Waiter]] = []
        self._stale = 0
        self._seq = itertools.count()
        self._timer: threading.Thread | None = None
        self._closed = False
        store.on_push = self._on_push
        store.on_settle = self._settle

    # -- the session's side -----------------------------------------------------
    def pop_or_wait(self, session: BlockedClient, request: BlockRequest
                    ) -> tuple[bytes, bool] | None:
        """Serve ``request`` now ((reply, wrote)), or park the session and
        return None; one step under the store's lock."""
        def attempt(store: Store) -> tuple[bytes, bool] | None:
            try:
                if request.prepare is not None:
                    request.prepare(self._store)
                result = store.execute_command(request.attempt)
            except StoreError as exc:
                return store_error(exc), False
            if not _empty(result):
                session.served(request.attempt, result, woken=False)
                return request.reply(result, session.proto), True
            deadline = time.monotonic() + request.timeout if request.timeout else 0.0
            waiter = Waiter(session, request, deadline)
            for key in dict.fromkeys(request.keys):
                self._waiting.setdefault(key, {})[waiter] = None
            self.blocked += 1
            session.park(waiter)
            if deadline:
                self._schedule(waiter)
            return None

        return self._store.run_grouped(attempt)

    def cancel(self, waiter: Waiter) -> bool:
        """Take a waiter out (disconnect, kill, shutdown); False if it was
        already served or timed out."""
        with self._store.atomic():
            if waiter.done:
                return False
            self._remove(waiter)
            return True

    def unblock(self, waiter: Waiter, reply: bytes) -> bool:
        """CLIENT UNBLOCK: end the wait with ``reply``; False if it had ended."""
        with self._store.atomic():
            if waiter.done:
                return False
            self._finish(waiter, reply, wrote=False)
            return True

    # -- the store's side (its lock held) ---------------------------------------------
    def _on_push(self, key: bytes) -> None:
        if key in self._waiting:
            self._ready[key] = None

    def _settle(self) -> None:
        if self._serving or not self._ready:
            return  # serving already (a BLMOVE's push): the loop below gets it
        self._serving = True
        try:
            while self._ready:
                key = next(iter(self._ready))
                del self._ready[key]
                self._serve_key(key)
        finally:
            self._serving = False

    def _serve_key(self, key: bytes) -> None:
        store = self._store
        for waiter in list(self._waiting.get(key, ())):
            if waiter.done:
                continue
            value = store.lookup(key)
            if value is None or waiter.request.kind != type_name(value):
                if waiter.request.on_gone is not None:
                    self._finish(waiter, waiter.request.on_gone, wrote=False)
                continue
            client = waiter.session.client
            if client is not None and client.closing:
                self._remove(waiter)  # killed, its connection not yet torn down
                continue
            command = waiter.request.serve(key)
            try:
                result = store.execute_command(command)
            except StoreError as exc:  # BLMOVE to a key of another type
                on_error = waiter.request.on_error
                self._finish(waiter, store_error(exc) if on_error is None else on_error(exc),
                             wrote=False)
                continue
            if _empty(result) and waiter.request.ready is not None:
                result = waiter.request.ready(store, key)
            if _empty(result):
                if waiter.request.kind == "stream":
                    continue  # each reader waits for entries past its own ID
                return
            waiter.session.served(command, result, woken=True)
            self._finish(waiter, waiter.request.reply(result, waiter.session.proto),
                         wrote=True)

    def _remove(self, waiter: Waiter) -> None:
        waiter.done = True
        for key in waiter.request.keys:
            queue = self._waiting.get(key)
            if queue is not None:
                queue.pop(waiter, None)
                if not queue:
                    del self._waiting[key]
        self.blocked -= 1
        if waiter.deadline:
            with self._cond:
                self._stale += 1

    def _finish(self, waiter: Waiter, reply: bytes, *, wrote: bool) -> None:
        self._remove(waiter)
        session = waiter.session
        barrier = self._store.durability_barrier() if wrote else None
        if barrier is None:
            session.unblocked(reply)
            return

        def durable(ok: bool) -> None:
            if ok:
                session.unblocked(reply)
            elif session.client is not None:
                session.client.close("write to storage failed", abort=True)

        barrier.add_done_callback(durable)

    # -- timeouts: one heap, one thread -------------------------------------------------
    def _schedule(self, waiter: Waiter) -> None:
        with self._cond:
            if self._closed:
                return
            if self._stale > len(self._heap) // 2 + _HEAP_SLACK:
                self._heap = [entry for entry in self._heap if not entry[2].done]
                heapq.heapify(self._heap)
                self._stale = 0
            heapq.heappush(self._heap, (waiter.deadline, next(self._seq), waiter))
            if self._timer is None:
                self._timer = threading.Thread(target=self._run_timer,
                                               name="sockworks-blocking-timeouts", daemon=True)
                self._timer.start()
            elif self._heap[0][2] is waiter:
                self._cond.notify()

    def _run_timer(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed:
                        return
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                due: list[Waiter] = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
            with self._store.atomic():
                for waiter in due:
                    if waiter.done:
                        with self._cond:
                            self._stale -= 1
                    else:
                        self._finish(waiter, encode(NULL_ARRAY, waiter.session.proto),
                                     wrote=False)
                        with self._cond:
                            self._stale -= 1  # counted by _remove; its entry is gone

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def scheduled(self) -> int:
        """Entries in the timeout heap (live and stale)."""
        with self._cond:
            return len(self._heap)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
            timer = self._timer
        if timer is not None and timer is not threading.current_thread():
            timer.join(5.0)


_REGISTRIES: weakref.WeakKeyDictionary[MemoryStore, BlockingRegistry] = (
    weakref.WeakKeyDictionary())
_REGISTRIES_LOCK = threading.Lock()


def registry_for(store: Store) -> BlockingRegistry | None:
    """The store's registry (one per store, shared by every port), or None
    for a store that cannot hold waiters (the Redis backend)."""
    if not isinstance(store, MemoryStore):
        return None
    with _REGISTRIES_LOCK:
        registry = _REGISTRIES.get(store)
        if registry is None or registry.closed:
            registry = _REGISTRIES[store] = BlockingRegistry(store)
        return registry
