"""A fixed pool of worker threads — the chapter's ThreadPoolExecutor, fixed.

The chapter's pool gives each *connection* a worker for its whole life, so 50
idle clients starve the 51st forever and it never gets an answer. Here a
worker serves one *request* at a time (leader/followers over one epoll set):

* every connection is registered in a shared epoll instance with
  ``EPOLLONESHOT``; the ``--workers`` threads all wait in ``epoll.poll()``;
* when a connection becomes readable the kernel wakes exactly one worker,
  which reads, runs the session, sends the replies and re-arms the
  connection; ONESHOT guarantees no other worker sees it meanwhile;
* idle connections therefore hold no worker, and no thread hands work to
  another (no queue, no extra wake-up per request: the kernel's ready list
  is the queue). Its length is bounded by the number of connections, which
  admission control bounds by ``--max-connections``: the connection over the
  limit gets the busy reply instead of waiting.

The idle timeout is enforced by the accept loop, which sweeps the parked
connections every ``min(1 s, idle/4)`` (sparing sessions that expect
deliveries). A delivery (``ClientHandle.deliver``) re-arms the connection
for ``EPOLLOUT`` too, so a worker picks it up at once, sends the outbox and
runs the session's backlog; a connection being served is re-armed that way
by its worker when it finishes. Linux-only (epoll), like prefork's
SO_REUSEPORT.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from typing import cast

from sockworks.core.config import Endpoint, ServerSettings
from sockworks.core.net import DISCONNECT_ERRORS, RECV_SIZE, discard_input, set_io_timeouts
from sockworks.core.stats import ServerStats
from sockworks.core.tls import handshake_failure
from sockworks.models.blocking import (
    BlockingModel,
    LimitClose,
    Tracked,
    deliver,
    finish_socket,
    flush_outbox,
)

logger = logging.getLogger(__name__)

__all__ = ["PoolModel", "DEFAULT_WORKERS"]

#: The chapter's pool size.
DEFAULT_WORKERS = 50

_ARMED = select.EPOLLIN | select.EPOLLONESHOT


class _PooledConn(Tracked):
    __slots__ = ("lock", "deadline", "closed", "handshaking", "serving")

    def __init__(self, sock: socket.socket, endpoint: Endpoint, peer: str,
                 stats: ServerStats, settings: ServerSettings) -> None:
        super().__init__(sock, endpoint.service, peer, stats,
                         settings.client_output_buffer_limit)
        #: A worker is serving it (under out_lock): it re-arms it when done.
        self.serving = False
        #: Held by the worker serving a request, and by whoever closes it.
        self.lock = threading.Lock()
        self.deadline = 0.0
        self.closed = False
        #: A TLS connection whose handshake is not finished (no session I/O yet).
        self.handshaking = False


class PoolModel(BlockingModel):
    name = "pool"

    def __init__(self, endpoints: Sequence[Endpoint], settings: ServerSettings,
                 stats: ServerStats) -> None:
        super().__init__(endpoints, settings, stats)
        self._conns: dict[int, _PooledConn] = {}
        self._workers: list[threading.Thread] = []
        self._workers_stop = False
        self._limit = settings.client_output_buffer_limit.normal

    def start(self) -> None:
        self._epoll = select.epoll()
        # Level-triggered and never drained once set: wakes every worker at exit.
        self._exit_r, self._exit_w = socket.socketpair()
        self._epoll.register(self._exit_r.fileno(), select.EPOLLIN)
        for i in range(self.settings.workers or DEFAULT_WORKERS):
            thread = threading.Thread(target=self._work, name=f"worker-{i}", daemon=True)
            thread.start()
            self._workers.append(thread)

    def tick_interval(self) -> float | None:
        idle = self.settings.idle_timeout
        return min(0.5, idle / 4) if idle else 0.5

    # -- accept side -----------------------------------------------------------
    def handle(self, sock: socket.socket, peer: str, endpoint: Endpoint) -> None:
        conn = _PooledConn(sock, endpoint, peer, self.stats, self.settings)
        conn.wake = lambda: self._wake(conn)
        self.registry.add(conn)
        if self.registry.stopping:
            self._close(conn)
            return
        if endpoint.tls is not None:
            # The handshake runs in the workers, a step per wake-up (never
            # blocking one); the idle sweep ends one that stalls.
            conn.sock = endpoint.tls.context.wrap_socket(sock, server_side=True,
                                                         do_handshake_on_connect=False)
            conn.sock.setblocking(False)
            conn.handshaking = True
            self._park(conn, _ARMED)
            return
        # Bounds sendall() to a peer that stops reading (recv never waits here).
        set_io_timeouts(sock, 0, self.settings.send_timeout)
        with conn.lock:
            greeted = self._greet_locked(conn)  # a fresh socket's buffer takes it
        if greeted:
            self._park(conn, _ARMED)

    def _park(self, conn: _PooledConn, events: int) -> None:
        conn.deadline = time.monotonic() + self.settings.idle_timeout
        fd = conn.sock.fileno()
        self._conns[fd] = conn
        self._epoll.register(fd, events)

    def on_tick(self) -> None:
        """Close connections idle past the timeout — a parked connection
        holding half a request included: its deadline runs from the last
        byte received — and keep client memory under its cap (runs in the
        accept loop)."""
        super().on_tick()
        idle = self.settings.idle_timeout
        if not idle:
            return
        now = time.monotonic()
        for conn in list(self._conns.values()):
            if conn.deadline > now or not conn.lock.acquire(blocking=False):
                continue  # recently active, or a worker is serving it right now
            try:
                if conn.closed or conn.deadline > now or conn.session.expects_deliveries:
                    continue
                self.stats.idle_timeout()
                held = conn.session.input_bytes
                if held:
                    self.stats.deadline()
                    self.registry.log_limit("closing %s: idle for %gs holding %d bytes of "
                                            "an unfinished request", conn.peer, idle, held)
                else:
                    logger.debug("closing %s: idle for %gs", conn.peer, idle)
                self._close_locked(conn)
            finally:
                conn.lock.release()

    # -- worker side -------------------------------------------------------------
    def _work(self) -> None:
        epoll = self._epoll
        exit_fd = self._exit_r.fileno()
        while True:
            try:
                events = epoll.poll(-1, 1)
            except OSError:
                return  # epoll closed at exit
            for fd, _ in events:
                if fd == exit_fd:
                    return
                conn = self._conns.get(fd)
                if conn is not None:
                    with conn.lock:
                        if not conn.closed and conn.sock.fileno() == fd:
                            self._serve(conn)

    def _handshake(self, conn: _PooledConn) -> None:
        """One step of a TLS handshake (lock held): re-arm, or greet once done."""
        sock = cast(ssl.SSLSocket, conn.sock)
        events = _ARMED
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLWantWriteError:
            events = select.EPOLLOUT | select.EPOLLONESHOT
        except (OSError, ValueError) as exc:
            logger.debug("closing %s: %s", conn.peer, handshake_failure(exc))
            discard_input(conn.sock)
            self._close_locked(conn)
            return
        else:
            conn.handshaking = False
            # From here the socket blocks (sendall bounded by --send-timeout);
            # reads check readiness first (_recv_tls).
            sock.settimeout(self.settings.send_timeout or None)
            if not self._greet_locked(conn):
                return
        try:
            self._epoll.modify(sock.fileno(), events)
        except OSError as exc:
            logger.debug("%s: cannot re-arm: %s", conn.peer, exc)
            self._close_locked(conn)

    def _greet_locked(self, conn: _PooledConn) -> bool:
        greeting = conn.session.on_connect()
        try:
            if greeting.data:
                conn.sock.sendall(greeting.data)
        except OSError as exc:
            logger.debug("%s: cannot greet: %s", conn.peer, exc)
            self._close_locked(conn)
            return False
        if greeting.close:
            self._close_locked(conn)
            return False
        return True

    def _recv_tls(self, sock: ssl.SSLSocket) -> bytes | None:
        """What one TLS record holds (None: no complete record yet)."""
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            data = sock.recv(RECV_SIZE)
            pending = sock.pending()  # decrypted bytes epoll cannot see
            if pending:
                data += sock.recv(pending)
            return data
        except ssl.SSLWantReadError:
            return None
        finally:
            sock.settimeout(timeout)

    def _wake(self, conn: _PooledConn) -> None:
        """A delivery: have a worker send it (unless one is serving it now)."""
        with conn.out_lock:
            if conn.serving or conn.gone:
                return  # the worker re-arms it for EPOLLOUT (woken/outbox)
            try:
                self._epoll.modify(conn.sock.fileno(), _ARMED | select.EPOLLOUT)
            except (OSError, ValueError):
                pass  # closing

    def _serve(self, conn: _PooledConn) -> None:
        """One request: read what is there, answer it, re-arm (lock held)."""
        if conn.handshaking:
            self._handshake(conn)
            return
        session = conn.session
        keep = False
        conn.active = True
        with conn.out_lock:
            conn.serving = True
            conn.woken = False
        try:
            try:
                if isinstance(conn.sock, ssl.SSLSocket):
                    data = self._recv_tls(conn.sock)
                else:
                    data = conn.sock.recv(RECV_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                data = None  # nothing to read: a delivery, or a stale wake-up
            if conn.kill_reason is None:
                # ``keep`` is set last: an exception on the way closes.
                send = conn.sock.sendall
                ok = True
                if conn.outbox_bytes:
                    flush_outbox(conn, send, self._limit)
                if data is not None:
                    if data:
                        out = session.on_data(data)
                    elif self.registry.stopping:  # shutdown(SHUT_RD) of an idle one
                        out = session.on_stop()._replace(close=True)
                    else:
                        logger.debug("%s closed its side", conn.peer)
                        out = session.on_eof()._replace(close=True)
                    ok = deliver(conn, out, send, self._limit)
                # Back-pressure: requests held back run once the last slice is sent.
                while ok and session.backlog and conn.kill_reason is None:
                    ok = deliver(conn, session.resume(), send, self._limit)
                if ok and self.registry.stopping and not session.busy:
                    deliver(conn, session.on_stop(), send, self._limit)
                    ok = False
                keep = ok and conn.kill_reason is None
        except LimitClose as exc:
            conn.reset = True
            self.stats.output_limit()
            self.registry.log_limit("closing %s: %s", conn.peer, exc)
        except (TimeoutError, BlockingIOError):
            conn.reset = True
            self.stats.send_timeout()
            self.registry.log_limit("closing %s: aborted: peer not reading (send blocked "
                                    "%gs)", conn.peer, self.settings.send_timeout)
        except DISCONNECT_ERRORS as exc:
            logger.debug("%s disconnected: %s", conn.peer, exc)
        except OSError as exc:
            logger.debug("%s: socket error: %s", conn.peer, exc)
        except Exception:
            # The one place that keeps the pool alive after a bug in a service.
            logger.exception("unexpected error on connection from %s", conn.peer)
        finally:
            conn.active = False
        if keep:
            conn.deadline = time.monotonic() + self.settings.idle_timeout
            try:
                with conn.out_lock:
                    conn.serving = False
                    # A delivery that came while we served is sent at once.
                    events = _ARMED | (select.EPOLLOUT if conn.outbox or conn.woken else 0)
                    self._epoll.modify(conn.sock.fileno(), events)
                return
            except OSError as exc:
                logger.debug("%s: cannot re-arm: %s", conn.peer, exc)
        with conn.out_lock:
            conn.serving = False
        self._close_locked(conn)

    # -- closing -------------------------------------------------------------------
    def _close(self, conn: _PooledConn) -> None:
        with conn.lock:
            self._close_locked(conn)

    def _close_locked(self, conn: _PooledConn) -> None:
        if conn.closed:
            return
        conn.closed = True
        fd = conn.sock.fileno()
        if self._conns.get(fd) is conn:
            del self._conns[fd]
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass
        conn.forget()
        try:
            conn.session.on_close()
        finally:
            finish_socket(conn)
            self.registry.remove(conn)
            self.admission.release()

    def join(self) -> None:
        self._exit_w.send(b"x")
        for thread in self._workers:
            thread.join(5.0)
        self._epoll.close()
        self._exit_r.close()
        self._exit_w.close()
