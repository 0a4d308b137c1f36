"""One event loop for every connection: asyncio.Protocol, uvloop when installed.

Callbacks, not coroutines, on the hot path: ``data_received`` hands the bytes
to the session and writes its replies in the same call, so a request costs no
task creation and no await (this is how uvicorn's fast path and Redis-like
servers in Python get their speed). Flow control is honoured both ways: when
the peer stops reading and our write buffer passes the high-water mark we stop
reading from it too, so a client cannot make us buffer without bound.

Idle timeouts use one timer per connection that re-arms itself lazily (no
timer churn per request). Shutdown closes the listeners, closes idle
connections, lets busy ones finish, and force-closes after the grace period;
it never calls ``Server.wait_closed()``, which on Python 3.12+ waits for idle
clients forever.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
from collections.abc import Callable, Sequence
from typing import Any, cast

from sockworks.core.activation import listener_for
from sockworks.core.admission import Admission
from sockworks.core.config import Endpoint, ServerSettings
from sockworks.core.logs import RateLimitedLog
from sockworks.core.loop import loop_name, new_event_loop
from sockworks.core.net import (
    ACCEPT_RESOURCE_ERRNOS,
    ACCEPT_RETRY_DELAY,
    format_address,
)
from sockworks.core.service import Output, Service, Session
from sockworks.core.stats import ServerStats
from sockworks.models.base import Model, install_stop_signals

logger = logging.getLogger(__name__)

__all__ = ["AsyncioModel"]

#: Connections accepted per readiness callback before yielding to the loop.
ACCEPT_BATCH = 64

#: Pause reading from a peer whose replies pile up past this (bytes).
WRITE_HIGH_WATER = 1024 * 1024


class _Connection(asyncio.Protocol):
    __slots__ = ("model", "service", "session", "transport", "peer", "last_active",
                 "timer", "pauses", "pending", "closing", "admitted", "slow", "on_data",
                 "write", "time")

    def __init__(self, model: AsyncioModel, service: Service) -> None:
        self.model = model
        self.service = service
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.last_active = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.pauses: set[str] = set()
        self.pending = 0          # outputs waiting on a barrier or a worker thread
        self.closing = False
        self.admitted = False
        #: True unless data_received may take the inline fast path (see _update_slow).
        self.slow = True
        # Bound in connection_made; until then (or if refused) the slow path
        # runs, never these.
        self.on_data: Callable[[bytes], Output] = _no_session
        self.write: Callable[[bytes], object] = _no_session
        self.time = model.loop.time

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
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
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.session = self.service.new_session(self.peer)
        self.on_data = self.session.on_data
        self.write = transport.write
        if model.idle_timeout:
            self.last_active = model.loop.time()
            self.timer = model.loop.call_later(model.idle_timeout, self._check_idle)
        self._run(self.session.on_connect)
        self._update_slow()

    def _update_slow(self) -> None:
        self.slow = (self.session is None or self.closing or self.service.blocking
                     or bool(self.pending))

    def data_received(self, data: bytes) -> None:
        # The hot path: every request of every connection comes through here.
        if self.slow:
            self._data_received_slow(data)
            return
        if self.timer is not None:
            self.last_active = self.time()
        try:
            out, close, barrier = self.on_data(data)
        except Exception:
            logger.exception("unexpected error on connection from %s", self.peer)
            self._abort()
            return
        if barrier is not None:
            self._wait_barrier(Output(out, close, barrier))
            return
        if out:
            self.write(out)
        if close or (self.model.stopping and not self.busy):
            self._close()

    def _data_received_slow(self, data: bytes) -> None:
        """Refused, closing, a blocking service, or replies still pending."""
        if self.session is None or self.closing:
            return
        self.last_active = self.model.loop.time()
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
        if self.timer is not None:
            self.timer.cancel()
        if self.admitted:
            self.admitted = False
            self.model.connections.discard(self)
            self.model.admission.release()
            if self.session is not None:
                self.session.on_close()
            self.model.connection_gone()

    def pause_writing(self) -> None:
        self._pause("flow")

    def resume_writing(self) -> None:
        self._resume("flow")

    # -- helpers ------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(self.pending) or (self.session is not None and self.session.busy)

    def _pause(self, reason: str) -> None:
        if not self.pauses and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.pauses.add(reason)

    def _resume(self, reason: str) -> None:
        self.pauses.discard(reason)
        if not self.pauses and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

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
        self.slow = True
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

    def _wait_barrier(self, out: Output) -> None:
        assert out.barrier is not None
        self.pending += 1
        self.slow = True
        self._pause("pending")
        loop = self.model.loop

        def done(ok: bool) -> None:
            loop.call_soon_threadsafe(self._barrier_done, out, ok)

        out.barrier.add_done_callback(done)

    def _barrier_done(self, out: Output, ok: bool) -> None:
        self.pending -= 1
        if not self.pending:
            self._resume("pending")
            self._update_slow()
        if not ok:
            logger.error("write to storage failed; closing %s without acknowledging", self.peer)
            self._abort()
            return
        self._deliver(Output(out.data, out.close))

    def _deliver(self, out: Output) -> None:
        if out.barrier is not None:
            self._wait_barrier(out)
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if out.data:
            transport.write(out.data)
        if out.close or (self.model.stopping and not self.busy):
            self._close()

    def _check_idle(self) -> None:
        self.timer = None
        idle = self.model.idle_timeout
        remaining = self.last_active + idle - self.model.loop.time()
        if remaining > 0 or self.busy:
            self.timer = self.model.loop.call_later(max(remaining, 0.01), self._check_idle)
            return
        self.model.stats.idle_timeout()
        logger.info("closing %s: idle for %gs", self.peer, idle)
        self._close()

    def _close(self) -> None:
        """Close after what is queued has been written."""
        self.closing = self.slow = True
        if self.transport is not None:
            self.transport.close()

    def _abort(self) -> None:
        self.closing = self.slow = True
        if self.transport is not None:
            self.transport.abort()

    def close_if_idle(self) -> None:
        if not self.busy:
            self._close()


def _no_session(data: bytes) -> Output:
    raise RuntimeError("connection has no session")


def _closing(out: Output) -> Output:
    return Output(out.data, True, out.barrier)


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
        self.admission = admission or Admission(settings.max_connections, stats)
        self.reuse_port = reuse_port
        self.idle_timeout = settings.idle_timeout
        self.connections: set[_Connection] = set()
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
            loop.add_reader(sock.fileno(), self._accept_ready, sock, ep.service)
        logger.debug("event loop: %s", loop_name(loop))
        await self._stopped.wait()
        await self._shutdown()

    # -- accepting -------------------------------------------------------------
    # We accept ourselves instead of loop.create_server(): the standard loop
    # and uvloop treat EMFILE differently (uvloop accepts and drops the
    # connections silently), and we want one behaviour for every model:
    # log at a limited rate, stop accepting for ACCEPT_RETRY_DELAY, resume.
    def _accept_ready(self, listener: socket.socket, service: Service) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in ACCEPT_RESOURCE_ERRNOS:
                    self._log_loop_error("accept() failed: %s; retrying in %.0f ms",
                                         exc.strerror, ACCEPT_RETRY_DELAY * 1000)
                    self._pause_accepting(listener, service)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            sock.setblocking(False)
            task = self.loop.create_task(self._start_connection(sock, service))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    def _pause_accepting(self, listener: socket.socket, service: Service) -> None:
        self.loop.remove_reader(listener.fileno())

        def resume() -> None:
            if not self.stopping:
                self.loop.add_reader(listener.fileno(), self._accept_ready, listener, service)

        self.loop.call_later(ACCEPT_RETRY_DELAY, resume)

    async def _start_connection(self, sock: socket.socket, service: Service) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: _Connection(self, service), sock)
        except OSError as exc:
            logger.debug("connection lost before it started: %s", exc)
            sock.close()

    async def _shutdown(self) -> None:
        self.stopping = True
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
