"""What the blocking (thread and process) models share.

* :class:`Waker` — a socketpair that wakes a selector from a signal handler or
  another thread: shutdown never depends on a polling timeout.
* :class:`BlockingModel` — listeners, the accept loop (with admission control
  and EMFILE back-off), and the graceful shutdown order; subclasses say what
  to do with an admitted connection.
* :class:`ConnectionRegistry` and :func:`drive_connection` — the per-connection
  loop (recv -> session -> send) and how shutdown reaches a connection that is
  blocked in recv(): ``shutdown(SHUT_RD)`` makes that recv return b"" at once.

Limits on these models: the kernel enforces the deadlines (SO_RCVTIMEO is
``--idle-timeout`` from the last byte received, so it covers a half-sent
request too; SO_SNDTIMEO is ``--send-timeout``), a send that times out ends
in a reset (SO_LINGER 0) so the close is real, a reply over
``--client-output-buffer-limit`` is refused and the connection reset, and a
session's backlog is run slice by slice after each ``sendall`` returned.
A :class:`ClientHandle`'s close (CLIENT KILL, client eviction, from any
thread) shuts the socket down, which wakes the thread blocked on it.

Deliveries (``ClientHandle.deliver`` from another thread) go to the
connection's outbox, bounded by ``--client-output-buffer-limit`` (over it
the connection is reset); only the connection's own thread writes: it sends
the outbox before any reply, and while its session expects deliveries it
waits in ``poll()`` on the socket and a per-connection :class:`Waker`
(created the first time it is needed) instead of in ``recv()``, so a
delivery is written at once and the session's backlog runs after it.
"""

from __future__ import annotations

import abc
import errno
import functools
import logging
import select
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence

from sockworks.core.activation import listener_for
from sockworks.core.admission import Admission
from sockworks.core.clients import ClientHandle
from sockworks.core.config import Endpoint, ServerSettings
from sockworks.core.limits import OutputLimit, OutputLimits
from sockworks.core.logs import RateLimitedLog
from sockworks.core.net import (
    ACCEPT_RESOURCE_ERRNOS,
    ACCEPT_RETRY_DELAY,
    DISCONNECT_ERRORS,
    RECV_SIZE,
    discard_input,
    format_peer,
    local_name,
    send_nowait,
    set_io_timeouts,
    set_nodelay,
    set_reset_on_close,
)
from sockworks.core.service import REPLY_BUDGET, Output, Service
from sockworks.core.stats import ServerStats
from sockworks.core.tls import handshake_failure
from sockworks.models.base import Model

logger = logging.getLogger(__name__)

__all__ = ["Waker", "BlockingModel", "ConnectionRegistry", "Tracked", "drive_connection",
           "send_reply", "LimitClose", "finish_socket", "deliver", "start_tls", "tls_sender",
           "flush_outbox", "wait_input"]

#: Failed storage writes: rate-limited (a full disk fails every write).
_log_error = RateLimitedLog(logger, logging.ERROR)
#: Deliveries over the output limits (a slow subscriber fills them over and over).
_log_limit = RateLimitedLog(logger, logging.WARNING)

#: Bytes per send() while a reply is over the soft output limit (so the time
#: spent over it is checked between slices).
SEND_SLICE = 256 * 1024


