"""The log batch (issue #15): one write() per loop iteration or per chunk a
thread handled, before any of those writes' replies; a failed batch answers
every write in it with an error; under ``--fsync always`` nothing
acknowledged is lost to a SIGKILL.

Writes are counted on the log's write seam (``AppendOnlyLog._os_write``), not
timed. To put M clients' pipelines into ONE event-loop iteration the test
holds the loop in a callback, sends every pipeline, waits until the kernel
holds all of it on the server's sockets (FIONREAD), and lets the loop go: its
next poll finds every connection readable at once. The forking models
(socketserver-fork, prefork) cannot run the embedded store (the server refuses
it); prefork's workers run the asyncio model tested here.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import socket
import struct
import termios
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sockworks.core.loop import loop_name
from sockworks.models import FORKING_MODELS, MODELS, asyncio_model
from sockworks.protocols.resp import encode_command
from sockworks.server import Server
from sockworks.services.kv import KvService
from sockworks.storage.embedded import PersistentStore, open_embedded_store
from tests.storage.store_contract import wait_until
from tests.support import StartServer

THREAD_MODELS = [m for m in MODELS if m not in FORKING_MODELS and m != "asyncio"]
CLIENTS = 8
PIPELINE = 16


class CountingWriter:
    """Stands in for os.write on the log: counts calls, fails on request."""

    def __init__(self, real: Callable[[int, bytes], int]) -> None:
        self.real = real
        self.calls = 0
        self.bytes = 0
        self.fail: int | None = None  # an errno to raise instead of writing
        self.lock = threading.Lock()
        #: Called before each write (the test checks no reply went out yet).
        self.before: Callable[[], None] = lambda: None

    def __call__(self, fd: int, data: bytes) -> int:
        self.before()
        with self.lock:
            self.calls += 1
            if self.fail is not None:
                raise OSError(self.fail, "No space left on device")
            self.bytes += len(data)
        return self.real(fd, data)


@pytest.fixture(params=["uvloop", "asyncio"])
def loop_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "asyncio":
        monkeypatch.setattr(asyncio_model, "new_event_loop", asyncio.new_event_loop)
    else:
        pytest.importorskip("uvloop")
    return str(request.param)


def serve(tmp_path: Path, model: str, fsync: str) -> tuple[Server, PersistentStore,
                                                           CountingWriter]:
    store = open_embedded_store(str(tmp_path), fsync, active_expiry=False)
    assert isinstance(store, PersistentStore)
    service = KvService(store)
    server = Server(service, model=model, port=0, resp_port=0, idle_timeout=0)
    server.start()
    writer = CountingWriter(store._aof._os_write)
    store._aof._os_write = writer
    return server, store, writer


def connect(address: tuple[str, int], greeting: bool) -> socket.socket:
    """A client the server has accepted (so the held loop knows its socket)."""
    sock = socket.create_connection(address, timeout=30)
    try:
        if greeting:
            assert read_lines(sock, 1) == [b"READY"]  # the text port's greeting
        else:
            sock.sendall(b"PING\r\n")
            assert read_lines(sock, 1, b"\r\n") == [b"+PONG"]
    except BaseException:
        sock.close()  # never leak it into the next test's unraisable check
        raise
    return sock


def read_lines(sock: socket.socket, count: int, sep: bytes = b"\n") -> list[bytes]:
    """Exactly ``count`` reply lines (RESP: one line per simple reply)."""
    data = b""
    while data.count(sep) < count:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    lines = data.split(sep)
    assert lines[count:] == [b""], data
    return lines[:count]


def unread(sock: socket.socket) -> int:
    count: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]
    return count


class HeldLoop:
    """Hold the server's event loop in a callback until released."""

    def __init__(self, server: Server) -> None:
        model = server._model
        assert isinstance(model, asyncio_model.AsyncioModel)
        self.model = model
        self.entered = threading.Event()
        self.release = threading.Event()

    def __enter__(self) -> HeldLoop:
        def hold() -> None:
            self.entered.set()
            self.release.wait(60)

        self.model.loop.call_soon_threadsafe(hold)
        assert self.entered.wait(30)
        return self

    def server_sockets(self) -> list[socket.socket]:
        socks = []
        for conn in list(self.model.connections):
            assert conn.transport is not None
            socks.append(conn.transport.get_extra_info("socket"))
        return socks

    def wait_received(self, total: int) -> None:
        """Until the server's sockets hold ``total`` unread bytes."""
        assert wait_until(lambda: sum(map(unread, self.server_sockets())) == total, 30), (
            f"server sockets hold {sum(map(unread, self.server_sockets()))} of {total} bytes")

    def __exit__(self, *exc: object) -> None:
        self.release.set()


@pytest.fixture
def clients() -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    yield socks
    for sock in socks:
        sock.close()


