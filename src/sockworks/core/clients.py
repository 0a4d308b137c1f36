"""The live clients of one server process: handles a command can act on.

The model gives every connection a :class:`ClientHandle` (its id, its peer,
the memory it holds, a ``close(reason)`` and a ``deliver(data)`` that are
safe from any thread) and registers it in the :class:`ClientRegistry` kept in
:attr:`sockworks.core.stats.ServerStats.clients`. Services read the registry
for ``CLIENT KILL`` and ``INFO clients``; the model's periodic sweep calls
:meth:`ClientRegistry.enforce_memory` to keep the memory held by all
clients (unfinished requests plus unsent replies) under
``--maxmemory-clients``, closing the client holding the most first, as
Redis 7's client eviction does.

Forking models (prefork, socketserver-fork) keep one registry per process:
``CLIENT KILL`` there reaches the clients of the process that runs it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sockworks.core.logs import RateLimitedLog

logger = logging.getLogger(__name__)

__all__ = ["ClientHandle", "ClientRegistry", "RECENT_WINDOW"]

#: INFO's client_recent_max_* cover about this many seconds, as Redis's
#: CLIENTS_PEAK_MEM_USAGE_SLOTS (8 one-second slots).
RECENT_WINDOW = 8.0


class ClientHandle:
    """One connection as the rest of the server sees it.

    ``closer(reason, abort)`` is the model's: it must be safe from any thread and
    end the connection promptly (an event loop schedules the close on its
    loop; a thread model shuts the socket down, which wakes the thread
    blocked on it); ``abort`` asks for a reset that drops unsent replies at
    once, instead of a close that lets them drain (within send-timeout).
    ``input_bytes`` and ``output_bytes`` are callables the model provides:
    bytes of unfinished requests, bytes of replies not yet handed to the
    kernel (pushed bytes waiting included). ``deliverer(data)`` is the
    model's side of :meth:`deliver` (None: a handle without a model, which
    delivers nothing).
    """

    __slots__ = ("id", "peer", "local", "fd", "created", "_closer", "_closed", "_lock",
                 "input_bytes", "output_bytes", "_deliverer", "output_class", "no_evict")

    def __init__(self, client_id: int, peer: str, closer: Callable[[str, bool], object], *,
                 input_bytes: Callable[[], int] = lambda: 0,
                 output_bytes: Callable[[], int] = lambda: 0,
                 deliverer: Callable[[bytes], bool] | None = None,
                 local: str = "?", fd: int = -1) -> None:
        self.id = client_id
        self.peer = peer
        #: The local address the client connected to (CLIENT LIST laddr=,
        #: CLIENT KILL LADDR), as ``peer`` is shown; "?" when unknown.
        self.local = local
        #: The connection's file descriptor (CLIENT LIST fd=); -1 unknown.
        self.fd = fd
        self.created = time.monotonic()
        self._closer = closer
        self._closed = False
        self._lock = threading.Lock()
        self.input_bytes = input_bytes
        self.output_bytes = output_bytes
        self._deliverer = deliverer
        #: The client-output-buffer-limit class deliveries are held to: a
        #: session sets "pubsub" once it subscribes, as Redis classifies a
        #: client by what it does.
        self.output_class = "normal"
        #: CLIENT NO-EVICT ON: never closed by maxmemory-clients (its memory
        #: still counts in the total, as in Redis).
        self.no_evict = False

    @property
    def memory(self) -> int:
        return self.input_bytes() + self.output_bytes()

    @property
    def closing(self) -> bool:
        """True once a close was asked for: the client is gone for CLIENT
        KILL and CLIENT LIST (Redis frees it at once), though the model may
        still be flushing or tearing the connection down."""
        return self._closed

    def deliver(self, data: bytes) -> bool:
        """Send ``data`` to this client outside any session call (a wake-up
        reply, a pub/sub message, a MONITOR line); safe from any thread.

        It never blocks on the network: the bytes are queued and the model
        writes them, in the order of the ``deliver`` calls, after every reply
        the model already had and before any reply the session produces
        afterwards (a session that waits for them says so with
        :attr:`Session.expects_deliveries`; to have its held-back requests
        run afterwards it calls :meth:`wake`). Pending pushed bytes
        count as output: over ``--client-output-buffer-limit`` (hard, or
        soft for its seconds) the connection is reset and this returns
        False, as it does once the connection is closing. True: queued.
        """
        if self._closed or self._deliverer is None:
            return False
        if not data:
            return True
        return self._deliverer(data)

    def wake(self) -> bool:
        """Ask the model to run the session's backlog (:meth:`Session.resume`)
        on the session's own thread soon; safe from any thread, never blocks.
        A session that stops waiting because of another thread (a push served
        its BLPOP) changes its state first, then calls this: the model's next
        look at :attr:`Session.backlog` is after the call. Bytes delivered
        before it are written before anything the resume produces. False once
        the connection is closing."""
        if self._closed or self._deliverer is None:
            return False
        return self._deliverer(b"")

    def close(self, reason: str, *, abort: bool = False) -> bool:
        """Ask the model to close this connection (once; any thread). False
        if it was already asked."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
        self._closer(reason, abort)
        return True