class Waker:
    """Self-pipe (socketpair) to wake a selector; wake() is signal-safe."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)

    def fileno(self) -> int:
        return self._r.fileno()

    def wake(self) -> None:
        try:
            self._w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake (buffer full) or closing

    def drain(self) -> None:
        try:
            while self._r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        self._r.close()
        self._w.close()


class Tracked:
    """A live connection as the shutdown logic and the client registry see it.

    Creates the session and its :class:`ClientHandle`, registered in
    ``stats.clients`` until :meth:`forget`. Holds the outbox of delivered
    bytes (``ClientHandle.deliver``) until the connection's thread sends it.
    """

    __slots__ = ("sock", "session", "peer", "active", "handle", "unsent", "kill_reason",
                 "reset", "stats", "limits", "out_lock", "outbox", "outbox_bytes",
                 "over_soft_since", "waker", "wake", "woken", "gone", "__weakref__")

    def __init__(self, sock: socket.socket, service: Service, peer: str,
                 stats: ServerStats, limits: OutputLimits | None = None) -> None:
        self.sock = sock
        self.peer = peer
        self.stats = stats
        #: The output limits deliveries are held to, by the handle's
        #: output_class (None: none).
        self.limits = limits
        #: True from "bytes received" until "reply sent".
        self.active = False
        #: Bytes of the reply being sent not yet handed to the kernel.
        self.unsent = 0
        #: Set by a close asked for from another thread (CLIENT KILL, eviction).
        self.kill_reason: str | None = None
        #: Close with RST (SO_LINGER 0) rather than FIN.
        self.reset = False
        #: Delivered bytes not yet sent, under out_lock.
        self.out_lock = threading.Lock()
        self.outbox: list[bytes] = []
        self.outbox_bytes = 0
        self.over_soft_since: float | None = None
        #: Wakes the connection's thread from wait_input (made when first needed).
        self.waker: Waker | None = None
        #: How a delivery gets the connection's attention (the pool re-arms epoll).
        self.wake: Callable[[], None] = self._wake_thread
        #: A wake-up (ClientHandle.wake) not yet acted on, under out_lock.
        self.woken = False
        #: Set by forget(): deliveries are refused from then on.
        self.gone = False
        self.handle = ClientHandle(stats.next_client_id(), peer, self._kill,
                                   input_bytes=self._input_bytes,
                                   output_bytes=self._output_bytes,
                                   deliverer=self._deliver, local=local_name(sock),
                                   fd=sock.fileno())
        self.session = service.new_session(peer)
        self.session.client = self.handle
        stats.clients.add(self.handle)

    def _input_bytes(self) -> int:
        return self.session.input_bytes

    def _output_bytes(self) -> int:
        return self.unsent + self.outbox_bytes

    def _kill(self, reason: str, abort: bool) -> None:
        self.kill_reason = reason
        self.reset = self.reset or abort
        logger.info("closing %s: %s", self.peer, reason)
        _shutdown(self.sock, socket.SHUT_RDWR)  # wakes a recv() or sendall() in progress

    def _deliver(self, data: bytes) -> bool:
        """ClientHandle.deliver (b"": wake): queue, check the limits, wake the thread."""
        with self.out_lock:
            if self.gone or self.kill_reason is not None:
                return False
            if not data:  # ClientHandle.wake
                self.woken = True
                over = None
            else:
                self.outbox.append(data)
                self.outbox_bytes += len(data)
                over = self._over_limit(self.outbox_bytes + self.unsent)
        if over is not None:
            self.stats.output_limit()
            _log_limit("closing %s: %s", self.peer, over)
            self.handle.close(over, abort=True)
            return False
        self.wake()
        return True

    def _over_limit(self, pending: int) -> str | None:
        """Why ``pending`` unsent bytes end the connection (out_lock held)."""
        if self.limits is None:
            return None
        classes = self.limits.classes
        limit = classes.get(self.handle.output_class, classes["normal"])
        if limit.hard and pending > limit.hard:
            return (f"{pending} bytes of unsent output over client-output-buffer-limit "
                    f"hard {limit.hard}")
        if limit.soft and pending > limit.soft:
            now = time.monotonic()
            if self.over_soft_since is None:
                self.over_soft_since = now
            elif now - self.over_soft_since >= limit.soft_seconds:
                return (f"{pending} bytes of unsent output over client-output-buffer-limit "
                        f"soft {limit.soft} for {limit.soft_seconds}s")
        else:
            self.over_soft_since = None
        return None

    def _wake_thread(self) -> None:
        waker = self.waker
        if waker is not None:
            waker.wake()

    def forget(self) -> None:
        self.stats.clients.remove(self.handle)
        with self.out_lock:
            self.gone = True
            self.outbox = []
            self.outbox_bytes = 0
            waker, self.waker = self.waker, None
        if waker is not None:
            waker.close()

    @property
    def busy(self) -> bool:
        return self.active or self.session.busy


class ConnectionRegistry:
    """The set of live connections, for graceful and forced shutdown."""

    def __init__(self) -> None:
        self._conns: set[Tracked] = set()
        self._cond = threading.Condition()
        self.stopping = False
        #: Per-event warnings of this server (limit closes, aborts, socket
        #: errors): a thousand hostile clients make a line every few seconds.
        self.log_limit = RateLimitedLog(logger, logging.WARNING)

    def __len__(self) -> int:
        return len(self._conns)

    def add(self, conn: Tracked) -> None:
        with self._cond:
            self._conns.add(conn)

    def remove(self, conn: Tracked) -> None:
        with self._cond:
            self._conns.discard(conn)
            if not self._conns:
                self._cond.notify_all()

    def close_idle(self) -> None:
        """Wake every idle connection's recv() with EOF so it closes itself;
        busy ones close themselves after their reply (they see ``stopping``)."""
        with self._cond:
            self.stopping = True
            conns = list(self._conns)
        for conn in conns:
            if not conn.busy:
                _shutdown(conn.sock, socket.SHUT_RD)

    def wait_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._conns:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def force_close(self) -> int:
        with self._cond:
            conns = list(self._conns)
        for conn in conns:
            _shutdown(conn.sock, socket.SHUT_RDWR)
        return len(conns)


def _shutdown(sock: socket.socket, how: int) -> None:
    try:
        # The plain socket's call, for a TLS socket too: SSLSocket.shutdown
        # would drop its TLS state under a thread still reading from it.
        socket.socket.shutdown(sock, how)
    except OSError:
        pass  # already closed or never connected


class LimitClose(Exception):
    """A reply the connection may not be sent (client-output-buffer-limit)."""


def send_reply(conn: Tracked, send: Callable[[bytes], object], data: bytes,
               limit: OutputLimit) -> None:
    """Send ``data`` within the output limits; LimitClose when over them."""
    size = len(data)
    if limit.hard and size > limit.hard:
        raise LimitClose(f"a {size}-byte reply is over client-output-buffer-limit "
                         f"hard {limit.hard}")
    if not limit.soft or size <= limit.soft:
        conn.unsent = size
        send(data)
        conn.unsent = 0
        return
    view = memoryview(data)
    since = time.monotonic()
    while view:
        if len(view) > limit.soft and time.monotonic() - since >= limit.soft_seconds:
            raise LimitClose(f"{len(view)} bytes unsent over client-output-buffer-limit "
                             f"soft {limit.soft} for {limit.soft_seconds}s")
        conn.unsent = len(view)
        send(view[:SEND_SLICE])  # type: ignore[arg-type]
        view = view[SEND_SLICE:]
    conn.unsent = 0


def flush_outbox(conn: Tracked, send: Callable[[bytes], object], limit: OutputLimit) -> None:
    """Send what was delivered to ``conn`` (from its own thread)."""
    with conn.out_lock:
        if not conn.outbox:
            return
        chunks, conn.outbox = conn.outbox, []
        conn.outbox_bytes = 0
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        conn.unsent = len(data)
    send_reply(conn, send, data, limit)


def wait_input(conn: Tracked) -> bool:
    """Wait for input or a delivery (the session expects deliveries): True
    when the socket has something to read (or is closed), False when woken
    by a delivery. No timeout: the idle timeout spares such a session."""
    sock = conn.sock
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True  # decrypted bytes poll() cannot see
    with conn.out_lock:
        if conn.waker is None:
            conn.waker = Waker()
        if conn.outbox or conn.woken or conn.gone:
            conn.woken = False
            return False
        waker = conn.waker
    if conn.session.backlog:
        return False  # woken before the waker existed
    poller = select.poll()
    fd = sock.fileno()
    poller.register(fd, select.POLLIN)
    poller.register(waker.fileno(), select.POLLIN)
    ready = poller.poll()
    if any(f == waker.fileno() for f, _ in ready):
        waker.drain()
        with conn.out_lock:
            conn.woken = False
    return any(f == fd for f, _ in ready)


def drive_connection(
    conn: Tracked,
    registry: ConnectionRegistry,
    recv: Callable[[], bytes],
    send: Callable[[bytes], object],
    settings: ServerSettings,
    stats: ServerStats,
) -> None:
    """Run one connection to its end. Never raises for network errors.

    ``recv``/``send`` are the blocking primitives (a socket's, or a
    StreamRequestHandler's rfile/wfile). The idle timeout is the socket's:
    a silent peer ends in TimeoutError (settimeout) or BlockingIOError
    (kernel SO_RCVTIMEO, see :func:`sockworks.core.net.set_io_timeouts`), and
    so does a send to a peer that stopped reading (``--send-timeout``): the
    connection is then marked for a reset, so closing it is immediate.
    While the session expects deliveries the thread waits in
    :func:`wait_input` instead; a delivery is sent at once, then the
    session's backlog runs.
    """
    session, peer = conn.session, conn.peer
    on_data = session.on_data
    limit = settings.client_output_buffer_limit.normal
    # A reply this short, with no barrier, is sent straight away: no limit
    # can refuse it (the per-request path, kept to a few bytecodes).
    direct = min([n for n in (limit.hard, limit.soft) if n] or [REPLY_BUDGET * 1024])
    idle_timeout = settings.idle_timeout
    log_limit = registry.log_limit
    try:
        if not deliver(conn, session.on_connect(), send, limit):
            return
        while True:
            if conn.outbox_bytes or session.backlog:
                # Woken by a delivery: send it, then what the session held back.
                conn.active = True
                flush_outbox(conn, send, limit)
                while session.backlog and conn.kill_reason is None:
                    if not deliver(conn, session.resume(), send, limit):
                        return
                conn.active = False
            if conn.kill_reason is not None:
                return
            if registry.stopping and not session.busy:
                deliver(conn, session.on_stop(), send, limit)
                return
            if session.expects_deliveries and not wait_input(conn):
                continue
            try:
                data = recv()
            except (TimeoutError, BlockingIOError):
                if conn.kill_reason is not None:
                    return
                stats.idle_timeout()
                held = session.input_bytes
                if held:
                    stats.deadline()
                    log_limit("closing %s: idle for %gs holding %d bytes of an unfinished "
                              "request", peer, idle_timeout, held)
                else:
                    logger.debug("closing %s: idle for %gs", peer, idle_timeout)
                return
            if conn.kill_reason is not None:
                return
            if not data:
                if registry.stopping:  # shutdown(SHUT_RD) of an idle connection
                    deliver(conn, session.on_stop(), send, limit)
                    return
                logger.debug("%s closed its side", peer)
                deliver(conn, session.on_eof(), send, limit)
                return
            conn.active = True
            out = on_data(data)
            reply, close, barrier, _ = out
            if barrier is None and not close and len(reply) <= direct:
                if reply:
                    conn.unsent = len(reply)
                    send(reply)
                    conn.unsent = 0
            elif not deliver(conn, out, send, limit):
                return
            # Back-pressure: requests held back run once the last slice is sent.
            while session.backlog and conn.kill_reason is None:
                if not deliver(conn, session.resume(), send, limit):
                    return
            conn.active = False
    except LimitClose as exc:
        conn.reset = True
        stats.output_limit()
        log_limit("closing %s: %s", peer, exc)
    except (TimeoutError, BlockingIOError):
        conn.reset = True
        stats.send_timeout()
        log_limit("closing %s: aborted: peer not reading (send blocked %gs)", peer,
                  settings.send_timeout)
    except DISCONNECT_ERRORS as exc:
        logger.debug("%s disconnected: %s", peer, exc)
    except OSError as exc:
        if exc.errno in (errno.EBADF, errno.ENOTCONN) or conn.kill_reason is not None:
            logger.debug("%s: connection closed: %s", peer, exc)
        else:
            log_limit("%s: socket error: %s", peer, exc)
    except Exception:
        # The one place that keeps the server alive after a bug in a service.
        logger.exception("unexpected error on connection from %s", peer)
    finally:
        conn.active = False
        conn.unsent = 0


def deliver(conn: Tracked, out: Output, send: Callable[[bytes], object],
             limit: OutputLimit) -> bool:
    """Send an Output (after its barrier, and after what was delivered to
    the connection meanwhile); False when the connection must end.

    The barrier's wait writes the log batch this thread's chunk made (one
    write for all of it) and, under ``always``, waits for the shared fsync.
    """
    data = out.data
    barrier = out.barrier
    if barrier is not None and not barrier.wait():
        if out.failed is None:
            _log_error("write to storage failed (%s); closing %s without acknowledging",
                       barrier.error, conn.peer)
            return False
        _log_error("write to storage failed (%s); error replies to %s", barrier.error,
                   conn.peer)
        data = out.failed(barrier.error)
    if conn.outbox_bytes:
        flush_outbox(conn, send, limit)
    if data:
        send_reply(conn, send, data, limit)
    return not out.close


def finish_socket(conn: Tracked) -> None:
    """Close the connection's socket: a reset if it must not linger."""
    if conn.reset:
        set_reset_on_close(conn.sock)
    conn.sock.close()


class BlockingModel(Model):
    """Listeners + accept loop + graceful shutdown for thread/process models."""

    def __init__(self, endpoints: Sequence[Endpoint], settings: ServerSettings,
                 stats: ServerStats) -> None:
        super().__init__(endpoints, settings, stats)
        self.admission = Admission(settings.max_connections, stats,
                                   lambda: settings.max_connections)
        self.registry = ConnectionRegistry()
        self.waker = Waker()
        self._stop = threading.Event()
        self._log_accept_error = RateLimitedLog(logger, logging.ERROR)

    # -- Model API -------------------------------------------------------
    def bind(self) -> list[tuple[object, ...]]:
        for ep in self.endpoints:
            self.listeners.append(listener_for(ep, backlog=self.settings.backlog))
        return [sock.getsockname() for sock in self.listeners]

    def request_stop(self) -> None:
        self._stop.set()
        self.waker.wake()

    def serve_forever(self) -> None:
        try:
            self.accept_loop()
        finally:
            self.shutdown()

    # -- hooks -----------------------------------------------------------
    @abc.abstractmethod
    def handle(self, sock: socket.socket, peer: str, endpoint: Endpoint) -> None:
        """Serve an admitted connection (must not block the accept loop)."""

    def tick_interval(self) -> float | None:
        """How often the accept loop calls :meth:`on_tick` (None: never)."""
        return 0.5

    def on_tick(self) -> None:
        """Periodic housekeeping in the accept loop: client memory (and, in
        subclasses, idle sweeps)."""
        self.stats.clients.enforce_memory(self.settings.client_memory_cap)

    def on_wake(self) -> None:
        """Called in the accept loop after the waker fired (e.g. SIGCHLD)."""

    def stop_accepting(self) -> None:
        for sock in self.listeners:
            sock.close()

    def drain(self, grace: float) -> None:
        """Close idle connections, wait for busy ones, force-close the rest."""
        self.registry.close_idle()
        if not self.registry.wait_empty(grace):
            forced = self.registry.force_close()
            logger.warning("grace period over: force-closed %d connection(s)", forced)
            self.registry.wait_empty(5.0)

    def join(self) -> None:
        """Wait for the model's threads/processes after connections are gone."""

    # -- the accept loop ---------------------------------------------------
    def accept_loop(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            for index, sock in enumerate(self.listeners):
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ, index)
            sel.register(self.waker, selectors.EVENT_READ, None)
            tick = self.tick_interval()
            next_tick = time.monotonic() + tick if tick else None
            while not self._stop.is_set():
                backoff = False
                timeout = None if next_tick is None else max(0.0, next_tick - time.monotonic())
                for key, _ in sel.select(timeout):
                    if key.data is None:
                        self.waker.drain()
                        self.on_wake()
                        continue
                    backoff |= self._accept_ready(key.fileobj, self.endpoints[key.data])  # type: ignore[arg-type]
                if next_tick is not None and time.monotonic() >= next_tick:
                    self.on_tick()
                    next_tick = time.monotonic() + (tick or 0.0)
                if backoff and not self._stop.is_set():
                    # Out of descriptors: give closing connections time to free
                    # some instead of spinning on a listener that stays readable.
                    self._stop.wait(ACCEPT_RETRY_DELAY)
        finally:
            sel.close()

    def _accept_ready(self, listener: socket.socket, endpoint: Endpoint) -> bool:
        """Accept what is queued (bounded batch). True means back off."""
        for _ in range(64):
            try:
                sock, addr = listener.accept()
            except BlockingIOError:
                return False
            except OSError as exc:
                if exc.errno in ACCEPT_RESOURCE_ERRNOS:
                    self._log_accept_error("accept() failed: %s; retrying in %.0f ms",
                                           exc.strerror, ACCEPT_RETRY_DELAY * 1000)
                    return True
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            sock.setblocking(True)
            peer = format_peer(addr, endpoint.unix_path)
            if not self.admission.try_admit(peer):
                if endpoint.tls is None:  # a TLS client could not read it
                    send_nowait(sock, endpoint.service.busy_reply())
                sock.close()
                continue
            try:
                set_nodelay(sock)
                self.handle(sock, peer, endpoint)
            except Exception:
                # Could not even start serving it (thread limit, fork failure).
                logger.exception("cannot serve connection from %s", peer)
                self.admission.release()
                sock.close()
        return False

    def shutdown(self) -> None:
        self.stop_accepting()
        active = self.admission.active
        if active:
            logger.info("waiting up to %gs for %d connection(s)", self.settings.grace, active)
        self.drain(self.settings.grace)
        self.join()
        self.waker.close()
        logger.info("server stopped")




def start_tls(conn: Tracked, endpoint: Endpoint, timeout: float) -> bool:
    """Wrap ``conn.sock`` in TLS and complete the handshake within
    ``timeout`` (the idle timeout; 0: no bound). False: it failed (logged at
    DEBUG: a plaintext client, a stall, a refused certificate)."""
    assert endpoint.tls is not None
    tls_sock = endpoint.tls.context.wrap_socket(conn.sock, server_side=True,
                                                do_handshake_on_connect=False)
    conn.sock = tls_sock
    # Python-level timeouts only: with the kernel's SO_RCVTIMEO, a blocking
    # SSL socket would retry the read forever instead of timing out.
    tls_sock.settimeout(timeout or None)
    try:
        tls_sock.do_handshake()
    except (OSError, ValueError) as exc:
        logger.debug("closing %s: %s", conn.peer, handshake_failure(exc))
        discard_input(conn.sock)
        return False
    return True


def tls_sender(sock: socket.socket, send_timeout: float,
               idle_timeout: float) -> Callable[[bytes], None]:
    """sendall on a TLS socket bounded by ``send_timeout``; reads stay
    bounded by the idle timeout (switching is no system call)."""
    send_bound, read_bound = send_timeout or None, idle_timeout or None

    def send(data: bytes) -> None:
        sock.settimeout(send_bound)
        try:
            sock.sendall(data)
        finally:
            sock.settimeout(read_bound)

    return send


def serve_socket(model: BlockingModel, sock: socket.socket, peer: str,
                 endpoint: Endpoint) -> None:
    """Thread body for one connection on a plain socket (thread model)."""
    conn = Tracked(sock, endpoint.service, peer, model.stats,
                   model.settings.client_output_buffer_limit)
    model.registry.add(conn)
    settings = model.settings
    try:
        if endpoint.tls is not None:
            if not start_tls(conn, endpoint, settings.idle_timeout):
                return
            sock = conn.sock
            send = tls_sender(sock, settings.send_timeout, settings.idle_timeout)
        else:
            set_io_timeouts(sock, settings.idle_timeout, settings.send_timeout)
            send = sock.sendall
        if model.registry.stopping:
            return
        drive_connection(conn, model.registry, functools.partial(sock.recv, RECV_SIZE),
                         send, settings, model.stats)
    finally:
        model.registry.remove(conn)
        conn.forget()
        try:
            conn.session.on_close()
        finally:
            finish_socket(conn)
            model.admission.release()
