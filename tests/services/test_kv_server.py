"""The KV server as users meet it: real processes, real sockets on port 0.

Parametrized over every model that shares memory (the embedded store needs
it); the forking models must be refused. Persistence tests restart real
processes on a real data dir, including after kill -9 under write load.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from sockworks.client import ConnectionClosed, KvClient, ServerError
from sockworks.models import FORKING_MODELS
from sockworks.protocols.kvtext import HttpRequest, Quit, parse_line
from tests.conftest import ServerProcess
from tests.support import SHARED_MEMORY_MODELS, RunningServer, StartServer


@pytest.fixture(params=SHARED_MEMORY_MODELS)
def model(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def kv(start_server: StartServer, model: str) -> RunningServer:
    return start_server("serve", "kv", "--model", model, "--log-level", "DEBUG")


def connect(server: RunningServer) -> socket.socket:
    sock: socket.socket = server.connect(timeout=10)
    assert read_lines(sock, 1) == [b"READY"]
    return sock


def read_lines(sock: socket.socket, count: int, buf: bytearray | None = None) -> list[bytes]:
    """Exactly ``count`` reply lines (fails if the server closes first)."""
    pending = buf if buf is not None else bytearray()
    while pending.count(b"\n") < count:
        chunk = sock.recv(65536)
        assert chunk, f"server closed after {bytes(pending)!r}"
        pending += chunk
    lines = bytes(pending).split(b"\n")
    rest = b"\n".join(lines[count:])
    pending[:] = rest
    return lines[:count]


def read_to_close(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


CONVERSATION = [
    (b"SET a 1", b"OK"),
    (b"GET a", b"1"),
    (b"set greeting  hello   world \r", b"OK"),
    (b"GET greeting\r", b"hello   world"),
    (b"GET nope", b"NOT_FOUND"),
    (b"DEL a", b"DELETED"),
    (b"DEL a", b"NOT_FOUND"),
    (b"", b"ERROR: empty command"),
    (b"FLY away", b"ERROR: unknown command"),
    (b"GET", b"ERROR: wrong number of arguments (usage: GET key)"),
    (b"SET k", b"ERROR: wrong number of arguments (usage: SET key value)"),
    (b"PING", b"PONG"),
    (b"EXISTS greeting a greeting", b"2"),
    (b"INCR n", b"1"),
    (b"INCRBY n 41", b"42"),
    (b"INCR greeting", b"ERROR: value is not an integer or out of range"),
    (b"INCRBY n 1.5", b"ERROR: increment is not an integer or out of range"),
    (b"SET " + b"k" * 513 + b" v", b"ERROR: key too long (max 512 bytes)"),
    (b"SET \xff\xfe \x80\x00 binary", b"OK"),
    (b"GET \xff\xfe", b"\x80\x00 binary"),
    (b"DBSIZE", b"3"),
    (b"EXPIRE n 100", b"1"),
    (b"TTL n", b"100"),
    (b"PERSIST n", b"1"),
    (b"TTL n", b"-1"),
    (b"TTL missing", b"-2"),
]


def test_conversation_one_request_at_a_time(kv: ServerProcess) -> None:
    with connect(kv) as sock:
        for request, reply in CONVERSATION:
            sock.sendall(request + b"\n")
            assert read_lines(sock, 1) == [reply], request


def test_pipelined_and_split_requests(kv: ServerProcess) -> None:
    stream = b"".join(request + b"\n" for request, _ in CONVERSATION)
    with connect(kv) as sock:
        sock.sendall(stream)
        assert read_lines(sock, len(CONVERSATION)) == [reply for _, reply in CONVERSATION]
    with connect(kv) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(40):  # one command dribbled over many packets
            sock.sendall(b"SET split value-is-here\nGET split\n"[i:i + 1])
        assert read_lines(sock, 2) == [b"OK", b"value-is-here"]


def test_quit_says_bye_closes_and_runs_nothing_after(kv: ServerProcess) -> None:
    with connect(kv) as sock:
        sock.sendall(b"SET before 1\nQUIT\nSET after 1\n")
        assert read_to_close(sock) == b"OK\nBYE\n"
    with connect(kv) as sock:
        sock.sendall(b"EXISTS before after\n")
        assert read_lines(sock, 1) == [b"1"]


def test_line_too_long_errors_then_closes(start_server: StartServer, model: str) -> None:
    server = start_server("serve", "kv", "--model", model, "--max-line", "100")
    with connect(server) as sock:
        sock.sendall(b"SET ok 1\nSET big " + b"x" * 200 + b"\nSET smuggled 1\n")
        assert read_to_close(sock) == b"OK\nERROR: line too long\n"
    with connect(server) as sock:
        sock.sendall(b"EXISTS big smuggled ok\n")
        assert read_lines(sock, 1) == [b"1"]


def test_http_on_the_wrong_port_closes_without_running(kv: ServerProcess) -> None:
    with connect(kv) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 8\r\n\r\n"
                     b"SET a 1\n")
        assert read_to_close(sock) == b""
    with connect(kv) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_to_close(sock) == b""
    with connect(kv) as sock:
        sock.sendall(b"DBSIZE\nSTATS\n")
        size, stats = read_lines(sock, 2)
        assert size == b"0"
        assert b" http_requests_refused=2 " in stats
    kv.wait_for_log(b"HTTP request from")


def test_stats_counts_connections(kv: ServerProcess) -> None:
    with connect(kv), connect(kv) as sock:
        sock.sendall(b"GET nope\nSTATS\n")
        _, stats = read_lines(sock, 2)
        fields = dict(f.split(b"=", 1) for f in stats.split()[1:])
        assert fields[b"connections_current"] == b"2"
        assert int(fields[b"connections_total"]) >= 2
        assert fields[b"get_misses"] == b"1"
        assert fields[b"persistence"] == b"off"


def test_concurrent_incr_is_exact(kv: ServerProcess) -> None:
    clients, per_client, batch = 50, 1000, 50
    errors: list[BaseException] = []
    start = threading.Barrier(clients)

    def work() -> None:
        try:
            with KvClient(kv.host, kv.port, timeout=30) as client:
                start.wait(30)
                for _ in range(per_client // batch):
                    replies = client.pipeline([b"INCR counter"] * batch)
                    assert all(r.isdigit() for r in replies), replies[:3]
        except (AssertionError, OSError, threading.BrokenBarrierError) as exc:
            # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not errors, errors[:3]
    with KvClient(kv.host, kv.port) as client:
        assert client.get(b"counter") == b"%d" % (clients * per_client)


def test_expiry_over_the_wire(kv: ServerProcess) -> None:
    with KvClient(kv.host, kv.port) as client:
        client.set(b"short", b"lived")
        assert client.expire(b"short", 1)
        assert client.ttl(b"short") == 1
        client.set(b"long", b"lived")
        assert client.expire(b"long", 100)
        # Wait, bounded, for the key to go: never returned once expired.
        waiter = threading.Event()
        for _ in range(50):
            if client.get(b"short") is None:
                break
            waiter.wait(0.1)
        assert client.get(b"short") is None
        assert client.exists(b"short") == 0
        assert client.get(b"long") == b"lived"


def test_idle_client_without_newline_then_eof_runs_nothing(kv: ServerProcess) -> None:
    with connect(kv) as sock:
        sock.sendall(b"SET partial 1")
        sock.shutdown(socket.SHUT_WR)
        assert read_to_close(sock) == b""
    with KvClient(kv.host, kv.port) as client:
        assert client.exists(b"partial") == 0


# -- start-up refusals -------------------------------------------------------


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sockworks", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


@pytest.mark.parametrize("forking", FORKING_MODELS)
def test_forking_models_are_refused(forking: str) -> None:
    result = run_cli("serve", "kv", "--model", forking, "--port", "0")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert forking in lines[0] and "cannot share" in lines[0] and "redis://" in lines[0]
    assert "Traceback" not in result.stderr


def test_unknown_store_urls_are_refused_without_leaking_the_password() -> None:
    result = run_cli("serve", "kv", "--store", "ftp://user:secret@127.0.0.1:1/0",
                     "--port", "0")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unsupported store URL" in lines[0], result.stderr
    assert "secret" not in result.stderr and "Traceback" not in result.stderr


# -- persistence ---------------------------------------------------------------


@pytest.mark.parametrize("fsync", ["always", "everysec", "no"])
def test_restart_keeps_data(start_server: StartServer, tmp_path: Path, fsync: str) -> None:
    args = ("serve", "kv", "--data-dir", str(tmp_path), "--fsync", fsync)
    first = start_server(*args)
    with KvClient(first.host, first.port) as client:
        client.set(b"k", b"v a l")
        client.incr(b"n", 5)
        client.set(b"gone", b"x")
        client.delete(b"gone")
        client.set(b"ttl", b"x")
        client.expire(b"ttl", 1000)
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0
    second = start_server(*args)
    with KvClient(second.host, second.port) as client:
        assert client.get(b"k") == b"v a l"
        assert client.get(b"n") == b"5"
        assert client.exists(b"gone") == 0
        assert 990 <= client.ttl(b"ttl") <= 1000
        assert client.stats()["persistence"] == "aof"


@pytest.mark.parametrize("model", ["asyncio", "thread"])
def test_kill_9_under_write_load_loses_no_acknowledged_write(
        start_server: StartServer, tmp_path: Path, model: str) -> None:
    args = ("serve", "kv", "--data-dir", str(tmp_path), "--fsync", "always", "--model", model)
    server = start_server(*args, process=True)  # to be killed
    writers, acked_target = 8, 1500
    acked: list[list[bytes]] = [[] for _ in range(writers)]
    enough = threading.Event()

    def write(index: int) -> None:
        try:
            with KvClient(server.host, server.port, timeout=30) as client:
                for i in range(100_000):
                    key = b"w%d-%d" % (index, i)
                    if client.execute(b"SET " + key + b" v" + key) != b"OK":
                        return
                    acked[index].append(key)
                    if sum(map(len, acked)) >= acked_target:
                        enough.set()
        except (ConnectionClosed, OSError):
            return  # the kill: everything acknowledged before it is recorded

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    assert enough.wait(60)
    os.kill(server.proc.pid, signal.SIGKILL)
    for thread in threads:
        thread.join(30)
    server.wait(10)
    restarted = start_server(*args)
    keys = [key for keys in acked for key in keys]
    assert len(keys) >= acked_target
    with KvClient(restarted.host, restarted.port, timeout=30) as client:
        values = []
        for start in range(0, len(keys), 200):
            chunk = keys[start:start + 200]
            values += client.pipeline([b"GET " + key for key in chunk])
    missing = [key for key, value in zip(keys, values, strict=True) if value != b"v" + key]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"


def _mixed_writer(port: int, index: int, acked: list[tuple[int, bytes]],
                  enough: threading.Event, target: int, done: list[int]) -> None:
    """RESP writes of every type, recorded once acknowledged: HSET, RPUSH,
    SADD, ZADD and LPOP in turn on this writer's own keys."""
    import redis
    try:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=30)
        for n in range(100_000):
            op = n % 5
            value = b"%d" % n
            done[index] = op  # the op in flight, should the kill come now
            if op == 0:
                client.hset(b"h%d" % index, b"f" + value, value)
            elif op == 1:
                client.rpush(b"l%d" % index, value)
            elif op == 2:
                client.sadd(b"s%d" % index, value)
            elif op == 3:
                client.zadd(b"z%d" % index, {b"m" + value: n})
            else:
                popped: Any = client.lpop(b"l%d" % index)
                value = popped if popped is not None else b""
            acked.append((op, value))
            if len(acked) >= target:
                enough.set()
    except (redis.ConnectionError, OSError):
        return  # the kill: everything acknowledged before it is recorded


