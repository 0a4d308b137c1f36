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
connections every ``min(1 s, idle/4)``. Linux-only (epoll), like prefork's
SO_REUSEPORT.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Sequence

from sockworks.core.config import Endpoint, ServerSettings
from sockworks.core.net import DISCONNECT_ERRORS, RECV_SIZE, set_io_timeouts
from sockworks.core.stats import ServerStats
from sockworks.models.blocking import (
    BlockingModel,
    LimitClose,
    Tracked,
    deliver,
    finish_socket,
)

logger = logging.getLogger(__name__)

__all__ = ["PoolModel", "DEFAULT_WORKERS"]

#: The chapter's pool size.
DEFAULT_WORKERS = 50

_ARMED = select.EPOLLIN | select.EPOLLONESHOT


class _PooledConn(Tracked):
    __slots__ = ("lock", "deadline", "closed")

    def __init__(self, sock: socket.socket, endpoint: Endpoint, peer: str,
                 stats: ServerStats) -> None:
        super().__init__(sock, endpoint.service, peer, stats)
        #: Held by the worker serving a request, and by whoever closes it.
        self.lock = threading.Lock()
        self.deadline = 0.0
        self.closed = False


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
        # Bounds sendall() to a peer that stops reading (recv never waits here).
        set_io_timeouts(sock, 0, self.settings.send_timeout)
        conn = _PooledConn(sock, endpoint, peer, self.stats)
        self.registry.add(conn)
        if self.registry.stopping:
            self._close(conn)
            return
        greeting = conn.session.on_connect()
        try:
            if greeting.data:
                sock.sendall(greeting.data)  # a fresh socket's buffer takes it
        except OSError as exc:
            logger.debug("%s: cannot greet: %s", peer, exc)
            self._close(conn)
            return
        if greeting.close:
            self._close(conn)
            return
        conn.deadline = time.monotonic() + self.settings.idle_timeout
        fd = sock.fileno()
        self._conns[fd] = conn
        self._epoll.register(fd, _ARMED)

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
                if conn.closed or conn.deadline > now:
                    continue
                self.stats.idle_timeout()
                held = conn.session.input_bytes
                if held:
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

    def _serve(self, conn: _PooledConn) -> None:
        """One request: read what is there, answer it, re-arm (lock held)."""
        session = conn.session
        keep = False
        conn.active = True
        try:
            try:
                data = conn.sock.recv(RECV_SIZE, socket.MSG_DONTWAIT)
            except BlockingIOError:
                data = None  # a stale wake-up: nothing to read after all
            if data is None:
                keep = True
            elif conn.kill_reason is None:
                if data:
                    out = session.on_data(data)
                else:
                    logger.debug("%s closed its side", conn.peer)
                    out = session.on_eof()._replace(close=True)
                send = conn.sock.sendall
                keep = deliver(conn, out, send, self._limit)
                # Back-pressure: requests held back run once the last slice is sent.
                while keep and session.backlog and conn.kill_reason is None:
                    keep = deliver(conn, session.resume(), send, self._limit)
                keep = keep and conn.kill_reason is None and not (
                    self.registry.stopping and not session.busy)
        except LimitClose as exc:
            conn.reset = True
            self.registry.log_limit("closing %s: %s", conn.peer, exc)
        except (TimeoutError, BlockingIOError):
            conn.reset = True
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
                self._epoll.modify(conn.sock.fileno(), _ARMED)
                return
            except OSError as exc:
                logger.debug("%s: cannot re-arm: %s", conn.peer, exc)
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
