"""The store interface every backend implements, and its errors.

Thread-safety contract (every backend): each method is atomic with respect to
every other method, and may be called from any thread (and, for backends that
say ``shared_across_processes``, from any process). Keys and values are
``bytes``; no backend requires UTF-8.

Groups of calls. ``execute_batch(calls)`` runs calls as one unit (what a
RESP ``EXEC`` needs): every backend implements it atomically (the embedded
store under its lock, the Redis backend as one MULTI/EXEC). A call is a
function of the store, ``lambda st: st.incrby(b"n", 1)``, so mypy checks its
arguments like any other call. ``run_grouped(fn)`` runs a function making
several calls (read-modify-write: APPEND, GETDEL...); whether no other
client's call can come in between is a capability the store declares in
``isolates_groups``, not something a caller discovers by probing.

Optimistic locking (WATCH). A backend that says ``supports_watch`` tracks
a :class:`WatchSet` per client: :meth:`Store.watch` registers keys, any
change to one of them from any client (a write, a deletion, an expiry, a
flush) marks the set dirty, and :meth:`Store.watch_broken` (called inside the
same ``run_grouped`` as the transaction it guards) says whether EXEC must
abort. The cost is one dict lookup per change while anybody watches, none
otherwise: no snapshot of values is ever compared.

Pass-through (the Redis backend, ``passthrough``). WATCH, pub/sub and
scripts are the backend's own: :meth:`Store.pinned` gives one client a view
of the store on a connection of its own (WATCH ... EXEC run there, and EXEC
raises :class:`TransactionAborted` when the backend answers null), and
:meth:`Store.open_subscriber` a connection in subscribed mode whose messages
are handed to a callback (:class:`Subscriber`). Both count against the
backend's bound on dedicated connections.

Durability contract: a write method returns only after the write is in the
backend's log (or the backend itself); ``durability_barrier()`` then returns a
barrier the caller waits on before acknowledging the write to a client, or
None when the fsync policy in force needs no wait. A write that cannot be
logged (disk full) raises :class:`StoreWriteError` and changes nothing.
After ``batch_log_writes()`` (what a server's services ask for) a write
method returns once its record is buffered, and the barrier is what writes
it: a failed batch resolves the barrier False (the write is applied in
memory, not acknowledged, and written when a later write retries the batch).

Times are milliseconds. TTL queries follow Redis: -2 the key does not exist,
-1 it exists with no expiry.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sockworks.core.service import Barrier
from sockworks.storage.gate import ExclusiveGate

if TYPE_CHECKING:
    from sockworks.storage.functions import FunctionLibraries

__all__ = [
    "Store",
    "StoreError",
    "StoreWriteError",
    "StoreUnavailable",
    "NotAnInteger",
    "WrongType",
    "IntegerOverflow",
    "OutOfMemory",
    "RewriteInProgress",
    "SetResult",
    "BatchCall",
    "WatchSet",
    "TransactionAborted",
    "BackendError",
    "Subscriber",
    "BlockedCall",
]

T = TypeVar("T")


class StoreError(Exception):
    """Base class: the message is safe to show to a client after 'ERROR: '."""


class StoreWriteError(StoreError):
    """The write could not be made durable (disk full, I/O error); nothing changed."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached right now (Redis down); retry later."""


class BackendError(StoreError):
    """An error reply of the Redis backend; ``line`` is Redis's whole error
    line (its code included), which the RESP port sends as it is."""

    def __init__(self, message: str, line: str) -> None:
        super().__init__(message)
        self.line = line


class TransactionAborted(StoreError):
    """EXEC did not run: a WATCHed key changed (a pinned Redis connection's
    EXEC answered null). The RESP port answers the null array."""

    def __init__(self) -> None:
        super().__init__("a watched key changed: the transaction was not run")