def test_kill_9_under_mixed_type_load_loses_no_acknowledged_write(
        start_server: StartServer, tmp_path: Path) -> None:
    pytest.importorskip("redis")
    import redis
    args = ("serve", "kv", "--data-dir", str(tmp_path), "--fsync", "always",
            "--resp-port", "0")
    server = start_server(*args, process=True, expect_listeners=2)  # to be killed
    port = server.addresses[1][1]
    writers, per_writer = 6, 300
    acked: list[list[tuple[int, bytes]]] = [[] for _ in range(writers)]
    in_flight = [0] * writers
    events = [threading.Event() for _ in range(writers)]
    threads = [threading.Thread(target=_mixed_writer,
                                args=(port, i, acked[i], events[i], per_writer, in_flight))
               for i in range(writers)]
    for thread in threads:
        thread.start()
    for event in events:
        assert event.wait(60)
    os.kill(server.proc.pid, signal.SIGKILL)
    for thread in threads:
        thread.join(30)
    server.wait(10)
    restarted = start_server(*args, expect_listeners=2)
    client = redis.Redis(host="127.0.0.1", port=restarted.addresses[1][1], socket_timeout=30)
    try:
        for index, ops in enumerate(acked):
            fields = client.hgetall(b"h%d" % index)
            members = client.smembers(b"s%d" % index)
            pairs: Any = client.zrange(b"z%d" % index, 0, -1, withscores=True)
            scores = dict(pairs)
            expected: list[bytes] = []
            for op, value in ops:
                if op == 0:
                    assert fields.get(b"f" + value) == value
                elif op == 1:
                    expected.append(value)
                elif op == 2:
                    assert value in members
                elif op == 3:
                    assert scores.get(b"m" + value) == int(value)
                elif value:
                    assert expected.pop(0) == value
            actual = client.lrange(b"l%d" % index, 0, -1)
            # The write in flight at the kill may or may not have landed.
            assert actual == expected or (in_flight[index] == 1 and actual[:-1] == expected) \
                or (in_flight[index] == 4 and actual == expected[1:]), (index, actual, expected)
    finally:
        client.close()