@pytest.mark.parametrize("fsync", ["always", "everysec"])
def test_one_write_per_loop_iteration_for_every_clients_pipeline(
        tmp_path: Path, loop_kind: str, fsync: str, clients: list[socket.socket]) -> None:
    server, store, writer = serve(tmp_path, "asyncio", fsync)
    try:
        assert loop_name(server._model.loop) == loop_kind  # type: ignore[union-attr]
        text, resp = server.addresses
        for _ in range(CLIENTS - 1):
            clients.append(connect(text, greeting=True))
        clients.append(connect(resp, greeting=False))
        sent = 0
        fsyncs = store.info()["aof_fsyncs"]
        writes = writer.calls
        # Bytes of replies the clients could read when the log was written:
        # the batch must be written before any of its replies is sent.
        replies_before_write: list[int] = []
        writer.before = lambda: replies_before_write.append(sum(map(unread, clients)))
        # ... and, under always, before the fsync that covers it.
        replies_before_fsync: list[int] = []
        real_fsync = store._aof._os_fsync

        def fsync_spy(fd: int) -> None:
            replies_before_fsync.append(sum(map(unread, clients)))
            real_fsync(fd)

        store._aof._os_fsync = fsync_spy
        with HeldLoop(server) as held:
            held.wait_received(0)
            for index, sock in enumerate(clients[:-1]):
                pipeline = b"".join(b"SET k%d-%d v%d\n" % (index, n, n) for n in range(PIPELINE))
                sock.sendall(pipeline)
                sent += len(pipeline)
            pipeline = b"".join(b"*3\r\n$3\r\nSET\r\n$3\r\nr-%d\r\n$1\r\nv\r\n" % (n % 10)
                                for n in range(PIPELINE))
            clients[-1].sendall(pipeline)
            sent += len(pipeline)
            held.wait_received(sent)
            assert writer.calls == writes  # nothing written while the loop is held
        for sock in clients[:-1]:
            assert read_lines(sock, PIPELINE) == [b"OK"] * PIPELINE
        assert read_lines(clients[-1], PIPELINE, b"\r\n") == [b"+OK"] * PIPELINE
        # 8 clients x 16 writes, all read in one iteration: ONE write() for
        # all 128 records, and under always one fsync (the flusher's), before
        # any reply.
        assert writer.calls == writes + 1
        assert replies_before_write == [0]
        if fsync == "always":
            assert replies_before_fsync == [0]
            assert store.info()["aof_fsyncs"] == fsyncs + 1
        assert store.info()["aof_buffered_bytes"] == 0
    finally:
        server.stop(timeout=30)
    reopened = open_embedded_store(str(tmp_path), "no", active_expiry=False)
    try:
        assert reopened.get(b"k6-15") == b"v15" and reopened.get(b"r-9") == b"v"
        assert reopened.dbsize() == (CLIENTS - 1) * PIPELINE + 10
    finally:
        reopened.close()


def test_a_failed_batch_answers_every_write_in_it_with_an_error(
        tmp_path: Path, loop_kind: str, clients: list[socket.socket]) -> None:
    server, store, writer = serve(tmp_path, "asyncio", "always")
    try:
        text, resp = server.addresses
        store.set(b"old", b"1")
        barrier = store.durability_barrier()  # batching: a direct caller flushes too
        assert barrier is not None and barrier.wait(30)
        log = tmp_path / "sockworks.aof"
        for _ in range(3):
            clients.append(connect(text, greeting=True))
        clients.append(connect(resp, greeting=False))
        size = log.stat().st_size
        with HeldLoop(server) as held:
            sent = 0
            for index, sock in enumerate(clients[:-1]):
                # Writes and reads interleaved: only the writes fail.
                data = b"SET a%d x\nGET old\nINCR n%d\nGET old\n" % (index, index)
                sock.sendall(data)
                sent += len(data)
            data = b"*3\r\n$3\r\nSET\r\n$1\r\nr\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$3\r\nold\r\n"
            clients[-1].sendall(data)
            sent += len(data)
            held.wait_received(sent)
            writer.fail = errno.ENOSPC
        error = b"ERROR: cannot write to the log: No space left on device"
        for sock in clients[:-1]:
            assert read_lines(sock, 4) == [error, b"1", error, b"1"]
        assert read_lines(clients[-1], 3, b"\r\n") == [
            b"-ERR cannot write to the log: No space left on device", b"$1", b"1"]
        # Nothing of the batch reached the file; the next write is refused
        # before it changes anything (the failed batch goes first).
        assert log.stat().st_size == size
        clients[0].sendall(b"SET later y\nGET later\n")
        assert read_lines(clients[0], 2) == [error, b"NOT_FOUND"]
        writer.fail = None  # the disk has room again
        clients[0].sendall(b"SET later y\n")
        assert read_lines(clients[0], 1) == [b"OK"]
        assert store.info()["aof_last_write_status"] == "ok"
    finally:
        server.stop(timeout=30)


