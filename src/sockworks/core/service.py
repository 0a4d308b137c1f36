"""The contract between a service and the concurrency model that runs it.

A *service* (echo, key-value, ...) never touches a socket. For every accepted
connection the model asks the service for a :class:`Session` and then drives it
with three calls, in the style of h11's sans-IO connection object:

* ``on_connect()`` once, right after accept: the greeting to send, if any;
* ``on_data(data)`` for every chunk received (any size, any split);
* ``on_eof()`` when the peer half-closes its sending side.

Each call returns an :class:`Output`: bytes to send, whether to close after
sending them, and optionally a :class:`Barrier` the model must wait on before
sending (a durability point: with ``--fsync always`` a write may only be
acknowledged after the log is on disk).

Back-pressure: a session never turns one chunk of input into an unbounded
amount of output. Once the replies of one call reach :data:`REPLY_BUDGET`
bytes, it stops running requests, keeps the rest (already received, so
bounded by what one read returned) and sets :attr:`Session.backlog`. The
model then reads nothing more from that connection; once what it sent has
drained below its soft limit (the event loop's write-buffer high-water mark,
or ``sendall`` returning on the thread models) it calls
:meth:`Session.resume` for the next slice, until ``backlog`` is False. So
1,500 pipelined GETs of a 1 MB value in one 13.5 KB read cost about one
megabyte of replies at a time, not 1.5 GB.

Limits the model enforces from outside (``--idle-timeout`` also for a
connection holding part of a request, ``--send-timeout``,
``--client-output-buffer-limit``, ``--maxmemory-clients``) need two things
from a session: :attr:`Session.input_bytes` (what it buffers of unfinished
requests) and nothing else. Each session gets a
:class:`~sockworks.core.clients.ClientHandle` in :attr:`Session.client`
(set by the model right after ``new_session``, before ``on_connect``): its
id, and a ``close(reason)`` safe from any thread, which is how a command on
one connection (``CLIENT KILL``) ends another under every model.

Output outside a call: :meth:`ClientHandle.deliver(data)
<sockworks.core.clients.ClientHandle.deliver>` sends bytes no session call
produced (a blocked command's late reply, pub/sub messages, MONITOR), from
any thread, never blocking the caller; the model writes them in order,
before any later reply, within the output limits. ``ClientHandle.wake()``
asks the model to run the session's backlog on its own thread (a blocked
command that another thread served: its held-back requests run now). A
session that waits for such deliveries says so with
:attr:`Session.expects_deliveries`: the thread models then watch for a
delivery as well as for input, and the idle timeout spares it
(Redis spares blocked and subscribed clients). At shutdown an idle
connection's session gets :meth:`Session.on_stop` (its last words: a
blocked command's null reply) before it is closed.

Threading contract: the model makes the calls for one session from one thread
at a time, in order, and never concurrently. Different sessions may be driven
from different threads at once, so a service's shared state (its store) must be
thread-safe. ``on_data`` must not block on the network; a service whose
backend blocks (Redis) says so through :attr:`Service.blocking`, and the
event-loop models then run its calls in a thread pool.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from sockworks.core.stats import ServerStats

if TYPE_CHECKING:
    from sockworks.core.clients import ClientHandle
    from sockworks.core.config import Endpoint, ServerSettings

__all__ = ["Barrier", "Output", "Session", "Service", "NOTHING", "CLOSE", "REPLY_BUDGET"]

#: Bytes of replies one on_data()/resume() call may produce before the session
#: stops and keeps the rest of its requests as a backlog (checked after each
#: reply, so one call produces at most this plus one reply).
REPLY_BUDGET = 1024 * 1024


class Barrier(Protocol):
    """Something the model waits for before it sends an Output's bytes.

    ``wait`` blocks the calling thread; ``add_done_callback`` registers a
    function called exactly once (from any thread) when the barrier resolves.
    The result is True when the guarded writes are durable and False when they
    failed, in which case the model closes the connection without sending the
    acknowledgement.
    """

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the barrier resolves (at most ``timeout`` seconds); its result."""
        ...

    def add_done_callback(self, fn: Callable[[bool], None]) -> None:
        """Call ``fn(result)`` once when the barrier resolves, from any thread."""
        ...


