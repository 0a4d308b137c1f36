"""The client side of one process: closed-loop connections on one event loop.

Each busy connection keeps ``pipeline`` requests in flight: it sends a batch,
waits for every reply, records their latency (reply read time minus batch
send time) and sends the next batch from the same ``data_received`` callback,
so a request costs the client one parse and one write, no task switch.
Idle connections are opened first, greeted, and held open.

Connections are opened before the clock starts, at most
:data:`CONNECT_CONCURRENCY` at a time. A connection that fails (refused,
reset, closed, timed out, a protocol mismatch, a "server busy" refusal) is
counted under its error kind and reopened with a backoff while the run lasts.
UDP "connections" are connected datagram sockets with ``pipeline`` requests
in flight; a batch not answered within the reply timeout is counted and resent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from sockworks.bench.histogram import Histogram
from sockworks.bench.results import (
    CLOSED,
    CONNECT_FAILED,
    CONNECT_REFUSED,
    CONNECT_TIMEOUT,
    ERROR_REPLY,
    IDLE_CLOSED,
    PROTOCOL_MISMATCH,
    RESET,
    SERVER_BUSY,
    TIMEOUT,
    BenchConfig,
    BenchResult,
)
from sockworks.bench.workloads import (
    BenchError,
    ServerBusy,
    TcpConversation,
    UdpConversation,
    build_ring,
    new_tcp_conversation,
)
from sockworks.core.loop import new_event_loop
from sockworks.core.rlimits import raise_fd_limit

logger = logging.getLogger(__name__)

__all__ = ["CONNECT_CONCURRENCY", "run_in_loop"]

#: Connections opened at once during set-up: enough to open 10,000 in a few
#: seconds, few enough not to overflow a listen backlog of 128 (lineload uses 64).
CONNECT_CONCURRENCY = 64

#: How often the reply-timeout check and the progress counters run. A scan of
#: every connection each 0.25 s costs far less than a timer per request.
TICK_SECONDS = 0.25
#: Reconnect backoff after a failure: doubles from the first to the last value.
BACKOFF_FIRST = 0.01
BACKOFF_MAX = 1.0


def _error_kind(exc: BaseException | None) -> str:
    if exc is None:
        return CLOSED
    if isinstance(exc, ConnectionRefusedError):
        return CONNECT_REFUSED
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return RESET
    if isinstance(exc, ServerBusy):
        return SERVER_BUSY
    if isinstance(exc, BenchError):
        return PROTOCOL_MISMATCH
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    return RESET


class _Worker:
    """The connections of one client process, on one event loop."""

    def __init__(self, config: BenchConfig, busy: int, idle: int, seed: int) -> None:
        self.config = config
        self.busy = busy
        self.idle = idle
        self.rng = random.Random(seed)
        self.loop = asyncio.get_running_loop()
        self.histogram = Histogram()
        self.errors: Counter[str] = Counter()
        self.completed = 0          # replies completed while recording
        self.recording = False
        self.running = False        # busy connections send while this is set
        self.connections: list[_Connection] = []
        self.idle_connections: list[_IdleConnection] = []
        self.udp: list[_UdpClient] = []
        self._semaphore = asyncio.Semaphore(CONNECT_CONCURRENCY)
        self._reconnects: set[asyncio.Task[None]] = set()
        self.is_udp = config.workload.name == "udp"
        self._ring = (None if self.is_udp
                      else build_ring(config.workload, self.rng, config.pipeline))

    # -- set-up ----------------------------------------------------------

    async def open_all(self) -> None:
        idle_tasks = [self._open_idle() for _ in range(self.idle)]
        await asyncio.gather(*idle_tasks)
        if self.is_udp:
            await asyncio.gather(*[self._open_udp() for _ in range(self.busy)])
        else:
            await asyncio.gather(*[self._open_busy(None) for _ in range(self.busy)])

    def _new_conversation(self) -> TcpConversation:
        assert self._ring is not None, "TCP workloads only"
        return new_tcp_conversation(self.config.workload, self._ring, self.rng)

    async def _open_idle(self) -> None:
        async with self._semaphore:
            conversation = self._new_conversation()
            protocol = _IdleConnection(self, conversation)
            if await self._connect_counted(protocol):
                self.idle_connections.append(protocol)

    async def _open_busy(self, connection: _Connection | None) -> bool:
        async with self._semaphore:
            conversation = self._new_conversation()
            protocol = _Connection(self, conversation) if connection is None else connection
            protocol.reset(conversation)
            if await self._connect_counted(protocol):
                if connection is None:
                    self.connections.append(protocol)
                return True
            if connection is None:
                # Kept, closed: the run reopens it with a backoff.
                self.connections.append(protocol)
            return False

    async def _connect_counted(self, protocol: _BaseConnection) -> bool:
        """Connect within the connect timeout; a failure is counted by kind."""
        try:
            await asyncio.wait_for(self._connect(protocol), self.config.connect_timeout)
        except TimeoutError:
            protocol.abort()
            self.errors[CONNECT_TIMEOUT] += 1
        except OSError as exc:
            self.errors[_connect_error_kind(exc)] += 1
        except BenchError as exc:
            self.errors[_error_kind(exc)] += 1
        else:
            return True
        return False

    async def _connect(self, protocol: _BaseConnection) -> None:
        await self.loop.create_connection(lambda: protocol, self.config.host, self.config.port)
        await protocol.greeted

    async def _open_udp(self) -> None:
        client = _UdpClient(self, UdpConversation(self.config.workload, self.rng))
        try:
            await self.loop.create_datagram_endpoint(
                lambda: client, remote_addr=(self.config.host, self.config.port))
        except OSError as exc:
            self.errors[_connect_error_kind(exc)] += 1
            return
        self.udp.append(client)

    # -- the run ---------------------------------------------------------

    async def run(self, duration: float, warmup: float,
                  progress: Callable[[int, int], None] | None) -> float:
        self.running = True
        for connection in self.connections:
            if connection.transport is not None:
                connection.send_batch()
            else:
                self.schedule_reconnect(connection)
        for client in self.udp:
            client.send_batch()
        ticker = self.loop.create_task(self._tick(progress))
        try:
            if warmup > 0:
                await asyncio.sleep(warmup)
                self.errors.clear()
                for connection in self.connections:
                    connection.conversation.error_replies = 0
                for client in self.udp:
                    client.conversation.error_replies = 0
            self.recording = True
            started = time.perf_counter()
            await asyncio.sleep(duration)
            self.recording = False
            elapsed = time.perf_counter() - started
        finally:
            self.running = False
            self.recording = False
            ticker.cancel()
        return elapsed

    async def _tick(self, progress: Callable[[int, int], None] | None) -> None:
        timeout_ns = int(self.config.timeout * 1e9)
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = time.perf_counter_ns()
            for connection in self.connections:
                if (connection.transport is not None and connection.waiting
                        and now - connection.sent_at > timeout_ns):
                    connection.fail(TIMEOUT)
            for client in self.udp:
                if client.waiting and now - client.sent_at > timeout_ns:
                    self.count_error(TIMEOUT)
                    client.send_batch()
            if progress is not None:
                progress(self.completed, sum(self.errors.values()))

    def count_error(self, kind: str) -> None:
        self.errors[kind] += 1

    def schedule_reconnect(self, connection: _Connection) -> None:
        if not self.running:
            return
        delay = connection.backoff
        connection.backoff = min(BACKOFF_MAX, delay * 2)
        self.loop.call_later(delay, self._reconnect, connection)

    def _reconnect(self, connection: _Connection) -> None:
        if not self.running:
            return
        task = self.loop.create_task(self._reopen(connection))
        self._reconnects.add(task)
        task.add_done_callback(self._reconnects.discard)

    async def _reopen(self, connection: _Connection) -> None:
        if await self._open_busy(connection):
            if self.running:
                connection.send_batch()
        else:
            self.schedule_reconnect(connection)

    async def close_all(self) -> None:
        for task in list(self._reconnects):
            task.cancel()
        if self._reconnects:
            await asyncio.gather(*self._reconnects, return_exceptions=True)
        closing: list[_BaseConnection] = [*self.connections, *self.idle_connections]
        for connection in closing:
            connection.close()
        for client in self.udp:
            client.close()
        # Let the loop run the connection_lost callbacks (closes the sockets).
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    def result(self, elapsed: float) -> BenchResult:
        # A connection counts once it got a reply: a refused one ("server
        # busy") may well have connected first.
        connected = (sum(1 for c in self.connections if c.answered)
                     + sum(1 for u in self.udp if u.answered))
        return BenchResult(self.completed, elapsed, Counter(self.errors), self.histogram,
                           connected, len(self.idle_connections))


def _connect_error_kind(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return CONNECT_REFUSED
    if isinstance(exc, TimeoutError):
        return CONNECT_TIMEOUT
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return RESET
    return CONNECT_FAILED


class _BaseConnection(asyncio.Protocol):
    transport: asyncio.Transport | None

    def __init__(self, worker: _Worker, conversation: TcpConversation) -> None:
        self.worker = worker
        self.conversation = conversation
        self.transport = None
        self.greeted: asyncio.Future[None] = worker.loop.create_future()
        self.live = False   # connected and greeted: failures from now on are the run's

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio and uvloop already set it; say so rather than rely on it:
            # a pipelined batch must not wait for Nagle.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.conversation.awaiting_greeting:
            self._greeted()

    def _greeted(self) -> None:
        self.live = True
        if not self.greeted.done():
            self.greeted.set_result(None)

    def _fail_greeting(self, exc: BaseException) -> None:
        if not self.greeted.done():
            self.greeted.set_exception(exc)
            # Retrieved by the awaiting set-up task; avoid "never retrieved".
            self.greeted.exception()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()
            self.transport = None


class _IdleConnection(_BaseConnection):
    """Opened, greeted, then silent until the end of the run."""

    def data_received(self, data: bytes) -> None:
        if self.conversation.awaiting_greeting:
            try:
                self.conversation.feed(data)
            except BenchError as exc:
                self._fail_greeting(exc)
                self.abort()
                return
            if not self.conversation.awaiting_greeting:
                self._greeted()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.live:
            self._fail_greeting(exc or ConnectionResetError("closed before the greeting"))
        elif self.transport is not None:
            self.worker.count_error(IDLE_CLOSED)
        self.live = False
        self.transport = None


class _Connection(_BaseConnection):
    """A busy connection: send a batch, read its replies, repeat."""

    def __init__(self, worker: _Worker, conversation: TcpConversation) -> None:
        super().__init__(worker, conversation)
        self.depth = worker.config.pipeline
        # Bound methods looked up once: data_received runs once per batch.
        self._record = worker.histogram.record
        self._feed = conversation.feed
        self._next_batch = conversation.next_batch
        self.sent_at = 0
        self.pending = 0
        self.waiting = False
        self.answered = False   # a whole batch was answered at least once
        self.backoff = BACKOFF_FIRST
        self._failure: str | None = None

    def reset(self, conversation: TcpConversation) -> None:
        """Ready to be opened again, with a fresh conversation."""
        self.conversation = conversation
        self._feed = conversation.feed
        self._next_batch = conversation.next_batch
        self.greeted = self.worker.loop.create_future()
        self.live = False
        self.waiting = False
        self.pending = 0
        self._failure = None

    def send_batch(self) -> None:
        transport = self.transport
        if transport is None:
            return
        self.waiting = True
        self.pending = self.depth
        data = self._next_batch(self.depth)
        self.sent_at = time.perf_counter_ns()
        transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            done = self._feed(data)
        except BenchError as exc:
            if self.live:
                self.fail(_error_kind(exc))
            else:
                self._fail_greeting(exc)
                self.abort()
            return
        if not self.live:
            if not self.conversation.awaiting_greeting:
                self._greeted()
            return
        if done:
            worker = self.worker
            if worker.recording:
                self._record(time.perf_counter_ns() - self.sent_at, done)
                worker.completed += done
            self.pending -= done
            if self.pending <= 0:
                self.waiting = False
                self.backoff = BACKOFF_FIRST
                self.answered = True
                if worker.running:
                    self.send_batch()

    def fail(self, kind: str) -> None:
        """Count the failure once, drop the connection, reopen it later."""
        if self._failure is None:
            self._failure = kind
            if self.worker.running:
                self.worker.count_error(kind)
            self.flush_error_replies()
        self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        transport, self.transport = self.transport, None
        if not self.live:
            # Set-up failed: the task opening it counts the error and retries.
            self._fail_greeting(exc or ConnectionResetError("closed before the greeting"))
            return
        self.live = False
        if transport is None:
            return  # closed by close_all
        if self._failure is None and self.worker.running:
            self.fail(_error_kind(exc))
        self.worker.schedule_reconnect(self)

    def flush_error_replies(self) -> None:
        errors = self.conversation.error_replies
        if errors:
            self.worker.errors[ERROR_REPLY] += errors
            self.conversation.error_replies = 0


class _UdpClient(asyncio.DatagramProtocol):
    """A UDP socket with ``pipeline`` requests in flight."""

    def __init__(self, worker: _Worker, conversation: UdpConversation) -> None:
        self.worker = worker
        self.conversation = conversation
        self.depth = worker.config.pipeline
        self.transport: asyncio.DatagramTransport | None = None
        self.sent_at = 0
        self.waiting = False
        self.answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def send_batch(self) -> None:
        if self.transport is None:
            return
        self.waiting = True
        datagrams = self.conversation.next_batch(self.depth)
        self.sent_at = time.perf_counter_ns()
        for datagram in datagrams:
            self.transport.sendto(datagram)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            done = self.conversation.feed(data)
        except BenchError as exc:
            self.worker.count_error(_error_kind(exc))
            return
        if done:
            worker = self.worker
            if worker.recording:
                worker.histogram.record(time.perf_counter_ns() - self.sent_at, done)
                worker.completed += done
            if self.conversation.outstanding() == 0:
                self.waiting = False
                self.answered = True
                if worker.running:
                    self.send_batch()

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable arrives as ECONNREFUSED on a connected socket.
        self.worker.count_error(_connect_error_kind(exc) if isinstance(exc, OSError) else RESET)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _run_worker(config: BenchConfig, busy: int, idle: int, seed: int,
                      ready: Callable[[], None] | None,
                      progress: Callable[[int, int], None] | None) -> BenchResult:
    worker = _Worker(config, busy, idle, seed)
    try:
        await worker.open_all()
        if ready is not None:
            # Blocks the loop on purpose: every connection is open and quiet,
            # and all processes must start their clocks together.
            ready()
        elapsed = await worker.run(config.duration, config.warmup, progress)
    finally:
        for connection in worker.connections:
            connection.flush_error_replies()
        await worker.close_all()
    result = worker.result(elapsed)
    result.errors[ERROR_REPLY] += sum(c.conversation.error_replies for c in worker.udp)
    result.errors = +result.errors  # drop the kinds that stayed at zero
    return result


def run_in_loop(config: BenchConfig, busy: int, idle: int, seed: int,
                 ready: Callable[[], None] | None,
                 progress: Callable[[int, int], None] | None) -> BenchResult:
    raise_fd_limit(busy + idle, flag="--connections (with --idle)")
    loop = new_event_loop()
    try:
        return loop.run_until_complete(_run_worker(config, busy, idle, seed, ready, progress))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
