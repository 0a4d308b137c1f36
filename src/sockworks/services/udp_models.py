"""The two ways ``serve udp`` moves datagrams: a blocking loop and asyncio.

Both take a bound UDP socket and a :class:`DatagramService` and implement
:class:`UdpModel`: ``serve_forever()`` in the main thread until SIGINT or
SIGTERM (the second signal exits at once), ``request_stop()`` from anywhere.
The service never knows which model runs it.

* ``blocking``: one socket, one serving thread doing ``recvfrom_into`` in a
  selector loop. The selector also watches one end of a socketpair; stopping
  writes a byte to the other end, so shutdown wakes the thread at once
  without any timeout polling. The main thread only waits and takes signals.
* ``asyncio``: a ``DatagramProtocol`` on one event loop (uvloop when
  installed). Replies are dropped (and counted) while the transport asks us
  to pause writing, so a flood cannot grow the transport's buffer.

In both, a datagram longer than the service's limit is seen as too large,
never parsed truncated: the blocking loop receives into ``limit + 1`` bytes,
the event loops read whole datagrams (up to 64 KiB+).
"""

from __future__ import annotations

import abc
import asyncio
import errno
import logging
import selectors
import socket
import threading
from typing import Any, Protocol, cast

from sockworks.core.loop import loop_name, new_event_loop
from sockworks.core.net import format_address
from sockworks.models.base import install_stop_signals

logger = logging.getLogger(__name__)

__all__ = [
    "UDP_MODELS",
    "AsyncioUdpModel",
    "BlockingUdpModel",
    "DatagramService",
    "UdpModel",
    "get_udp_model",
]

#: Datagrams handled per readiness event before the blocking loop looks at
#: its wake-up socket again: a flood cannot delay shutdown by more than this.
BATCH = 64

#: recvfrom errors that say nothing about our socket's health: ICMP errors
#: queued by an earlier reply (Linux reports them on unconnected sockets only
#: with IP_RECVERR, other systems do), or a datagram that vanished.
TRANSIENT_RECV_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH,
                                   errno.ENETUNREACH, errno.ENOBUFS, errno.ENOMEM})


class DatagramService(Protocol):
    """What a model needs from the service (UdpJsonService implements it)."""

    @property
    def max_datagram(self) -> int: ...

    def handle(self, datagram: bytes, source: tuple[Any, ...]) -> bytes | None: ...

    def sent(self) -> None: ...

    def send_failed(self) -> None: ...


class UdpModel(abc.ABC):
    """How a datagram service is served: one socket, a loop, one shutdown."""

    name: str = "?"

    def __init__(self, sock: socket.socket, service: DatagramService) -> None:
        self.sock = sock
        self.service = service
        #: True when serving ended on an unexpected error (exit non-zero).
        self.failed = False

    @abc.abstractmethod
    def serve_forever(self) -> None:
        """Serve until a stop signal or :meth:`request_stop`; main thread only."""

    @abc.abstractmethod
    def request_stop(self) -> None:
        """Begin shutdown. Safe from a signal handler or any thread."""

    def install_signal_handlers(self) -> None:
        """First SIGINT/SIGTERM -> :meth:`request_stop`, the second exits at once.

        Called before the ``listening on`` line: a client that starts us and
        signals as soon as it reads that line must get a graceful stop, not
        the default action of a signal that arrived too early. Plain
        ``signal.signal`` handlers for both models: with uvloop, signals that
        arrived between ``loop.add_signal_handler`` and the loop starting
        were never delivered (test_second_signal_exits_at_once hung), while
        Python-level handlers run in either loop (both wake on a signal).
        """
        install_stop_signals(self.request_stop)

    def _handle(self, datagram: bytes, source: tuple[Any, ...]) -> bytes | None:
        # The one place that keeps the server alive whatever a datagram holds.
        try:
            return self.service.handle(datagram, source)
        except Exception:
            logger.exception("error handling a datagram from %s", format_address(source))
            return None


class BlockingUdpModel(UdpModel):
    """One serving thread waiting in a selector on the socket and a wake-up socketpair."""

    name = "blocking"

    def __init__(self, sock: socket.socket, service: DatagramService) -> None:
        super().__init__(sock, service)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)

    def request_stop(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake-up byte is already pending (or we are closing): enough

    def serve_forever(self) -> None:
        thread = threading.Thread(target=self._run, name="udp-blocking")
        thread.start()
        try:
            # join() without a timeout: signal handlers still run in this
            # thread, and the wake-up byte ends the serving thread.
            thread.join()
        finally:
            self._wake_r.close()
            self._wake_w.close()

    def _run(self) -> None:
        try:
            self._serve()
        except Exception:
            logger.exception("serving thread failed")
            self.failed = True

    def _serve(self) -> None:
        sock = self.sock
        sock.setblocking(False)
        buffer = bytearray(self.service.max_datagram + 1)
        view = memoryview(buffer)
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_r in ready:
                    logger.debug("serving thread woken for shutdown")
                    return
                for _ in range(BATCH):
                    try:
                        size, source = sock.recvfrom_into(buffer)
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        if exc.errno in TRANSIENT_RECV_ERRNOS:
                            logger.debug("recvfrom: %s", exc)
                            continue
                        raise
                    # size == limit + 1 means "longer than the limit": the
                    # codec refuses it as too large instead of parsing a prefix.
                    reply = self._handle(bytes(view[:size]), source)
                    if reply is not None:
                        self._send(reply, source)

    def _send(self, reply: bytes, destination: tuple[Any, ...]) -> None:
        try:
            self.sock.sendto(reply, destination)
        except BlockingIOError:
            self.service.send_failed()   # send buffer full: UDP may drop, so do we
        except OSError as exc:
            logger.debug("sendto %s: %s", format_address(destination), exc)
            self.service.send_failed()
        else:
            self.service.sent()


class _DatagramHandler(asyncio.DatagramProtocol):
    def __init__(self, model: AsyncioUdpModel) -> None:
        self.model = model
        self.transport: asyncio.DatagramTransport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport does not subclass asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        model = self.model
        reply = model._handle(data, addr)
        if reply is None:
            return
        if self.paused or self.transport is None:
            model.service.send_failed()
            return
        self.transport.sendto(reply, addr)
        model.service.sent()

    def error_received(self, exc: Exception) -> None:
        logger.debug("datagram socket error: %s", exc)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False


class AsyncioUdpModel(UdpModel):
    """An asyncio datagram endpoint on the shared event-loop factory (uvloop when installed)."""

    name = "asyncio"

    def __init__(self, sock: socket.socket, service: DatagramService) -> None:
        super().__init__(sock, service)
        self.loop = new_event_loop()
        self._stopped: asyncio.Event | None = None
        self._stop_requested = False

    def request_stop(self) -> None:
        self._stop_requested = True
        stopped = self._stopped
        if stopped is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(stopped.set)

    def serve_forever(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()
            asyncio.set_event_loop(None)

    async def _serve(self) -> None:
        loop = self.loop
        self._stopped = asyncio.Event()
        if self._stop_requested:
            return
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _DatagramHandler(self), sock=self.sock)
        logger.debug("event loop: %s", loop_name(loop))
        try:
            await self._stopped.wait()
        finally:
            transport.close()


UDP_MODELS: dict[str, type[UdpModel]] = {
    "blocking": BlockingUdpModel,
    "asyncio": AsyncioUdpModel,
}


def get_udp_model(name: str) -> type[UdpModel]:
    return UDP_MODELS[name]