@pytest.mark.parametrize("model", THREAD_MODELS)
def test_a_thread_writes_its_pipelined_chunk_once(
        tmp_path: Path, model: str, clients: list[socket.socket]) -> None:
    server, _, writer = serve(tmp_path, model, "always")
    try:
        text, resp = server.addresses
        clients.append(connect(text, greeting=True))
        clients.append(connect(resp, greeting=False))
        for round_ in range(5):
            before = writer.calls
            clients[0].sendall(b"".join(b"SET k%d-%d v\n" % (round_, n)
                                        for n in range(PIPELINE)))
            assert read_lines(clients[0], PIPELINE) == [b"OK"] * PIPELINE
            # One chunk (one send of < 1 KB on loopback arrives as one
            # segment, read by one recv): one write() for its 16 records.
            assert writer.calls == before + 1
        writer.fail = errno.ENOSPC
        clients[0].sendall(b"SET x 1\nGET k0-0\nSET y 2\n")
        error = b"ERROR: cannot write to the log: No space left on device"
        assert read_lines(clients[0], 3) == [error, b"v", error]
        clients[1].sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nr\r\n$1\r\nv\r\n")
        assert read_lines(clients[1], 1, b"\r\n") == [
            b"-ERR cannot write to the log: No space left on device"]
        writer.fail = None
        clients[0].sendall(b"SET z 3\n")
        assert read_lines(clients[0], 1) == [b"OK"]
    finally:
        server.stop(timeout=30)
    reopened = open_embedded_store(str(tmp_path), "no", active_expiry=False)
    try:
        assert reopened.get(b"k4-15") == b"v" and reopened.get(b"z") == b"3"
    finally:
        reopened.close()


@pytest.mark.parametrize("port", ["text", "resp"])
def test_a_failed_batch_errs_the_writes_of_a_chunk_two_paths_ran(
        tmp_path: Path, port: str, clients: list[socket.socket]) -> None:
    """A chunk the compiled path starts (SET, GET, INCR) and hands to the
    reference at EXISTS (which then runs DEL): every write's reply, from
    either part, becomes the error, the reads keep theirs; on the pure
    path the reference runs it all, with the same replies."""
    server, store, writer = serve(tmp_path, "thread", "always")
    try:
        text, resp = server.addresses
        store.set(b"old", b"1")
        barrier = store.durability_barrier()  # batching: a direct caller flushes too
        assert barrier is not None and barrier.wait(30)
        if port == "text":
            clients.append(connect(text, greeting=True))
            writer.fail = errno.ENOSPC
            clients[0].sendall(b"SET a x\nGET old\nINCR n\nEXISTS old\nDEL gone\n")
            error = b"ERROR: cannot write to the log: No space left on device"
            assert read_lines(clients[0], 5) == [error, b"1", error, b"1", error]
        else:
            clients.append(connect(resp, greeting=False))
            writer.fail = errno.ENOSPC
            clients[0].sendall(b"".join(encode_command(argv) for argv in (
                [b"SET", b"r", b"v"], [b"GET", b"old"], [b"INCR", b"m"], [b"EXISTS", b"old"],
                [b"DEL", b"gone"])))
            failed = b"-ERR cannot write to the log: No space left on device"
            assert read_lines(clients[0], 6, b"\r\n") == [failed, b"$1", b"1", failed, b":1",
                                                           failed]
        writer.fail = None
    finally:
        server.stop(timeout=30)


@pytest.mark.parametrize("model", [m for m in MODELS if m not in FORKING_MODELS])
def test_sigkill_loses_no_acknowledged_pipelined_write(
        start_server: StartServer, tmp_path: Path, model: str) -> None:
    """Pipelines from several clients under --fsync always; SIGKILL once
    enough are acknowledged; every acknowledged write is replayed."""
    args = ("serve", "kv", "--data-dir", str(tmp_path), "--fsync", "always", "--model", model)
    server = start_server(*args, process=True)
    writers, target = 6, 2000
    acked: list[list[bytes]] = [[] for _ in range(writers)]
    enough = threading.Event()

    def write(index: int) -> None:
        try:
            sock = connect((server.host, server.port), greeting=True)
        except (OSError, AssertionError):
            return  # connected only after the kill (a slow thread on a busy machine)
        with sock:
            for batch in range(2000):
                keys = [b"w%d-%d-%d" % (index, batch, n) for n in range(PIPELINE)]
                try:
                    sock.sendall(b"".join(b"SET %s v%s\n" % (key, key) for key in keys))
                    replies = read_lines(sock, PIPELINE)
                except (OSError, AssertionError):
                    return  # the kill: what was acknowledged before it is recorded
                for key, reply in zip(keys, replies, strict=True):
                    if reply != b"OK":
                        return
                    acked[index].append(key)
                if sum(map(len, acked)) >= target:
                    enough.set()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    assert enough.wait(60)
    server.proc.kill()
    for thread in threads:
        thread.join(30)
    server.wait(10)
    keys = [key for keys in acked for key in keys]
    assert len(keys) >= target
    store = open_embedded_store(str(tmp_path), "no", active_expiry=False)
    try:
        missing = [key for key in keys if store.get(key) != b"v" + key]
    finally:
        store.close()
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