class ClientRegistry:
    """Live handles by id; thread-safe. One per server process."""

    def __init__(self) -> None:
        self._clients: dict[int, ClientHandle] = {}
        self._lock = threading.Lock()
        self.evicted = 0
        self._recent: list[tuple[float, int, int]] = []  # (time, max in, max out)
        self._log_evict = RateLimitedLog(logger, logging.WARNING)

    def add(self, handle: ClientHandle) -> None:
        with self._lock:
            self._clients[handle.id] = handle

    def remove(self, handle: ClientHandle) -> None:
        with self._lock:
            if self._clients.get(handle.id) is handle:
                del self._clients[handle.id]

    def __len__(self) -> int:
        return len(self._clients)

    def handles(self) -> list[ClientHandle]:
        """The live clients (those being closed are left out)."""
        with self._lock:
            return [h for h in self._clients.values() if not h.closing]

    def get(self, client_id: int) -> ClientHandle | None:
        with self._lock:
            handle = self._clients.get(client_id)
        return None if handle is None or handle.closing else handle

    def by_addr(self, addr: str) -> list[ClientHandle]:
        return [h for h in self.handles() if h.peer == addr]

    # -- memory ------------------------------------------------------------------
    def sample(self) -> tuple[int, int, int, list[tuple[int, ClientHandle]]]:
        """(total, max input, max output, [(memory, handle)...]) right now;
        also remembered for :meth:`recent_max`."""
        total = max_in = max_out = 0
        sizes: list[tuple[int, ClientHandle]] = []
        for handle in self.handles():
            try:
                inp, out = handle.input_bytes(), handle.output_bytes()
            except Exception:  # a connection closing under us
                continue
            max_in, max_out = max(max_in, inp), max(max_out, out)
            total += inp + out
            if inp + out:
                sizes.append((inp + out, handle))
        now = time.monotonic()
        with self._lock:
            self._recent = [r for r in self._recent if now - r[0] < RECENT_WINDOW]
            self._recent.append((now, max_in, max_out))
        return total, max_in, max_out, sizes

    def recent_max(self) -> tuple[int, int]:
        """Largest input and output buffer of any client over the last
        :data:`RECENT_WINDOW` seconds (INFO client_recent_max_*)."""
        _, max_in, max_out, _ = self.sample()
        with self._lock:
            for _, i, o in self._recent:
                max_in, max_out = max(max_in, i), max(max_out, o)
        return max_in, max_out

    def enforce_memory(self, cap: int) -> int:
        """Close the biggest clients until the total is under ``cap``
        (0: no cap). Returns how many were closed."""
        if not cap:
            return 0
        total, _, _, sizes = self.sample()
        if total <= cap:
            return 0
        closed = 0
        for size, handle in sorted(sizes, key=lambda s: s[0], reverse=True):
            if total <= cap:
                break
            if handle.no_evict:
                continue
            if handle.close(f"client memory {size} bytes; all clients hold {total} bytes, "
                            f"over maxmemory-clients {cap}", abort=True):
                with self._lock:
                    self.evicted += 1
                self._log_evict("evicting client %s (id %d): holds %d bytes; all clients "
                                "%d bytes > maxmemory-clients %d",
                                handle.peer, handle.id, size, total, cap)
                closed += 1
            total -= size
        return closed