class BlockedCall(abc.ABC):
    """One client's blocking command (BLPOP...) on a dedicated backend
    connection (:meth:`Store.open_blocking`): it waits in the backend, and
    its ``on_done`` callback gets the result from a thread of its own."""

    @abc.abstractmethod
    def start(self) -> None:
        """Send the command; ``on_done`` runs once when it is answered."""

    @abc.abstractmethod
    def unblock(self, error: bool) -> bool:
        """CLIENT UNBLOCK it in the backend (TIMEOUT, or ERROR); whether it
        was blocked there. ``on_done`` still runs, with what Redis answered."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Drop the connection (the client left); ``on_done`` never runs."""

    @abc.abstractmethod
    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` for ``on_done`` to have run."""


class Subscriber(abc.ABC):
    """One client's connection in subscribed mode on the backend
    (:meth:`Store.open_subscriber`): messages go to its ``on_message``
    callback from a reader thread, in the order the backend sent them."""

    @abc.abstractmethod
    def command(self, argv: Sequence[bytes], replies: int) -> None:
        """Send (P|S)(UN)SUBSCRIBE and wait for its ``replies``
        confirmations (StoreUnavailable: lost, or too slow)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Drop the connection; no callback runs after this returns."""


class NotAnInteger(StoreError):
    """INCR on a value that is not a base-10 signed 64-bit integer."""

    def __init__(self) -> None:
        super().__init__("value is not an integer or out of range")


class WrongType(StoreError):
    """A command on a key holding another type (Redis's exact text; the text
    port answers ``ERROR: wrong type``)."""

    def __init__(self) -> None:
        super().__init__("WRONGTYPE Operation against a key holding the wrong kind of value")


class IntegerOverflow(StoreError):
    """INCR would leave the signed 64-bit range."""

    def __init__(self) -> None:
        super().__init__("increment or decrement would overflow")


class OutOfMemory(StoreError):
    """A write while memory is over ``maxmemory`` and nothing can be evicted
    (Redis's exact text; the RESP port sends it as is, with its OOM prefix;
    the text port answers ``ERROR: out of memory``)."""

    def __init__(self) -> None:
        super().__init__("OOM command not allowed when used memory > 'maxmemory'.")


class RewriteInProgress(StoreError):
    """COMPACT / BGREWRITEAOF while a rewrite of the log runs (Redis's text)."""

    def __init__(self) -> None:
        super().__init__("Background append only file rewriting already in progress")


@dataclass(frozen=True, slots=True)
class SetResult:
    """``written`` is False when NX/XX prevented the write; ``old`` is the
    previous value when ``get=True`` was asked (None if there was none)."""

    written: bool
    old: bytes | None = None


class WatchSet:
    """One client's WATCHed keys: ``keys`` maps each key to whether it was
    already expired (but not yet reclaimed) when watched, which Redis 7 does
    not count as a change when it is reclaimed; ``dirty`` is set by the
    store, under its lock, when a watched key changes. Compared by identity."""

    __slots__ = ("dirty", "keys")

    def __init__(self) -> None:
        self.dirty = False
        self.keys: dict[bytes, bool] = {}


#: One call of :meth:`Store.execute_batch`: makes one Store call and returns
#: its result, e.g. ``lambda st: st.set(key, value, nx=True)``.
BatchCall = Callable[["Store"], Any]


class Store(abc.ABC):
    #: True when several processes (fork, prefork models) can share it.
    shared_across_processes: bool = False
    #: True when :meth:`run_grouped` runs its function with no other client's
    #: call in between, and :meth:`execute_batch` accepts calls that make
    #: several Store calls (the embedded store holds its lock across both).
    #: False: a group's calls run one after another, each atomic alone, and
    #: each batch call must make exactly one Store call (the Redis backend).
    isolates_groups: bool = False
    #: True when :meth:`watch` works (the embedded store); False: WATCH is
    #: refused (the Redis backend's pooled connections cannot hold a WATCH).
    supports_watch: bool = False
    #: Sessions pass it before touching the store, so a Lua script can hold
    #: the store alone while they answer BUSY (storage/gate.py); None: the
    #: store runs no scripts (the Redis backend).
    script_gate: ExclusiveGate | None = None
    #: FUNCTION libraries (storage/functions.py); None: no scripting.
    function_libraries: FunctionLibraries | None = None
    #: Pub/sub, WATCH and scripting are passed through to the backend
    #: (the Redis backend): see :meth:`pinned`, :meth:`open_subscriber`.
    passthrough: bool = False

    # -- reads ---------------------------------------------------------
    @abc.abstractmethod
    def get(self, key: bytes) -> bytes | None: ...

    @abc.abstractmethod
    def mget(self, keys: Sequence[bytes]) -> list[bytes | None]: ...

    @abc.abstractmethod
    def exists(self, keys: Sequence[bytes]) -> int:
        """How many of ``keys`` exist (a key named twice counts twice, as Redis)."""

    @abc.abstractmethod
    def pttl(self, key: bytes) -> int:
        """Milliseconds to live; -2 no such key; -1 no expiry."""

    @abc.abstractmethod
    def dbsize(self) -> int: ...

    @abc.abstractmethod
    def keys(self, pattern: bytes) -> list[bytes]:
        """Keys matching a Redis glob pattern (``*``, ``?``, ``[a-z]``, ``\\``)."""

    @abc.abstractmethod
    def scan(self, cursor: int, match: bytes | None, count: int) -> tuple[int, list[bytes]]:
        """Redis SCAN semantics: returns (next cursor, keys); cursor 0 ends.
        Every key present for the whole scan is returned at least once."""

    # -- writes --------------------------------------------------------
    @abc.abstractmethod
    def set(
        self,
        key: bytes,
        value: bytes,
        *,
        px: int | None = None,
        nx: bool = False,
        xx: bool = False,
        get: bool = False,
        keepttl: bool = False,
    ) -> SetResult:
        """SET with Redis's options; ``px`` is a relative TTL in milliseconds."""

    @abc.abstractmethod
    def mset(self, pairs: Sequence[tuple[bytes, bytes]]) -> None: ...

    @abc.abstractmethod
    def delete(self, keys: Sequence[bytes]) -> int:
        """Number of keys removed."""

    @abc.abstractmethod
    def incrby(self, key: bytes, delta: int) -> int:
        """Atomic add; a missing key counts as 0. Raises NotAnInteger/IntegerOverflow."""

    @abc.abstractmethod
    def pexpire(self, key: bytes, ms: int) -> bool:
        """Set a relative TTL; ms <= 0 deletes the key. False if no such key."""

    @abc.abstractmethod
    def persist(self, key: bytes) -> bool:
        """Remove the TTL; False if no such key or it had none."""

    @abc.abstractmethod
    def flushdb(self) -> None: ...

    # -- the data model ---------------------------------------------------
    def execute_command(self, argv: Sequence[bytes]) -> Any:
        """Run one Redis data-model command (hashes, lists, sets, sorted
        sets, bitmaps, keyspace commands: the families of docs/resp.md),
        arity already checked, as one atomic unit. Returns the reply as a
        value of :mod:`sockworks.protocols.resp`'s vocabulary (bytes, int,
        None, list, SimpleString, Map, RespSet, Double, NULL_ARRAY), the same
        for RESP2 and RESP3; raises StoreError with Redis's error text
        (WrongType, ...). Default: no data model beyond strings."""
        name = argv[0].decode("latin-1") if argv else ""
        raise StoreError(f"unknown command '{name}'")

    # -- administration -------------------------------------------------
    def durability_barrier(self) -> Barrier | None:
        """See the module docstring. Default: nothing to wait for."""
        return None

    def batch_log_writes(self) -> None:
        """From now on, buffer each write's log record instead of writing it
        at once; the barrier :meth:`durability_barrier` returns writes the
        buffer (one write for all buffered records) when it is waited on or
        flushed. Called by a service that a server runs (every model waits
        on or flushes its sessions' barriers before replying); a caller of
        the store's methods must then do the same before it acknowledges a
        write. Default: nothing to batch."""

    def make_room(self, reserve: int = 0) -> bool:
        """Before a command that may add data (Redis's ``denyoom`` flag):
        evict what the memory policy allows; False when memory is still over
        the limit, and the command must be refused with :class:`OutOfMemory`.
        ``reserve``: the bytes of the request itself, which count as used
        (Redis's used_memory includes the query buffer holding the command,
        so at ``maxmemory 1`` nothing fits). The write methods check this
        themselves too. Default: no limit here (the Redis backend is
        governed by Redis's own maxmemory)."""
        return True

    def mark_raw(self, key: bytes) -> None:
        """The string under ``key`` was just changed in place (SETRANGE,
        APPEND): OBJECT ENCODING answers ``raw`` until it is replaced, as
        Redis's. Default: nothing (the backend reports its own encodings)."""

    def memory_limit_lifted(self) -> AbstractContextManager[None]:
        """Within: writes go ahead whatever the memory limit (a script or
        function flagged ``allow-oom``, inside :meth:`run_isolated`).
        Default: nothing to lift (no limit here)."""
        return nullcontext()

    def compact(self) -> str:
        """Rewrite the log from live data now; returns a short status text."""
        return "nothing to compact"

    def start_compaction(self) -> str:
        """What a client's COMPACT does: like :meth:`compact`, but without
        making the caller wait for the whole rewrite where that takes long
        (a server thread must not stall on it); returns a status text.
        Raises :class:`RewriteInProgress` while a rewrite runs."""
        return self.compact()

    def wait_ready(self, timeout: float) -> None:
        """Return once the backend answers (start-up): StoreError at once for
        a misconfiguration, StoreUnavailable after ``timeout`` seconds of no
        answer. The embedded store is always ready."""

    def ready(self) -> bool:
        """Whether the backend answered its last call (readiness probes)."""
        return True

    def info(self) -> dict[str, Any]:
        """Counters and persistence state for STATS/INFO (flat, str keys)."""
        return {}

    # -- optimistic locking (WATCH) ------------------------------------------
    def watch(self, watch: WatchSet, keys: Sequence[bytes]) -> None:
        """Add ``keys`` to ``watch`` (see the module docstring)."""
        raise StoreError("WATCH is not supported by this store")

    def watch_broken(self, watch: WatchSet) -> bool:
        """Whether a watched key changed (or expired) since it was watched."""
        return watch.dirty

    def unwatch(self, watch: WatchSet) -> None:
        """Forget every key of ``watch`` and clear its dirty flag."""
        watch.keys.clear()
        watch.dirty = False

    # -- pass-through (the Redis backend) ------------------------------------
    def pinned(self) -> Store:
        """This store on a connection held for one client from WATCH until
        EXEC, DISCARD or UNWATCH; :meth:`close` hands the connection back.
        StoreError when the bound on dedicated connections is reached."""
        raise StoreError("this store has no dedicated connections")

    def open_subscriber(self, shard_channel: bytes | None,
                        on_message: Callable[[list[bytes]], bool],
                        on_lost: Callable[[str], None]) -> tuple[str, Subscriber]:
        """A subscriber connection for plain channels and patterns (None) or
        for ``shard_channel``'s shard; returns the node it is on (the key
        :meth:`subscriber_node` gives) with it. ``on_message(reply)`` gets
        each message as the backend's array (False: stop and close);
        ``on_lost(reason)`` is called once if the connection fails."""
        raise StoreError("this store has no pub/sub backend")

    def open_blocking(self, argv: Sequence[bytes], keys: Sequence[bytes],
                      retag_as: Sequence[bytes],
                      on_done: Callable[[Any, StoreError | None], None]) -> BlockedCall:
        """A blocking command ``argv`` on ``keys`` for one client, not yet
        started; ``on_done(result, error)`` gets its result as the Store's
        reply vocabulary for the plain command ``retag_as`` (None: it timed
        out or was unblocked)."""
        raise StoreError("this store cannot pass blocking commands through")

    def subscriber_node(self, shard_channel: bytes | None) -> str:
        """Which backend node serves subscriptions to ``shard_channel``
        (None: plain channels and patterns)."""
        return ""

    # -- groups of calls --------------------------------------------------
    def run_grouped(self, fn: Callable[[Store], T]) -> T:
        """``fn(self)``: a function making several calls. Isolated from other
        clients when :attr:`isolates_groups` says so; by default (False) its
        calls run one after another, each atomic on its own."""
        return fn(self)

    def run_isolated(self, fn: Callable[[Store], T]) -> T:
        """Like :meth:`run_grouped`, and the writes ``fn`` makes are logged
        as one record, so a crash replays all of them or none (a script, a
        transaction). Default: :meth:`run_grouped` (nothing to log)."""
        return self.run_grouped(fn)

    def execute_batch(self, calls: Sequence[BatchCall]) -> list[Any]:
        """Run ``calls`` in order as one unit (RESP ``EXEC``): each call's
        result, or the StoreError that call raised, in order. A call that
        fails on its own (INCR of a non-integer) does not stop the others, as
        in Redis; StoreUnavailable is raised for the whole batch.

        Default: the calls inside one :meth:`run_grouped`, so the batch is
        as isolated as a group (the embedded store: under its lock). A
        backend that cannot isolate groups overrides this (the Redis
        backend sends one MULTI/EXEC); every backend's batch is atomic.
        """
        def run_all(store: Store) -> list[Any]:
            results: list[Any] = []
            for call in calls:
                try:
                    results.append(call(store))
                except StoreUnavailable:
                    raise
                except StoreError as exc:
                    results.append(exc)
            return results
        return self.run_grouped(run_all)

    def close(self) -> None:
        """Flush and close; later calls are errors."""
