"""The standard library's socketserver, as the chapter shows, made production-safe.

Both models are real ``socketserver`` servers — ``ThreadingMixIn`` or
``ForkingMixIn`` over ``TCPServer`` with a ``StreamRequestHandler`` that feeds
``rfile``/``wfile`` to the session (an unbuffered ``rfile``: one ``recv`` per
read, so nothing waits in a buffer that ``poll()`` cannot see) — with the chapter's gaps closed:

* ``serve_forever()`` wakes every 0.5 s to check for shutdown, and calling
  ``shutdown()`` from the serving thread (a signal handler) deadlocks. The
  shared accept loop (a selector that also watches a wake socket, so a signal
  stops it at once and nothing polls) accepts and hands each connection to
  the server's own ``process_request`` — thread or fork, handler, error
  handling and clean-up are socketserver's.
* Admission control runs before ``process_request``: the connection over
  ``--max-connections`` (which is also ``max_children``) gets the busy reply,
  so ForkingMixIn never blocks the accept loop waiting for a child to exit.
* Fork: SIGCHLD wakes the loop and children are reaped right away (no
  zombies); on shutdown each child gets SIGTERM and finishes its request in
  flight, stragglers get SIGKILL after the grace period.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import socketserver
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from sockworks.core.config import Endpoint, ServerSettings
from sockworks.core.net import RECV_SIZE, discard_input, format_address, set_reset_on_close
from sockworks.core.service import Service
from sockworks.core.stats import ServerStats
from sockworks.core.tls import handshake_failure
from sockworks.models.base import die_with_parent, kill_quietly
from sockworks.models.blocking import (
    BlockingModel,
    ConnectionRegistry,
    Tracked,
    drive_connection,
)

logger = logging.getLogger(__name__)

__all__ = ["SocketServerThreadModel", "SocketServerForkModel"]


class SessionHandler(socketserver.StreamRequestHandler):
    """Drives a session with the handler's rfile and wfile."""

    server: _ServerMixin  # type: ignore[assignment]
    tracked: Tracked | None = None
    #: Unbuffered rfile: each read is one recv(), and no bytes hide in a
    #: buffer while the connection waits in poll() for input or a delivery.
    rbufsize = 0

    def setup(self) -> None:
        tls = self.server.endpoint.tls
        if tls is not None:  # the handshake itself runs in handle(), tracked
            self.request = tls.context.wrap_socket(self.request, server_side=True,
                                                   do_handshake_on_connect=False)
        super().setup()

    def handle(self) -> None:
        server = self.server
        peer = format_address(self.client_address)
        conn = Tracked(self.connection, server.service, peer, server.stats,
                       server.settings.client_output_buffer_limit)
        self.tracked = conn
        registry = server.registry
        registry.add(conn)
        server.on_session_start(conn)
        try:
            if server.endpoint.tls is not None:
                try:
                    self.connection.do_handshake()
                except (OSError, ValueError) as exc:
                    logger.debug("closing %s: %s", peer, handshake_failure(exc))
                    discard_input(self.connection)
                    return
            if registry.stopping:
                return
            rfile = self.rfile
            drive_connection(conn, registry, functools.partial(rfile.read, RECV_SIZE),
                             self._send, server.settings, server.stats)
        finally:
            registry.remove(conn)
            conn.forget()
            conn.session.on_close()

    def _send(self, data: bytes) -> None:
        """wfile.write bounded by --send-timeout instead of the idle timeout
        (switching between two timeouts is no system call)."""
        sock = self.connection
        sock.settimeout(self.server.settings.send_timeout or None)
        try:
            self.wfile.write(data)
        finally:
            sock.settimeout(self.timeout)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # flushing to a peer that is gone
        conn = self.tracked
        if conn is not None and conn.reset:
            set_reset_on_close(self.connection)
        if self.server.endpoint.tls is not None:
            # socketserver closes the socket it accepted, which the TLS
            # wrapper took over: close the wrapper here.
            self.connection.close()


class _ServerMixin:
    """What both socketserver servers carry: our service and bookkeeping."""

    service: Service
    endpoint: Endpoint
    settings: ServerSettings
    stats: ServerStats
    registry: ConnectionRegistry
    model: _SocketServerModel

    def on_session_start(self, conn: Tracked) -> None:
        pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.exception("unexpected error on connection from %s", format_address(client_address))


