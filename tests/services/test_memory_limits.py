"""Hostile clients against the memory limit, value inflation and rewrite
loops, on real servers (in-process, and a process whose RSS is read from
/proc from outside); error texts compared with a real redis-server.

Assertions are about replies, counts and memory bounds with wide margins,
never timings.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sockworks.protocols.resp import encode_command
from tests.conftest import ServerProcess, spawn_server
from tests.support import StartServer, recv_until, require_binary

redis = pytest.importorskip("redis")

OOM = "OOM command not allowed when used memory > 'maxmemory'."
TOO_BIG = b"-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n"
IN_PROGRESS = "Background append only file rewriting already in progress"


KvStarter = Callable[..., tuple[Any, socket.socket]]


@pytest.fixture
def kv(start_server: StartServer) -> Iterator[KvStarter]:
    """``kv(*flags)``: a server with both ports, as (redis-py client,
    text-port socket); both closed after the test."""
    opened: list[Any] = []

    def start(*extra: str) -> tuple[Any, socket.socket]:
        server = start_server("serve", "kv", "--resp-port", "0", *extra, expect_listeners=2)
        client = redis.Redis(host="127.0.0.1", port=server.addresses[1][1], socket_timeout=30)
        text = server.connect(timeout=30)
        opened.extend((client, text))
        assert recv_until(text) == b"READY\n"
        return client, text
    yield start
    for thing in opened:
        thing.close()


def text_cmd(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line + b"\n")
    return recv_until(sock)


def test_noeviction_refuses_writes_on_both_ports_and_keeps_reads(kv: KvStarter) -> None:
    r, text = kv("--maxmemory", "200kb")
    value = b"x" * 1000
    written = 0
    # redis-py turns Redis's OOM prefix into its OutOfMemoryError.
    with pytest.raises(redis.exceptions.OutOfMemoryError) as raised:
        for i in range(10_000):
            r.set(f"k{i}", value)
            written += 1
    assert "OOM " + str(raised.value) == OOM
    assert 100 < written < 400  # about 200 KiB of 1.2 KB entries
    assert text_cmd(text, b"SET other 1") == b"ERROR: out of memory\n"
    assert text_cmd(text, b"INCR n") == b"ERROR: out of memory\n"
    refusals: list[Callable[[], object]] = [
        lambda: r.append("k0", "y"), lambda: r.setrange("k0", 0, "y"),
        lambda: r.incrbyfloat("f", 1), lambda: r.mset({"a": 1})]
    for refused in refusals:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            refused()
    # Transactions: queueing at the limit is refused and discards the EXEC.
    pipe = r.pipeline(transaction=True)
    pipe.set("t", 1)
    with pytest.raises(redis.exceptions.ResponseError):  # OOM, then EXECABORT
        pipe.execute()
    assert r.get("k0") == value and r.exists("k1") == 1
    assert text_cmd(text, b"GET k0") == value + b"\n"
    assert r.expire("k1", 100) and text_cmd(text, b"EXPIRE k2 100") == b"1\n"
    assert r.delete("k3") == 1 and text_cmd(text, b"DEL k4") == b"DELETED\n"
    info = r.info("memory")
    assert info["maxmemory"] == 200 * 1024 and info["maxmemory_policy"] == "noeviction"
    assert info["maxmemory_human"] == "200.00K"
    assert 150 * 1024 < info["used_memory"] <= 200 * 1024 + 2000
    assert info["used_memory_rss"] > info["used_memory"]
    assert float(info["mem_fragmentation_ratio"]) > 1
    stats = dict(f.split(b"=", 1) for f in text_cmd(text, b"STATS").split()[1:])
    for name in (b"used_memory", b"used_memory_human", b"used_memory_rss", b"maxmemory",
                 b"maxmemory_human", b"maxmemory_policy", b"evicted_keys",
                 b"mem_fragmentation_ratio"):
        assert name in stats
    assert stats[b"maxmemory"] == b"204800" and stats[b"evicted_keys"] == b"0"
    # An operator switches to eviction at run time: writes go through again.
    # maxmemory-clients follows Redis 7's default rule: a quarter of maxmemory.
    assert r.config_get("maxmemory*") == {"maxmemory": "204800",
                                          "maxmemory-clients": "51200",
                                          "maxmemory-policy": "noeviction",
                                          "maxmemory-samples": "5"}
    assert r.config_set("maxmemory-policy", "allkeys-lru")
    for i in range(500):
        r.set(f"new{i}", value)
    info = r.info()
    assert info["evicted_keys"] > 200 and info["used_memory"] <= 200 * 1024 + 2000
    assert r.flushdb() and r.info("memory")["used_memory"] == 0


def test_eviction_bounds_rss_of_a_process_flooded_with_writes(tmp_path: Path) -> None:
    # 200 MB of SETs (256 KiB values, which the allocator returns to the OS
    # when freed) into a server limited to 16 MiB: RSS read from /proc must
    # grow by far less than what was sent (margin: 80 MB; unlimited, it
    # grows by about 200 MB).
    server = spawn_server("serve", "kv", "--resp-port", "0", "--maxmemory", "16mb",
                          "--maxmemory-policy", "allkeys-lru", "--data-dir", str(tmp_path),
                          "--fsync", "no", expect_listeners=2)
    try:
        r = redis.Redis(host="127.0.0.1", port=server.addresses[1][1], socket_timeout=30)
        r.set("warm", "x")
        before = rss_of(server)
        value = b"v" * (256 * 1024)
        pipe = r.pipeline(transaction=False)
        for i in range(800):
            pipe.set(f"k{i}", value)
            if i % 20 == 19:
                pipe.execute()
        pipe.execute()
        grown = rss_of(server) - before
        assert grown < 80 * 1024 * 1024, grown
        info = r.info()
        assert info["evicted_keys"] > 700 and info["used_memory"] <= 17 * 1024 * 1024
        keys = sorted(r.keys("*"))
        r.close()
    finally:
        server.stop()
    # The evictions are in the log: a restart has exactly the same keys.
    again = spawn_server("serve", "kv", "--resp-port", "0", "--data-dir", str(tmp_path),
                         expect_listeners=2)
    try:
        r = redis.Redis(host="127.0.0.1", port=again.addresses[1][1], socket_timeout=30)
        assert sorted(r.keys("*")) == keys
        r.close()
    finally:
        again.stop()


def rss_of(server: ServerProcess) -> int:
    with open(f"/proc/{server.proc.pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_values_cannot_be_inflated_past_max_bulk(kv: KvStarter) -> None:
    r, _ = kv("--max-bulk", "1048576")
    assert r.config_get("proto-max-bulk-len") == {"proto-max-bulk-len": "1048576"}
    for _ in range(10):  # the 300-bytes-sent attack: refused before allocating
        with pytest.raises(redis.exceptions.ResponseError, match="proto-max-bulk-len"):
            r.setrange("k", 67_000_000, "x")
    assert r.exists("k") == 0
    assert r.setrange("k", 1048575, "x") == 1048576
    with pytest.raises(redis.exceptions.ResponseError, match="proto-max-bulk-len"):
        r.append("k", "y")
    assert r.strlen("k") == 1048576


def test_bgrewriteaof_in_a_loop_starts_one_rewrite_at_a_time(kv: KvStarter, tmp_path: Path) -> None:
    r, text = kv("--data-dir", str(tmp_path), "--fsync", "no")
    pipe = r.pipeline(transaction=False)
    for i in range(100_000):
        pipe.set(f"key:{i}", "value")
    pipe.execute()
    port = r.connection_pool.connection_kwargs["port"]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(encode_command([b"BGREWRITEAOF"]) * 20)
        replies = b""
        while replies.count(b"\r\n") < 20:
            replies += sock.recv(65536)
    lines = replies.split(b"\r\n")[:20]
    assert lines[0] == b"+Background append only file rewriting started"
    assert lines.count(b"-ERR " + IN_PROGRESS.encode()) >= 1
    assert set(lines[1:]) <= {b"-ERR " + IN_PROGRESS.encode(),
                              b"+Background append only file rewriting started"}
    started = lines.count(b"+Background append only file rewriting started")
    text.sendall(b"COMPACT\n" * 20)
    with text.makefile("rb") as lines_in:
        text_lines = [lines_in.readline() for _ in range(20)]
    assert set(text_lines) <= {b"OK compaction started\n",
                               b"ERROR: " + IN_PROGRESS.encode() + b"\n"}
    deadline = time.monotonic() + 60
    while r.info("persistence")["aof_rewrite_in_progress"] and time.monotonic() < deadline:
        time.sleep(0.05)
    rewrites = r.info("persistence")["aof_rewrites"]
    assert rewrites == started + text_lines.count(b"OK compaction started\n") < 40


def test_scan_with_a_huge_count_does_bounded_work(kv: KvStarter) -> None:
    r, _ = kv()
    pipe = r.pipeline(transaction=False)
    for i in range(30_000):
        pipe.set(f"k{i}", "")
    pipe.execute()
    cursor, keys = r.scan(0, count=100_000_000)
    assert cursor != 0 and len(keys) == 10_000
    assert len(set(r.scan_iter(count=100_000_000))) == 30_000


# -- the same error texts as a real redis-server ---------------------------------------------

@pytest.fixture(scope="module")
def real_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    binary = require_binary("redis-server")
    workdir = tmp_path_factory.mktemp("redis-mem")
    path = str(workdir / "redis.sock")
    proc = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", path, "--save", "", "--appendonly", "no",
         "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(unix_socket_path=path, socket_timeout=10)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        yield client
    finally:
        proc.terminate()
        proc.wait(10)


#: Sent on one connection to both servers, after CONFIG SET maxmemory 1 with
#: one key present (so both are over the limit).
DIFFERENTIAL = [
    [b"SET", b"a", b"1"], [b"GET", b"x"], [b"INCRBYFLOAT", b"f", b"1"], [b"APPEND", b"x", b"1"],
    # The bit commands: BITFIELD is denyoom even with only GETs, BITFIELD_RO is not.
    [b"SETBIT", b"x", b"0", b"1"], [b"GETBIT", b"x", b"0"],
    [b"BITFIELD", b"x", b"SET", b"u8", b"0", b"1"], [b"BITFIELD", b"x", b"GET", b"u8", b"0"],
    [b"BITFIELD_RO", b"x", b"GET", b"u8", b"0"],
    [b"SETRANGE", b"x", b"0", b"a"], [b"MSET", b"a", b"1"], [b"SETNX", b"b", b"1"],
    [b"EXPIRE", b"x", b"100"], [b"GETDEL", b"nothing"], [b"DEL", b"nothing"],
    [b"MULTI"], [b"SET", b"a", b"1"], [b"GET", b"x"], [b"EXEC"],
    [b"CONFIG", b"SET", b"maxmemory", b"10x"], [b"CONFIG", b"SET", b"maxmemory", b"-1"],
    [b"CONFIG", b"SET", b"maxmemory-policy", b"foo"],
    [b"CONFIG", b"SET", b"maxmemory", b"0"],
    [b"MULTI"], [b"SET", b"a", b"1"], [b"CONFIG", b"SET", b"maxmemory", b"1"],
    [b"CONFIG", b"SET", b"maxmemory", b"0"], [b"DISCARD"],
    [b"CONFIG", b"SET", b"proto-max-bulk-len", b"1048576"],
    [b"SETRANGE", b"k", b"1048576", b"x"], [b"SETRANGE", b"k", b"1048575", b"x"],
    [b"SETRANGE", b"a", b"1048576", b""], [b"APPEND", b"k", b"y"],
    [b"SETRANGE", b"k", b"9223372036854775807", b"x"],
    # Bit offsets hit the same bound (proto-max-bulk-len, 1 MiB here) as SETRANGE.
    [b"SETBIT", b"k", b"8388608", b"1"], [b"SETBIT", b"k", b"8388607", b"1"],
    [b"GETBIT", b"k", b"8388608"], [b"BITFIELD", b"k", b"GET", b"u8", b"8388608"],
    [b"BITFIELD", b"k", b"SET", b"u8", b"8388600", b"255", b"GET", b"u1", b"#8388607"],
    [b"BITFIELD", b"k", b"SET", b"u8", b"8388601", b"1"],
    [b"BITFIELD_RO", b"k", b"GET", b"i8", b"#1048576"],
    [b"BITFIELD", b"fresh", b"INCRBY", b"i64", b"#1048575", b"1"], [b"STRLEN", b"k"],
    [b"CONFIG", b"GET", b"maxmemory"], [b"CONFIG", b"GET", b"maxmemory-policy"],
    [b"CONFIG", b"GET", b"maxmemory-samples"], [b"CONFIG", b"GET", b"proto-max-bulk-len"],
    [b"FLUSHALL"],
]


def replies_of(sock: socket.socket, commands: list[list[bytes]]) -> list[bytes]:
    out = []
    buffered = b""
    for command in commands:
        sock.sendall(encode_command(command))
        while True:
            end = _reply_end(buffered)
            if end is not None:
                out.append(buffered[:end])
                buffered = buffered[end:]
                break
            buffered += sock.recv(65536)
    return out


def _reply_end(data: bytes) -> int | None:
    """Length of the first complete reply in data (simple types, bulks and
    flat arrays are all these commands answer), or None."""
    line_end = data.find(b"\r\n")
    if line_end < 0:
        return None
    kind = data[:1]
    if kind in (b"+", b"-", b":"):
        return line_end + 2
    if kind == b"$":
        size = int(data[1:line_end])
        total = line_end + 2 + (size + 2 if size >= 0 else 0)
        return total if len(data) >= total else None
    count = int(data[1:line_end])
    pos = line_end + 2
    for _ in range(max(count, 0)):
        inner = _reply_end(data[pos:])
        if inner is None:
            return None
        pos += inner
    return pos


@pytest.mark.redis
def test_same_memory_errors_as_real_redis(kv: KvStarter, real_redis: Any) -> None:
    r, _ = kv("--max-bulk", "1048576")
    port = r.connection_pool.connection_kwargs["port"]
    real_path = real_redis.connection_pool.connection_kwargs["path"]
    setup = [[b"FLUSHALL"], [b"CONFIG", b"SET", b"proto-max-bulk-len", b"536870912"],
             [b"SET", b"x", b"1"], [b"CONFIG", b"SET", b"maxmemory", b"1"]]
    with socket.socket(socket.AF_UNIX) as theirs, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as ours:
        theirs.settimeout(10)
        theirs.connect(real_path)
        replies_of(theirs, setup)
        # Ours has no CONFIG SET proto-max-bulk-len: it is --max-bulk.
        replies_of(ours, [c for c in setup if b"proto-max-bulk-len" not in c])
        expected = replies_of(theirs, DIFFERENTIAL)
        commands = [c for c in DIFFERENTIAL if b"proto-max-bulk-len" not in c or c[1] == b"GET"]
        got = replies_of(ours, commands)
    expected = [reply for command, reply in zip(DIFFERENTIAL, expected, strict=True)
                if b"proto-max-bulk-len" not in command or command[1] == b"GET"]
    # proto-max-bulk-len itself differs (set by --max-bulk here); skip its value.
    pairs = list(zip(commands, expected, got, strict=True))
    for command, theirs_reply, ours_reply in pairs:
        if command[:2] == [b"CONFIG", b"GET"] and command[2] == b"proto-max-bulk-len":
            continue
        assert ours_reply == theirs_reply, (command, theirs_reply, ours_reply)