def test_corrupt_log_refuses_to_start_with_one_clear_line(start_server: StartServer,
                                                          tmp_path: Path) -> None:
    server = start_server("serve", "kv", "--data-dir", str(tmp_path))
    with KvClient(server.host, server.port) as client:
        client.pipeline([b"SET key%d value%d" % (i, i) for i in range(200)])
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    log = tmp_path / "sockworks.aof"
    data = bytearray(log.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8] = b"GARBAGE!"
    log.write_bytes(bytes(data))
    result = run_cli("serve", "kv", "--data-dir", str(tmp_path), "--port", "0")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "sockworks serve kv:" in line]
    assert len(errors) == 1 and "cannot open the store" in errors[0], result.stderr
    assert log.read_bytes() == bytes(data)  # nothing on disk was touched


def test_data_dir_in_use_is_refused(start_server: StartServer, tmp_path: Path) -> None:
    start_server("serve", "kv", "--data-dir", str(tmp_path))
    result = run_cli("serve", "kv", "--data-dir", str(tmp_path), "--port", "0")
    assert result.returncode != 0
    assert "in use by another process" in result.stderr
    assert "Traceback" not in result.stderr


def test_torn_last_record_is_cut_off_and_the_server_starts(start_server: StartServer,
                                                           tmp_path: Path) -> None:
    args = ("serve", "kv", "--data-dir", str(tmp_path))
    server = start_server(*args)
    with KvClient(server.host, server.port) as client:
        client.pipeline([b"SET key%d value%d" % (i, i) for i in range(50)])
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    log = tmp_path / "sockworks.aof"
    with log.open("r+b") as handle:  # a crash in the middle of the last write
        handle.truncate(log.stat().st_size - 3)
    restarted = start_server(*args)
    restarted.wait_for_log(b"torn last record")
    with KvClient(restarted.host, restarted.port) as client:
        assert client.dbsize() == 49
        assert client.get(b"key48") == b"value48"
        assert client.get(b"key49") is None