class Output(NamedTuple):
    """What a session wants the model to do next.

    A NamedTuple rather than a frozen dataclass: one is built per request on
    the hot path, and a frozen dataclass's ``__init__`` (object.__setattr__
    per field) costs several times a tuple's construction.
    """

    data: bytes = b""
    close: bool = False
    barrier: Barrier | None = None


NOTHING = Output()
CLOSE = Output(close=True)


class Session(abc.ABC):
    """One connection's protocol state machine (see the module docstring)."""

    #: The connection's handle, set by the model (None until then, and for a
    #: session driven without a model, as in unit tests).
    client: ClientHandle | None = None

    def on_connect(self) -> Output:
        """The connection was just accepted: the greeting to send, if any. Default: none."""
        return NOTHING

    @abc.abstractmethod
    def on_data(self, data: bytes) -> Output:
        """Consume ``data`` (never empty) and return the replies it produced."""

    def on_eof(self) -> Output:
        """The peer will send no more. Default: close once replies are out."""
        return CLOSE

    def on_close(self) -> None:
        """The connection is gone (any reason). Release per-connection state."""

    @property
    def backlog(self) -> bool:
        """True when requests already received wait for :meth:`resume`
        (the last call's replies reached :data:`REPLY_BUDGET`). Default: never."""
        return False

    def resume(self) -> Output:
        """Run the next slice of the backlog; called only while :attr:`backlog`."""
        return NOTHING

    @property
    def expects_deliveries(self) -> bool:
        """True while another thread may :meth:`ClientHandle.deliver
        <sockworks.core.clients.ClientHandle.deliver>` to this session and
        the session waits for it (a blocked BLPOP, subscriptions, MONITOR).
        The model then acts on a delivery at once even when the peer sends
        nothing, and the idle timeout does not apply. Read by the model after
        every call; it may turn False from another thread. Default: never."""
        return False

    def on_stop(self) -> Output:
        """Graceful shutdown is closing this idle connection: bytes to send
        first (a blocked command's timeout reply). Must not block. Default:
        nothing."""
        return NOTHING

    @property
    def input_bytes(self) -> int:
        """Bytes held of requests not yet run (partial request and backlog)."""
        return 0

    @property
    def busy(self) -> bool:
        """True while a request is partly received.

        Graceful shutdown closes connections that are not busy at once and
        gives busy ones until the grace period ends to complete their request.
        """
        return False


class Service(abc.ABC):
    """A TCP service: a factory of sessions plus its shared resources.

    Subclass it, implement :meth:`new_session`, and run it with
    ``sockworks.Server(MyService())`` (docs/writing-a-service.md).
    """

    #: Name used in logs ("echo", "kv", "resp").
    name: str = "service"
    #: True when on_data may block (network-backed store): event-loop models
    #: then hand each call to a worker thread instead of running it inline.
    blocking: bool = False
    #: The concurrency model a Server uses when none is named.
    default_model: str = "thread"
    #: The settings in force, once a Server has attached this service.
    settings: ServerSettings | None = None
    _stats: ServerStats | None = None

    @property
    def stats(self) -> ServerStats:
        """The server's connection counters (a private set until attached)."""
        if self._stats is None:
            self._stats = ServerStats()
        return self._stats

    def attach(self, stats: ServerStats, settings: ServerSettings) -> None:
        """Called by the Server before it binds: the counters the model keeps
        and the settings in force (a service reports them in STATS/INFO)."""
        self._stats = stats
        self.settings = settings

    def bound(self, address: tuple[str, int]) -> None:
        """Called by the Server once this service's listener is bound, with
        its real address (port 0 resolved): for INFO/CONFIG to report."""

    def bound_endpoint(self, endpoint: Endpoint, address: tuple[str, int]) -> None:
        """Called by the Server for each of this service's endpoints once
        bound (TLS and UNIX socket ones too: ``endpoint.kind``). The default
        passes a plain TCP endpoint's address on to :meth:`bound`."""
        if endpoint.kind == "tcp":
            self.bound(address)

    @abc.abstractmethod
    def new_session(self, peer: str) -> Session:
        """A session for a connection from ``peer`` ("host:port")."""

    def busy_reply(self) -> bytes:
        """Sent to a connection refused by admission control, then closed."""
        return b"ERROR: server busy\n"

    def close(self) -> None:
        """Flush and release shared resources; called once after shutdown."""
