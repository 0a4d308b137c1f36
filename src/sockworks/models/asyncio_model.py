"""One event loop for every connection: asyncio.Protocol, uvloop when installed.

Callbacks, not coroutines, on the hot path: ``data_received`` hands the bytes
to the session and writes its replies in the same call, so a request costs no
task creation and no await (this is how uvicorn's fast path and Redis-like
servers in Python get their speed). Flow control is honoured both ways: when
the peer stops reading and our write buffer passes the high-water mark we stop
reading from it too, so a client cannot make us buffer without bound.

Deadlines and limits cost no timer per connection: one sweep per loop, every
``min(1 s, idle/4)``, checks every connection's last activity (a byte
received, or unsent replies shrinking) against ``--idle-timeout`` — a
connection holding half a request included — and its unsent replies against
``--client-output-buffer-limit``, and keeps all clients' memory under
``--maxmemory-clients``. A close that waits for a peer that reads nothing is
aborted (RST) after ``--send-timeout``. A session's backlog (see
core/service.py) is run a slice at a time, each once the write buffer has
drained below its high-water mark. A delivery (``ClientHandle.deliver``,
any thread) is queued under a lock, counted against the hard output limit
at once, and written by the loop before the connection's next reply; the
session's backlog then runs. Shutdown closes the listeners, closes idle
connections, lets busy ones finish, and force-closes after the grace period;
it never calls ``Server.wait_closed()``, which on Python 3.12+ waits for idle
clients forever.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, cast

from sockworks.core.activation import listener_for
from sockworks.core.admission import Admission
from sockworks.core.clients import ClientHandle
from sockworks.core.config import Endpoint, ServerSettings
from sockworks.core.limits import OutputLimit
from sockworks.core.logs import RateLimitedLog
from sockworks.core.loop import loop_name, new_event_loop
from sockworks.core.net import (
    ACCEPT_RESOURCE_ERRNOS,
    ACCEPT_RETRY_DELAY,
    format_address,
    format_peer,
)
from sockworks.core.service import Barrier, Output, Service, Session
from sockworks.core.stats import ServerStats
from sockworks.core.tls import handshake_failure
from sockworks.models.base import Model, install_stop_signals

logger = logging.getLogger(__name__)

__all__ = ["AsyncioModel"]

#: Connections accepted per readiness callback before yielding to the loop.
ACCEPT_BATCH = 64

#: A TLS close waits this long for the peer's close_notify (asyncio's default,
#: 30 s, would hold every idle TLS client that long at shutdown).
TLS_CLOSE_TIMEOUT = 1.0

#: Pause reading from a peer whose replies pile up past this (bytes).
WRITE_HIGH_WATER = 1024 * 1024


class _Connection(asyncio.Protocol):
    __slots__ = ("model", "service", "session", "transport", "peer", "last_active",
                 "pauses", "pending", "closing", "admitted", "slow", "on_data",
                 "write", "time", "handle", "over_soft_since", "last_unsent", "abort_timer",
                 "unix_path", "push_lock", "pushed", "pushed_bytes", "held", "waiting")

    def __init__(self, model: AsyncioModel, service: Service,
                 unix_path: str | None = None) -> None:
        self.model = model
        self.service = service
        self.unix_path = unix_path
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.last_active = 0.0
        self.pauses: set[str] = set()
        self.pending = 0          # outputs waiting on a worker thread
        #: Outputs held for the log (their barrier), in order; a reply
        #: behind one waits too, so replies keep their order.
        self.held: collections.deque[Output] = collections.deque()
        #: The barrier whose resolution will call release() (one callback each).
        self.waiting: Barrier | None = None
        self.closing = False
        self.admitted = False
        #: True unless data_received may take the inline fast path (see _update_slow).
        self.slow = True
        # Bound in connection_made; until then (or if refused) the slow path
        # runs, never these.
        self.on_data: Callable[[bytes], Output] = _no_session
        self.write: Callable[[bytes], object] = _no_session
        self.time = model.loop.time
        self.handle: ClientHandle | None = None
        #: loop time the unsent replies went over the soft limit (None: under).
        self.over_soft_since: float | None = None
        #: unsent bytes at the last sweep: a shrinking buffer is activity.
        self.last_unsent = 0
        #: the send-timeout guard of a close waiting for the peer to read.
        self.abort_timer: asyncio.TimerHandle | None = None
        #: Delivered bytes the loop has not written yet (under push_lock).
        self.push_lock = threading.Lock()
        self.pushed: list[bytes] = []
        self.pushed_bytes = 0

    def _local(self, transport: asyncio.Transport) -> str:
        """The local address, shown as the peer is (CLIENT LIST laddr=)."""
        if self.unix_path is not None:
            return f"{self.unix_path}:0"
        sockname = transport.get_extra_info("sockname")
        return format_address(sockname) if sockname else "?"

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        if self.unix_path is not None:
            self.peer = format_peer(peername, self.unix_path)
        else:
            self.peer = format_address(peername) if peername else "?"
        model = self.model
        if model.stopping or not model.admission.try_admit(self.peer):
            transport.write(self.service.busy_reply())
            transport.close()
            return
        self.admitted = True
        model.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        transport.set_write_buffer_limits(high=model.write_high_water)
        loop = model.loop
        self.handle = handle = ClientHandle(
            model.stats.next_client_id(), self.peer,
            lambda reason, abort: loop.call_soon_threadsafe(self.kill, reason, abort),
            input_bytes=self._input_bytes, output_bytes=self._output_bytes,
            deliverer=self._deliver_threadsafe, local=self._local(transport),
            fd=sock.fileno() if sock is not None else -1)
        self.session = session = self.service.new_session(self.peer)
        session.client = handle
        model.stats.clients.add(handle)
        self.on_data = session.on_data
        self.write = transport.write
        self.last_active = loop.time()
        self._run(session.on_connect)
        self._update_slow()

    def _input_bytes(self) -> int:
        return self.session.input_bytes if self.session is not None else 0

    def _output_bytes(self) -> int:
        transport = self.transport
        held = transport.get_write_buffer_size() if transport is not None else 0
        return held + self.pushed_bytes

    # -- deliveries (ClientHandle.deliver, from any thread) ------------------------
    def _deliver_threadsafe(self, data: bytes) -> bool:
        if not data:  # ClientHandle.wake: look at the session's backlog
            if self.closing or not self.admitted:
                return False
            self.model.loop.call_soon_threadsafe(self._flush_pushed)
            return True
        hard = self._output_limit().hard
        with self.push_lock:
            if self.closing or not self.admitted:
                return False
            self.pushed.append(data)
            self.pushed_bytes += len(data)
            first = len(self.pushed) == 1
            over = bool(hard) and self._output_bytes() > hard
        if over:
            # Checked here, not when the loop gets to it: a flood of
            # deliveries cannot pile up in the loop's queue.
            self.model.stats.output_limit()
            self.model.log_limit("closing %s: %d bytes of unsent output over "
                                 "client-output-buffer-limit hard %d", self.peer,
                                 self._output_bytes(), hard)
            if self.handle is not None:
                self.handle.close("over client-output-buffer-limit", abort=True)
            return False
        if first:
            self.model.loop.call_soon_threadsafe(self._flush_pushed)
        return True

    def _output_limit(self) -> OutputLimit:
        """The limits of the client's class (normal; pubsub once subscribed)."""
        if self.handle is None or self.handle.output_class == "normal":
            return self.model.output_limit
        classes = self.model.settings.client_output_buffer_limit.classes
        return classes.get(self.handle.output_class, self.model.output_limit)

    def _take_pushed(self) -> bytes:
        with self.push_lock:
            pushed, self.pushed = self.pushed, []
            self.pushed_bytes = 0
        return pushed[0] if len(pushed) == 1 else b"".join(pushed)

    def _flush_pushed(self) -> None:
        """Write what was delivered; run the session's backlog if it has one
        (ClientHandle.wake: a woken session's held-back requests)."""
        transport = self.transport
        if transport is None or self.closing or transport.is_closing():
            return
        if self.pushed and not self.held:  # held: they follow the held output (_send)
            transport.write(self._take_pushed())
        session = self.session
        if session is not None and session.backlog and not self.pending:
            self._start_backlog()

    def _update_slow(self) -> None:
        self.slow = (self.session is None or self.closing or self.service.blocking
                     or bool(self.pending) or bool(self.held) or bool(self.pauses))

    def data_received(self, data: bytes) -> None:
        # The hot path: every request of every connection comes through here.
        self.last_active = self.time()
        if self.slow:
            self._data_received_slow(data)
            return
        try:
            output = self.on_data(data)
        except Exception:
            logger.exception("unexpected error on connection from %s", self.peer)
            self._abort()
            return
        out, close, barrier, _ = output
        if barrier is not None:
            # Writes: the reply waits for the end of this loop iteration,
            # when one log write covers every connection's (AsyncioModel.defer).
            self.model.defer(self, output)
            return
        if self.pushed:
            self.write(self._take_pushed())  # delivered before this reply
        if out:
            self.write(out)
        if close:
            self._close()
        elif self.model.stopping and not self.busy:
            self.close_if_idle()
        elif self.session.backlog:  # type: ignore[union-attr]
            self._start_backlog()

    def _data_received_slow(self, data: bytes) -> None:
        """Refused, closing, a blocking service, paused, or replies pending."""
        if self.session is None or self.closing:
            return
        session = self.session
        self._run(lambda: session.on_data(data))

    def eof_received(self) -> bool | None:
        logger.debug("%s closed its side", self.peer)
        if self.session is not None and not self.closing:
            session = self.session
            self._run(lambda: _closing(session.on_eof()))
        return True  # keep the transport open until our replies are written

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            logger.debug("%s disconnected: %s", self.peer, exc)
        if self.abort_timer is not None:
            self.abort_timer.cancel()
            self.abort_timer = None
        if self.admitted:
            self.admitted = False
            self.model.connections.discard(self)
            self.model.admission.release()
            if self.handle is not None:
                self.model.stats.clients.remove(self.handle)
            if self.session is not None:
                self.session.on_close()
            self.model.connection_gone()

    def pause_writing(self) -> None:
        self._pause("flow")
        self._check_output()

    def resume_writing(self) -> None:
        self.over_soft_since = None
        self._resume("flow")
        self._continue_backlog()

    # -- helpers ------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(self.pending or self.held) or (self.session is not None
                                      and (self.session.busy or self.session.backlog))

    def _pause(self, reason: str) -> None:
        if not self.pauses and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.pauses.add(reason)
        self.slow = True

    def _resume(self, reason: str) -> None:
        if reason not in self.pauses:
            return
        self.pauses.discard(reason)
        if not self.pauses and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        self._update_slow()

    def _run(self, step: Callable[[], Output]) -> None:
        """Run a session call; in a worker thread when the service blocks or
        when an earlier output is still pending (keeps replies in order)."""
        if not self.service.blocking and not self.pending:
            try:
                out = step()
            except Exception:
                logger.exception("unexpected error on connection from %s", self.peer)
                self._abort()
                return
            self._deliver(out)
            return
        self.pending += 1
        self._pause("pending")
        future = self.model.loop.run_in_executor(None, step)
        future.add_done_callback(self._step_done)

    def _step_done(self, future: asyncio.Future[Output]) -> None:
        self.pending -= 1
        if not self.pending:
            self._resume("pending")
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            logger.error("unexpected error on connection from %s", self.peer, exc_info=exc)
            self._abort()
            return
        self._deliver(future.result())

    def _deliver(self, out: Output) -> None:
        if out.barrier is not None or self.held:
            # Behind a held output too, so replies keep their order.
            self.model.defer(self, out)
            return
        self._send(out, out.data)

    def release(self) -> None:
        """Send the held outputs whose barrier resolved, in order; at the
        first one still waiting (its fsync runs in the flusher thread), ask
        to be called again when it resolves."""
        held = self.held
        while held:
            out = held[0]
            barrier = out.barrier
            ok = True
            if barrier is not None:
                result = barrier.flush()  # written already: only reads the state
                if result is None:
                    if self.waiting is not barrier:
                        self.waiting = barrier
                        barrier.add_done_callback(self._resolved)
                    return
                ok = result
            held.popleft()
            if not held:
                self._update_slow()
            self._flushed(out, ok)

    def _resolved(self, ok: bool) -> None:
        # In the flusher thread: back to the loop.
        self.model.loop.call_soon_threadsafe(self.release)

    def _flushed(self, out: Output, ok: bool) -> None:
        """A held output whose barrier resolved: its replies, the error
        replies if the batch failed, or (with no error replies to give) a
        close without acknowledging."""
        if ok:
            self._send(out, out.data)
            return
        barrier = out.barrier
        error = barrier.error if barrier is not None else ""
        if out.failed is None:
            self.model.log_error("write to storage failed (%s); closing %s without "
                                 "acknowledging", error, self.peer)
            self._abort()
            return
        self.model.log_error("write to storage failed (%s); error replies to %s", error,
                             self.peer)
        self._send(out, out.failed(error))

    def _send(self, out: Output, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if data:
            transport.write(data)
        if self.pushed:
            # Delivered while this output was held for its log batch: after it.
            transport.write(self._take_pushed())
        if out.close:
            self._close()
        elif self.model.stopping and not self.busy:
            self.close_if_idle()
        elif self.session is not None and self.session.backlog:
            self._start_backlog()
        elif "backlog" in self.pauses:
            # The last of a backlog ran (a small reply, which no
            # resume_writing follows): read again.
            self._resume("backlog")

    # -- back-pressure: a session's backlog is run a slice at a time ------------
    def _start_backlog(self) -> None:
        """The session kept requests back: read nothing more until they ran,
        and run the next slice once what we sent has drained."""
        self._pause("backlog")
        if "flow" not in self.pauses and not self.pending:
            self.model.loop.call_soon(self._continue_backlog)

    def _continue_backlog(self) -> None:
        session = self.session
        if session is None or self.closing or self.pending or "flow" in self.pauses:
            return  # resume_writing / the pending step's delivery comes back here
        if not session.backlog:
            self._resume("backlog")
            return
        self._run(session.resume)

    # -- limits ----------------------------------------------------------------
    def _check_output(self) -> None:
        """Unsent replies against client-output-buffer-limit (when they pass
        the write buffer's high-water mark, and at every sweep)."""
        transport = self.transport
        if transport is None or self.closing:
            return
        unsent = transport.get_write_buffer_size()
        limit = self._output_limit()
        if limit.hard and unsent > limit.hard:
            self.model.stats.output_limit()
            self.model.log_limit("closing %s: %d bytes of unsent replies over "
                                 "client-output-buffer-limit hard %d", self.peer, unsent,
                                 limit.hard)
            self._abort()
            return
        if limit.soft and unsent > limit.soft:
            now = self.model.loop.time()
            if self.over_soft_since is None:
                self.over_soft_since = now
            if now - self.over_soft_since >= limit.soft_seconds:
                self.model.stats.output_limit()
                self.model.log_limit("closing %s: %d bytes of unsent replies over "
                                     "client-output-buffer-limit soft %d for %gs", self.peer,
                                     unsent, limit.soft, limit.soft_seconds)
                self._abort()
        else:
            self.over_soft_since = None

    def sweep(self, now: float) -> None:
        """Once per model tick: deadlines and output limits."""
        transport = self.transport
        if transport is None or self.closing:
            return
        unsent = transport.get_write_buffer_size()
        if unsent and unsent != self.last_unsent:
            self.last_active = now  # the peer is reading what we send
        self.last_unsent = unsent
        if unsent:
            self._check_output()
        idle = self.model.idle_timeout
        if not idle or self.pending or now - self.last_active < idle:
            return
        if self.session is not None and self.session.expects_deliveries:
            return  # blocked or subscribed: Redis spares these from the timeout
        self.model.stats.idle_timeout()
        held = self._input_bytes()
        if held:
            self.model.stats.deadline()
            self.model.log_limit("closing %s: idle for %gs holding %d bytes of an "
                                 "unfinished request", self.peer, idle, held)
        else:
            logger.debug("closing %s: idle for %gs", self.peer, idle)
        self._close()

    def kill(self, reason: str, abort: bool) -> None:
        """A close asked for from elsewhere (CLIENT KILL, client eviction)."""
        if self.transport is None or self.closing:
            return
        logger.info("closing %s: %s", self.peer, reason)
        if abort:
            self._abort()
        else:
            self._close()

    def _close(self) -> None:
        """Close after what is queued has been written, within send-timeout."""
        self.closing = self.slow = True
        transport = self.transport
        if transport is None:
            return
        transport.close()
        timeout = self.model.settings.send_timeout
        if timeout and transport.get_write_buffer_size() and self.abort_timer is None:
            self.abort_timer = self.model.loop.call_later(timeout, self._abort_not_reading)

    def _abort_not_reading(self) -> None:
        self.abort_timer = None
        transport = self.transport
        if transport is None or not self.admitted:
            return
        self.model.stats.send_timeout()
        self.model.log_limit("closing %s: aborted: peer not reading (%d bytes unsent "
                             "after %gs)", self.peer, transport.get_write_buffer_size(),
                             self.model.settings.send_timeout)
        transport.abort()

    def _abort(self) -> None:
        self.closing = self.slow = True
        if self.transport is not None:
            self.transport.abort()

    def close_if_idle(self) -> None:
        if self.busy:
            return
        transport = self.transport
        if self.session is not None and transport is not None and not self.closing:
            try:
                out = self.session.on_stop()
            except Exception:
                logger.exception("unexpected error on connection from %s", self.peer)
                out = Output()
            if self.pushed:
                transport.write(self._take_pushed())
            if out.data and not transport.is_closing():
                transport.write(out.data)
        self._close()


def _peer_of(sock: socket.socket, unix_path: str | None) -> str:
    try:
        return format_peer(sock.getpeername(), unix_path)
    except OSError:
        return "?"


def _no_session(data: bytes) -> Output:
    raise RuntimeError("connection has no session")


def _closing(out: Output) -> Output:
    return out._replace(close=True)


class AsyncioModel(Model):
    name = "asyncio"

    def __init__(self, endpoints: Sequence[Endpoint], settings: ServerSettings,
                 stats: ServerStats, *, admission: Admission | None = None,
                 reuse_port: bool = False, supervised: bool = False) -> None:
        super().__init__(endpoints, settings, stats)
        #: A prefork worker: its parent owns the signals. Ctrl-C reaches the
        #: whole process group, so the worker ignores SIGINT and waits for the
        #: parent's SIGTERM; a repeated SIGTERM is not an escalation (the
        #: parent escalates with SIGKILL).
        self.supervised = supervised
        self.admission = admission or Admission(settings.max_connections, stats,
                                                    lambda: settings.max_connections)
        self.reuse_port = reuse_port
        self.output_limit = settings.client_output_buffer_limit.normal
        #: Pause reading (and check the output limits) past this many unsent bytes.
        self.write_high_water = min([WRITE_HIGH_WATER] + [
            n for n in (self.output_limit.hard, self.output_limit.soft) if n])
        #: Per-event warnings (limit closes, aborts, failed writes): rate-limited.
        self.log_limit = RateLimitedLog(logger, logging.WARNING)
        self.log_error = RateLimitedLog(logger, logging.ERROR)
        self.connections: set[_Connection] = set()
        #: Connections holding outputs for this loop iteration's log flush,
        #: and the barriers to flush.
        self._deferred: list[_Connection] = []
        self._barriers: list[Barrier] = []
        self._flush_scheduled = False
        self.stopping = False
        self._stop_requested = False
        self.loop = new_event_loop()
        self._starting: set[asyncio.Task[None]] = set()
        self._stopped: asyncio.Event | None = None
        self._all_gone: asyncio.Event | None = None
        self._log_loop_error = RateLimitedLog(logger, logging.ERROR)

    def bind(self) -> list[tuple[object, ...]]:
        for ep in self.endpoints:
            self.listeners.append(listener_for(ep, backlog=self.settings.backlog,
                                               reuse_port=self.reuse_port))
        return [sock.getsockname() for sock in self.listeners]

    def request_stop(self) -> None:
        self._stop_requested = True
        if self._stopped is not None:
            self.loop.call_soon_threadsafe(self._stopped.set)

    # Signals arrive through plain signal.signal handlers (installed by
    # Server.serve_forever before binding): uvloop and the standard loop both
    # run them promptly (they set a wakeup fd), and request_stop only calls
    # call_soon_threadsafe. loop.add_signal_handler is not used: installed
    # on top of an earlier handler, it can deliver the same signal twice,
    # which would read as "second signal: exit now".
    def install_signals(self, before_stop: Callable[[], None] | None = None) -> None:
        if not self.supervised:
            super().install_signals(before_stop)
            return
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        install_stop_signals(self.request_stop, signals=(signal.SIGTERM,), escalate=False)

    def serve_forever(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()
            asyncio.set_event_loop(None)
        logger.info("server stopped")

    # -- the log batch: one write (and fsync) per loop iteration ----------------
    def defer(self, conn: _Connection, out: Output) -> None:
        """Hold ``out`` until the end of this loop iteration. The first one
        schedules the flush with call_soon: both loops run it after every I/O
        callback of the current iteration (asyncio: the callback lands behind
        this iteration's ready handles; uvloop: in the next idle phase,
        before it polls again), so one log write covers the writes of all
        connections read in the iteration, as Redis's beforeSleep does.
        Under ``always`` the replies then wait for the flusher thread's
        fsync (Connection.release), while the loop goes on reading."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush_deferred)
        if not conn.held:
            self._deferred.append(conn)
        conn.held.append(out)
        conn.slow = True
        barrier = out.barrier
        barriers = self._barriers
        if barrier is not None and (not barriers or barriers[-1] is not barrier):
            barriers.append(barrier)

    def _flush_deferred(self) -> None:
        self._flush_scheduled = False
        conns, self._deferred = self._deferred, []
        barriers, self._barriers = self._barriers, []
        # The first flush writes everything buffered (one write() for the
        # iteration) and resolves what it covered; under always the flusher
        # thread's fsync resolves them, covering every batch written while
        # the previous fsync ran (the loop never waits for the disk).
        for barrier in barriers:
            barrier.flush()
        for conn in conns:
            conn.release()

    def connection_gone(self) -> None:
        if self.stopping and not self.connections and self._all_gone is not None:
            self._all_gone.set()

    async def _serve(self) -> None:
        loop = self.loop
        loop.set_exception_handler(self._on_loop_error)
        self._stopped = asyncio.Event()
        self._all_gone = asyncio.Event()
        if self._stop_requested:
            self._stopped.set()
        for sock, ep in zip(self.listeners, self.endpoints):
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._accept_ready, sock, ep)
        logger.debug("event loop: %s", loop_name(loop))
        sweeper = loop.create_task(self._sweep_forever())
        await self._stopped.wait()
        sweeper.cancel()
        await self._shutdown()

    @property
    def idle_timeout(self) -> float:
        """--idle-timeout in force (CONFIG SET timeout changes it)."""
        return self.settings.idle_timeout

    def tick_interval(self) -> float:
        idle = self.idle_timeout
        return min(1.0, idle / 4) if idle else 1.0

    async def _sweep_forever(self) -> None:
        """Deadlines, output limits and client memory: one pass per tick over
        every connection, however many there are (no timer per connection)."""
        tick = self.tick_interval()
        cap = self.settings.client_memory_cap
        while True:
            await asyncio.sleep(tick)
            now = self.loop.time()
            for conn in list(self.connections):
                conn.sweep(now)
            self.stats.clients.enforce_memory(cap)

    # -- accepting -------------------------------------------------------------
    # We accept ourselves instead of loop.create_server(): the standard loop
    # and uvloop treat EMFILE differently (uvloop accepts and drops the
    # connections silently), and we want one behaviour for every model:
    # log at a limited rate, stop accepting for ACCEPT_RETRY_DELAY, resume.
    def _accept_ready(self, listener: socket.socket, endpoint: Endpoint) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in ACCEPT_RESOURCE_ERRNOS:
                    self._log_loop_error("accept() failed: %s; retrying in %.0f ms",
                                         exc.strerror, ACCEPT_RETRY_DELAY * 1000)
                    self._pause_accepting(listener, endpoint)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            sock.setblocking(False)
            task = self.loop.create_task(self._start_connection(sock, endpoint))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    def _pause_accepting(self, listener: socket.socket, endpoint: Endpoint) -> None:
        self.loop.remove_reader(listener.fileno())

        def resume() -> None:
            if not self.stopping:
                self.loop.add_reader(listener.fileno(), self._accept_ready, listener, endpoint)

        self.loop.call_later(ACCEPT_RETRY_DELAY, resume)

    async def _start_connection(self, sock: socket.socket, endpoint: Endpoint) -> None:
        service, unix_path, tls = endpoint.service, endpoint.unix_path, endpoint.tls
        peer = _peer_of(sock, unix_path) if tls is not None else "?"
        try:
            if tls is None:
                await self.loop.connect_accepted_socket(
                    lambda: _Connection(self, service, unix_path), sock)
                return
            # The protocol sees the connection once the handshake is done;
            # a stalled one is aborted after the idle timeout.
            await self.loop.connect_accepted_socket(
                lambda: _Connection(self, service, unix_path), sock, ssl=tls.context,
                ssl_handshake_timeout=self.idle_timeout or None,
                ssl_shutdown_timeout=TLS_CLOSE_TIMEOUT)
        except (OSError, ValueError) as exc:
            if tls is not None:
                logger.debug("closing %s: %s", peer, handshake_failure(exc))
            else:
                logger.debug("connection lost before it started: %s", exc)
            sock.close()

    async def _shutdown(self) -> None:
        self.stopping = True
        for task in list(self._starting):  # TLS handshakes in progress
            task.cancel()
        for sock in self.listeners:  # stop accepting
            self.loop.remove_reader(sock.fileno())
            sock.close()
        if self.connections:
            logger.info("waiting up to %gs for %d connection(s)", self.settings.grace,
                        len(self.connections))
        for conn in list(self.connections):
            conn.close_if_idle()
        assert self._all_gone is not None
        if self.connections:
            try:
                await asyncio.wait_for(self._all_gone.wait(), self.settings.grace)
            except TimeoutError:
                logger.warning("grace period over: force-closing %d connection(s)",
                               len(self.connections))
                for conn in list(self.connections):
                    conn._abort()
                await asyncio.sleep(0)  # let connection_lost callbacks run

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = context.get("message", "event loop error")
        if isinstance(exc, OSError):
            self._log_loop_error("%s: %s", message, exc)
        else:
            logger.error("%s", message, exc_info=exc)