def limit_file_size() -> None:
    import resource

    # The log may grow to 64 KiB: past that, write() fails with EFBIG (Python
    # ignores SIGXFSZ), which is what a full disk looks like to the store.
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_disk_full_fails_writes_and_keeps_reads(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server("serve", "kv", "--data-dir", str(tmp_path), "--fsync", "always",
                          preexec_fn=limit_file_size)
    value = b"v" * 1000
    with KvClient(server.host, server.port) as client:
        client.set(b"first", b"kept")
        reply = b""
        written = 0
        for i in range(200):  # 200 KB would exceed the 64 KiB limit three times
            reply = client.execute(b"SET key%d %s" % (i, value))
            if reply != b"OK":
                break
            written += 1
        assert reply.startswith(b"ERROR: cannot write to the log"), reply
        assert 0 < written < 200
        # The failed batch is not acknowledged; it stays applied in memory
        # (kept for the retry), while later writes are refused before they
        # change anything. Reads and the connection still work.
        assert client.get(b"first") == b"kept"
        assert client.get(b"key0") == value
        assert client.execute(b"SET other %s" % value).startswith(b"ERROR: ")
        assert client.get(b"other") is None
        assert client.stats()["aof_last_write_status"] == "err"
    server.wait_for_log(b"write failed")
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    restarted = start_server("serve", "kv", "--data-dir", str(tmp_path))
    with KvClient(restarted.host, restarted.port) as client:
        # Everything acknowledged is in the log; the refused writes are not.
        assert client.get(b"first") == b"kept"
        assert [client.get(b"key%d" % i) for i in range(written)] == [value] * written
        assert client.get(b"key%d" % written) is None
        assert client.get(b"other") is None


def test_compaction_under_write_load_loses_nothing(start_server: StartServer, tmp_path: Path) -> None:
    args = ("serve", "kv", "--data-dir", str(tmp_path), "--fsync", "everysec")
    server = start_server(*args)
    writers, per_writer = 4, 400
    failures: list[BaseException] = []

    def write(index: int) -> None:
        try:
            with KvClient(server.host, server.port, timeout=30) as client:
                for i in range(per_writer):
                    assert client.execute(b"SET w%d-%d %d" % (index, i, i)) == b"OK"
                    assert client.execute(b"INCR total%d" % index) == b"%d" % (i + 1)
        except (AssertionError, OSError, ConnectionClosed) as exc:
            failures.append(exc)

    with KvClient(server.host, server.port) as client:
        client.pipeline([b"SET old%d x" % i for i in range(500)])
        client.pipeline([b"DEL old%d" % i for i in range(500)])
        threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
        for thread in threads:
            thread.start()
        rewrites = 0
        for _ in range(5):  # compact repeatedly while the writers run
            try:
                assert client.compact() == "OK compaction started"
            except ServerError as exc:  # the previous rewrite still runs
                assert str(exc) == "Background append only file rewriting already in progress"
            stats = client.stats()
            rewrites = int(stats["aof_rewrites"])
        for thread in threads:
            thread.join(60)
        assert not failures, failures[:3]
        # Let the last background rewrite finish (bounded wait, no timing claim).
        for _ in range(100):
            if client.stats()["aof_rewrite_in_progress"] == "0":
                break
            threading.Event().wait(0.1)
        assert int(client.stats()["aof_rewrites"]) >= max(rewrites, 1)
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    restarted = start_server(*args)
    with KvClient(restarted.host, restarted.port) as client:
        assert client.dbsize() == writers * per_writer + writers
        for index in range(writers):
            assert client.get(b"total%d" % index) == b"%d" % per_writer
            assert client.get(b"w%d-%d" % (index, per_writer - 1)) == b"%d" % (per_writer - 1)
        assert client.exists(b"old0") == 0


def test_value_stored_over_resp_with_a_newline(start_server: StartServer) -> None:
    server = start_server("serve", "kv", "--resp-port", "0", expect_listeners=2)
    with server.connect(index=1) as resp:
        resp.sendall(b"*3\r\n$3\r\nSET\r\n$5\r\nmulti\r\n$3\r\na\nb\r\n")
        assert read_lines(resp, 1) == [b"+OK\r"]
    with KvClient(*server.addresses[0]) as client:
        assert client.execute(b"GET multi") == (
            b"ERROR: value cannot be sent in the text protocol (it contains a line break); "
            b"use the RESP port")
        assert client.exists(b"multi") == 1
        client.ping()  # the stream is intact


def test_random_garbage_gets_one_reply_per_line_and_the_server_survives(kv: ServerProcess) -> None:
    rng = random.Random(1234)
    lines: list[bytes] = []
    while len(lines) < 2000:
        line = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 60))).replace(b"\n", b"")
        if not isinstance(parse_line(line), (Quit, HttpRequest)):  # those close by design
            lines.append(line)
    with connect(kv) as sock:
        buf = bytearray()
        for start in range(0, len(lines), 100):
            batch = lines[start:start + 100]
            sock.sendall(b"\n".join(batch) + b"\n")
            replies = read_lines(sock, len(batch), buf)
            assert len(replies) == len(batch)
        sock.sendall(b"PING\n")
        assert read_lines(sock, 1, buf) == [b"PONG"]
