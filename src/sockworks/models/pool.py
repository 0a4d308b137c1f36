"""A fixed pool of worker threads — the chapter's ThreadPoolExecutor, fixed.

The chapter's pool gives each *connection* a worker for its whole life, so 50
idle clients starve the 51st forever and it never gets an answer. Here a
worker serves one *request* at a time (half-sync/half-async):

* a dispatcher thread parks every idle connection in a selector;
* when one becomes readable it is handed to the pool: a worker reads what is
  there, runs the session, sends the replies, and gives the connection back;
* idle connections therefore hold no worker, and the idle timeout is enforced
  by the dispatcher, not by a blocked thread.

The waiting queue is bounded: a connection has at most one task queued or
running, so the queue never holds more than ``--max-connections`` entries,
and the connection over that limit gets the busy reply.
"""

from __future__ import annotations

import heapq
import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sockworks.core.config import Endpoint
from sockworks.core.net import DISCONNECT_ERRORS, RECV_SIZE
from sockworks.core.service import Output
from sockworks.models.blocking import BlockingModel, Tracked, Waker

logger = logging.getLogger(__name__)

__all__ = ["PoolModel", "DEFAULT_WORKERS"]

#: The chapter's pool size.
DEFAULT_WORKERS = 50


class _PooledConn(Tracked):
    __slots__ = ("endpoint", "deadline", "closed")

    def __init__(self, sock: socket.socket, endpoint: Endpoint, peer: str) -> None:
        super().__init__(sock, endpoint.service.new_session(peer), peer)
        self.endpoint = endpoint
        self.deadline = 0.0
        self.closed = False


class PoolModel(BlockingModel):
    name = "pool"
    default_workers = DEFAULT_WORKERS

    def start(self) -> None:
        workers = self.settings.workers or DEFAULT_WORKERS
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="worker")
        self._returns: queue.SimpleQueue[_PooledConn] = queue.SimpleQueue()
        self._dispatch_waker = Waker()
        self._dispatch_stop = threading.Event()
        self._dispatcher = threading.Thread(target=self._dispatch, name="dispatcher", daemon=True)
        self._dispatcher.start()
        logger.debug("pool of %d workers started", workers)

    # -- accept side -------------------------------------------------------
    def handle(self, sock: socket.socket, peer: str, endpoint: Endpoint) -> None:
        sock.settimeout(self.settings.idle_timeout or None)
        conn = _PooledConn(sock, endpoint, peer)
        self.registry.add(conn)
        if self.registry.stopping:
            self._close(conn)
            return
        self._pool.submit(self._greet, conn)

    # -- worker side ---------------------------------------------------------
    def _greet(self, conn: _PooledConn) -> None:
        self._run_step(conn, lambda: conn.session.on_connect())

    def _serve_ready(self, conn: _PooledConn) -> None:
        def step() -> Output:
            data = conn.sock.recv(RECV_SIZE)
            if not data:
                logger.debug("%s closed its side", conn.peer)
                out = conn.session.on_eof()
                return Output(out.data, True, out.barrier)
            return conn.session.on_data(data)

        self._run_step(conn, step)

    def _run_step(self, conn: _PooledConn, step: Callable[[], Output]) -> None:
        conn.active = True
        keep = False
        try:
            out = step()
            if out.barrier is not None and not out.barrier.wait():
                logger.error("write to storage failed; closing %s without acknowledging",
                             conn.peer)
            else:
                if out.data:
                    conn.sock.sendall(out.data)
                keep = not out.close and not (self.registry.stopping and not conn.session.busy)
        except TimeoutError:
            logger.info("closing %s: send timed out (peer not reading)", conn.peer)
        except DISCONNECT_ERRORS as exc:
            logger.debug("%s disconnected: %s", conn.peer, exc)
        except OSError as exc:
            logger.debug("%s: socket error: %s", conn.peer, exc)
        except Exception:
            logger.exception("unexpected error on connection from %s", conn.peer)
        finally:
            conn.active = False
        if keep:
            self._returns.put(conn)
            self._dispatch_waker.wake()
        else:
            self._close(conn)

    def _close(self, conn: _PooledConn) -> None:
        if conn.closed:
            return
        conn.closed = True
        try:
            conn.session.on_close()
        finally:
            conn.sock.close()
            self.registry.remove(conn)
            self.admission.release()

    # -- dispatcher ------------------------------------------------------------
    def _dispatch(self) -> None:
        idle = self.settings.idle_timeout
        sel = selectors.DefaultSelector()
        deadlines: list[tuple[float, int, _PooledConn]] = []
        sel.register(self._dispatch_waker, selectors.EVENT_READ, None)
        try:
            while not self._dispatch_stop.is_set():
                timeout = None
                if deadlines:
                    timeout = max(0.0, deadlines[0][0] - time.monotonic())
                for key, _ in sel.select(timeout):
                    conn = key.data
                    if conn is None:
                        self._dispatch_waker.drain()
                        continue
                    sel.unregister(conn.sock)
                    self._pool.submit(self._serve_ready, conn)
                # Connections handed back by workers wait here for their next request.
                while True:
                    try:
                        conn = self._returns.get_nowait()
                    except queue.Empty:
                        break
                    if idle:
                        conn.deadline = time.monotonic() + idle
                        heapq.heappush(deadlines, (conn.deadline, id(conn), conn))
                    sel.register(conn.sock, selectors.EVENT_READ, conn)
                now = time.monotonic()
                while deadlines and deadlines[0][0] <= now:
                    deadline, _, conn = heapq.heappop(deadlines)
                    if conn.deadline != deadline or conn.closed or conn.active:
                        continue  # stale entry: the connection was active since
                    try:
                        sel.unregister(conn.sock)
                    except (KeyError, ValueError):
                        continue  # handed to a worker in this same round
                    self.stats.idle_timeout()
                    logger.info("closing %s: idle for %gs", conn.peer, idle)
                    self._close(conn)
        finally:
            sel.close()

    def join(self) -> None:
        self._dispatch_stop.set()
        self._dispatch_waker.wake()
        self._dispatcher.join(5.0)
        self._pool.shutdown(wait=True)
        self._dispatch_waker.close()