class _ThreadingServer(_ServerMixin, socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = True  # server_close() joins the handler threads

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.model.admission.release()


class _ForkingServer(_ServerMixin, socketserver.ForkingMixIn, socketserver.TCPServer):
    block_on_close = False  # the model reaps children itself, with a deadline
    model: SocketServerForkModel

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the child only (ForkingMixIn calls it after fork).
        self.model.become_child()
        super().finish_request(request, client_address)

    def on_session_start(self, conn: Tracked) -> None:
        self.model.child_conn = conn


class _SocketServerModel(BlockingModel):
    server_class: type[socketserver.TCPServer]

    def __init__(self, endpoints: Sequence[Endpoint], settings: ServerSettings,
                 stats: ServerStats) -> None:
        super().__init__(endpoints, settings, stats)
        self.servers: list[Any] = []

    def bind(self) -> list[tuple[object, ...]]:
        addresses = super().bind()
        handler = type("Handler", (SessionHandler,),
                       {"timeout": self.settings.idle_timeout or None})
        for listener, endpoint in zip(self.listeners, self.endpoints):
            server_cls: Any = self.server_class
            server_cls.address_family = listener.family
            server = server_cls(listener.getsockname(), handler, bind_and_activate=False)
            server.socket.close()
            server.socket = listener  # our listener: getaddrinfo, dual-stack, reuse
            server.service = endpoint.service
            server.endpoint = endpoint
            server.settings = self.settings
            server.stats = self.stats
            server.registry = self.registry
            server.model = self
            server.max_children = self.settings.max_connections
            self.servers.append(server)
        return addresses

    def handle(self, sock: socket.socket, peer: str, endpoint: Endpoint) -> None:
        # Accepting stays in the shared loop (admission, EMFILE back-off:
        # socketserver's own accept step swallows EMFILE and would spin);
        # from here on it is socketserver's machinery.
        server = self.servers[self.endpoints.index(endpoint)]
        server.process_request(sock, peer)

    def stop_accepting(self) -> None:
        for server in self.servers:
            server.socket.close()


class SocketServerThreadModel(_SocketServerModel):
    name = "socketserver-thread"
    server_class = _ThreadingServer

    def join(self) -> None:
        for server in self.servers:
            server.server_close()  # joins handler threads (block_on_close)


class SocketServerForkModel(_SocketServerModel):
    name = "socketserver-fork"
    forks = True
    server_class = _ForkingServer

    def __init__(self, endpoints: Sequence[Endpoint], settings: ServerSettings,
                 stats: ServerStats) -> None:
        super().__init__(endpoints, settings, stats)
        self.child_conn: Tracked | None = None
        self._child_stopping = False

    def start(self) -> None:
        self.parent_pid = os.getpid()
        signal.signal(signal.SIGCHLD, lambda signum, frame: self.waker.wake())

    def on_wake(self) -> None:
        self._reap()

    def on_second_signal(self) -> None:
        for server in self.servers:
            for pid in server.active_children or ():
                kill_quietly(pid, signal.SIGKILL)

    def _reap(self) -> int:
        """Reap exited children without blocking; returns how many remain."""
        remaining = 0
        for server in self.servers:
            before = len(server.active_children or ())
            server.collect_children()
            after = len(server.active_children or ())
            for _ in range(before - after):
                self.admission.release()
            remaining += after
        return remaining

    # -- in the child ----------------------------------------------------------
    def become_child(self) -> None:
        """Drop what belongs to the parent; SIGTERM now means "finish and exit"."""
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # Ctrl-C reaches the whole process group: the parent turns it into
        # SIGTERM for each child, and escalates to SIGKILL itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._child_stop)
        die_with_parent(self.parent_pid)
        for listener in self.listeners:
            listener.close()
        self.waker.close()

    def _child_stop(self, signum: int, frame: FrameType | None) -> None:
        if self._child_stopping:
            return
        self._child_stopping = True
        self.registry.stopping = True
        conn = self.child_conn
        if conn is not None and not conn.busy:
            try:
                conn.sock.shutdown(socket.SHUT_RD)  # wakes the blocked read with EOF
            except OSError:
                pass

    # -- shutdown in the parent -------------------------------------------------
    def drain(self, grace: float) -> None:
        pids = [pid for s in self.servers for pid in (s.active_children or ())]
        for pid in pids:
            kill_quietly(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self._reap():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wait_wake(remaining)
        leftover = [pid for s in self.servers for pid in (s.active_children or ())]
        if leftover:
            logger.warning("grace period over: killing %d child process(es)", len(leftover))
            for pid in leftover:
                kill_quietly(pid, signal.SIGKILL)
            for server in self.servers:
                server.collect_children(blocking=True)
            self._reap()

    def _wait_wake(self, timeout: float) -> None:
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(self.waker, selectors.EVENT_READ)
            sel.select(timeout)
        self.waker.drain()



