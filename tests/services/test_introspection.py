"""Introspection on the RESP port: COMMAND, MEMORY, CLIENT HELP, INFO's
memory/keyspace/stats/commandstats, and the redis-cli modes that read them.

Differential parts send the same commands to a real redis-server and to a
RespSession on the embedded store and compare the bytes (RESP2 and RESP3)
where the behaviour is Redis's to the byte; where sockworks' figures are its
own (MEMORY USAGE sizes, COMMAND INFO's key specs) the reply types are
compared and the figures checked against the store's accounting. The
redis-cli tests run the real ``--stat``, ``--bigkeys`` and ``--memkeys``
against a real server process loaded with known keys of every type.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import hiredis
import pytest

from sockworks.core.command_stats import OpsRate
from sockworks.core.stats import ServerStats
from sockworks.protocols.resp import encode_command
from sockworks.services.resp import RespService, RespSession
from sockworks.storage.eviction import ENTRY_OVERHEAD, EXPIRY_OVERHEAD
from sockworks.storage.memory import MemoryStore
from sockworks.storage.model.values import LIST_ELEMENT_OVERHEAD
from tests.conftest import ServerProcess, spawn_server
from tests.redis_support import (  # noqa: F401 (fixtures)
    RedisServer,
    redis_call,
    redis_pipeline,
    redis_server_fixture,
    shared_redis_server_fixture,
)
from tests.services.session_pair import SessionPair
from tests.support import require_binary

redis = pytest.importorskip("redis")


def parse(raw: bytes) -> Any:
    reader = hiredis.Reader()
    reader.feed(raw)
    return reader.gets()


class Pair(SessionPair):
    """The same command to both, compared byte for byte."""

    def __init__(self, port: int, proto: int) -> None:
        super().__init__(port, proto)
        self.both(b"FLUSHALL")
        if proto == 3:
            self.both(b"HELLO", b"3")

    def both(self, *argv: bytes) -> tuple[bytes, bytes]:
        return self.redis(list(argv)), self.ours(list(argv))

    def same(self, *argv: bytes) -> bytes:
        expected, got = self.both(*argv)
        assert got == expected, (argv, expected, got)
        return got

    def pipeline(self, commands: list[list[bytes]], replies: int) -> bytes:
        """Send commands in one go to both; the same bytes come back."""
        expected = redis_pipeline(self.sock, commands, replies)
        got = self.session.on_data(b"".join(encode_command(argv) for argv in commands)).data
        assert got == expected, (commands, expected, got)
        return got


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def pair(request: pytest.FixtureRequest, shared_redis_server: RedisServer) -> Iterator[Pair]:
    p = Pair(shared_redis_server.port, request.param)
    yield p
    p.close()


# -- differential: errors and reply shapes -------------------------------------------

ERRORS = [
    # MEMORY: arity, subcommands, SAMPLES parsing.
    [b"MEMORY"], [b"MEMORY", b"USAGE"], [b"MEMORY", b"FOO"], [b"MEMORY", b"HELP", b"x"],
    [b"MEMORY", b"USAGE", b"k", b"SAMPLES"], [b"MEMORY", b"USAGE", b"k", b"SAMPLES", b"x"],
    [b"MEMORY", b"USAGE", b"k", b"SAMPLES", b"-1"], [b"MEMORY", b"USAGE", b"k", b"FOO"],
    [b"MEMORY", b"USAGE", b"k", b"a", b"b", b"c"],
    # COMMAND: subcommand arities and GETKEYS' refusals.
    [b"COMMAND", b"FOO"], [b"COMMAND", b"COUNT", b"x"], [b"COMMAND", b"HELP", b"x"],
    [b"COMMAND", b"GETKEYS"], [b"COMMAND", b"GETKEYS", b"get"],
    [b"COMMAND", b"GETKEYS", b"nosuch", b"a"], [b"COMMAND", b"GETKEYS", b"set", b"a"],
    [b"COMMAND", b"GETKEYS", b"dbsize", b"x"], [b"COMMAND", b"GETKEYS", b"ping", b"x"],
    [b"COMMAND", b"GETKEYS", b"zunionstore", b"d", b"5", b"a"],
    [b"COMMAND", b"GETKEYS", b"zunionstore", b"d", b"0", b"a"],
    [b"COMMAND", b"GETKEYS", b"lmpop", b"x", b"a", b"LEFT"],
    [b"COMMAND", b"LIST", b"FILTERBY"], [b"COMMAND", b"LIST", b"FILTERBY", b"pattern"],
    [b"COMMAND", b"LIST", b"FILTERBY", b"foo", b"x"], [b"COMMAND", b"LIST", b"foo"],
    # CLIENT HELP (our own unknown-subcommand error recommends it).
    [b"CLIENT"], [b"CLIENT", b"FOO"], [b"CLIENT", b"HELP", b"x"],
    # CLIENT KILL filters' refusals (the unit's "CLIENT KILL with illegal arguments").
    [b"CLIENT", b"KILL", b"TYPE", b"wrong_type"], [b"CLIENT", b"KILL", b"USER", b"wrong_user"],
    [b"CLIENT", b"KILL", b"SKIPME", b"yes_or_no"], [b"CLIENT", b"KILL", b"ID", b"str"],
    [b"CLIENT", b"KILL", b"ID", b"10", b"wrong_arg"], [b"CLIENT", b"KILL", b"ID", b"0"],
    [b"CLIENT", b"LIST", b"ID", b"nosuch"], [b"CLIENT", b"LIST", b"ID", b"1", b"x"],
    [b"CLIENT", b"LIST", b"TYPE", b"foo"], [b"CLIENT", b"LIST", b"TYPE"],
    [b"CLIENT", b"LIST", b"foo"], [b"CLIENT", b"NO-EVICT"], [b"CLIENT", b"NO-EVICT", b"maybe"],
    [b"CLIENT", b"NO-EVICT", b"on", b"x"],
    # CONFIG SET: duplicates (any case), Redis's immutable and protected ones.
    [b"CONFIG", b"SET", b"maxmemory", b"1", b"maxmemory", b"2"],
    [b"CONFIG", b"SET", b"maxmemory", b"1", b"MAXMEMORY", b"2"],
    [b"CONFIG", b"SET", b"daemonize", b"yes"], [b"CONFIG", b"SET", b"daemonize", b"no"],
    [b"CONFIG", b"SET", b"databases", b"1"], [b"CONFIG", b"SET", b"dir", b"/tmp"],
]


@pytest.mark.parametrize("argv", ERRORS, ids=lambda a: " ".join(x.decode() for x in a))
def test_error_texts_are_redis_own(pair: Pair, argv: list[bytes]) -> None:
    reply = pair.same(*argv)
    assert reply.startswith(b"-")


GETKEYS = [
    [b"get", b"a"], [b"mget", b"a", b"b", b"c"], [b"mset", b"a", b"1", b"b", b"2"],
    [b"zunionstore", b"d", b"2", b"a", b"b", b"WEIGHTS", b"1", b"2"],
    [b"zinter", b"2", b"a", b"b"], [b"sintercard", b"2", b"a", b"b", b"LIMIT", b"1"],
    [b"lmpop", b"2", b"a", b"b", b"LEFT"], [b"zmpop", b"1", b"a", b"MIN"],
    [b"sort", b"k", b"BY", b"w_*", b"LIMIT", b"0", b"1", b"GET", b"#", b"STORE", b"d"],
    [b"sort_ro", b"k"], [b"sort", b"abc", b"store", b"invalid", b"store", b"stillbad",
                         b"store", b"def"], [b"sort", b"abc", b"store", b"store", b"x"], [b"lmove", b"a", b"b", b"LEFT", b"RIGHT"], [b"bitop", b"AND", b"d",
                                                                    b"a", b"b"],
    [b"memory", b"usage", b"k"], [b"object", b"encoding", b"k"],
    [b"blmpop", b"0", b"2", b"a", b"b", b"LEFT"], [b"bzmpop", b"1", b"1", b"z", b"MIN"],
    [b"blpop", b"a", b"b", b"0"], [b"blmove", b"a", b"b", b"LEFT", b"RIGHT", b"0"],
    [b"eval", b"return 1", b"2", b"a", b"b", b"x"], [b"evalsha_ro", b"f" * 40, b"1", b"k"],
]


@pytest.mark.parametrize("argv", GETKEYS, ids=lambda a: a[0].decode())
def test_command_getkeys(pair: Pair, argv: list[bytes]) -> None:
    pair.same(b"COMMAND", b"GETKEYS", *argv)


@pytest.mark.parametrize("name", [b"get", b"set", b"mset", b"del", b"hset", b"lpush",
                                  b"zadd", b"sadd", b"incr", b"ping", b"setbit"])
def test_command_info_matches_redis(pair: Pair, name: bytes) -> None:
    """Name, arity, flags, key positions and ACL categories are Redis's,
    with its types (sets in RESP3); tips, key specs and subcommands are not
    described here (docs/resp.md), so only their type is compared."""
    expected, got = pair.both(b"COMMAND", b"INFO", name)
    theirs, ours = parse(expected)[0], parse(got)[0]
    assert ours[:7] == theirs[:7]
    assert [type(x) for x in ours] == [type(x) for x in theirs]
    # The same bytes up to the categories: RESP3's set markers included.
    end = got.index(b"+@")
    assert got[:end] == expected[:end]


def test_command_info_unknown_and_count(pair: Pair) -> None:
    pair.same(b"COMMAND", b"INFO", b"nosuch")
    pair.same(b"COMMAND", b"DOCS", b"nosuch")
    theirs, ours = pair.both(b"COMMAND", b"COUNT")
    assert theirs[:1] == ours[:1] == b":"
    count = int(ours[1:-2])
    listed = parse(pair.ours([b"COMMAND", b"LIST"]))
    assert count == len(listed) == len(parse(pair.ours([b"COMMAND"])))
    assert len(set(listed)) == count


def test_command_list_filterby(pair: Pair) -> None:
    for argv in ([b"ACLCAT", b"hash"], [b"ACLCAT", b"nosuch"], [b"PATTERN", b"hs*"],
                 [b"PATTERN", b"Z*STORE"], [b"MODULE", b"x"]):
        theirs, ours = pair.both(b"COMMAND", b"LIST", b"FILTERBY", *argv)
        assert theirs[:1] == ours[:1]
        assert sorted(parse(ours)) == sorted(parse(theirs)), argv
    # Every sorted-set command Redis 7.0 has, the blocking ones included.
    theirs, ours = pair.both(b"COMMAND", b"LIST", b"FILTERBY", b"ACLCAT", b"sortedset")
    assert set(parse(ours)) == set(parse(theirs)) and b"bzmpop" in parse(ours)


def _client_fields(reply: bytes) -> dict[str, str]:
    line = parse(reply)
    text = line.decode() if isinstance(line, bytes) else str(line)
    return dict(field.split("=", 1) for field in text.split())


def test_client_info_fields_match_redis(pair: Pair) -> None:
    """Redis 7.0's CLIENT INFO fields in its order (Redis 7.2's lib-name and
    lib-ver after them), and the same values where they are this
    connection's state: qbuf= holds the running command (26 bytes here)."""
    for kind in (b"master", b"replica", b"slave"):
        pair.same(b"CLIENT", b"LIST", b"TYPE", kind)  # nobody of these types
    pair.same(b"CLIENT", b"LIST", b"ID", b"99999")
    theirs, ours = (_client_fields(raw) for raw in pair.both(b"CLIENT", b"INFO"))
    assert list(ours)[:len(theirs)] == list(theirs)
    for name in ("flags", "db", "sub", "psub", "ssub", "multi", "qbuf", "multi-mem", "obl",
                 "oll", "omem", "events", "cmd", "user", "redir", "resp"):
        assert ours[name] == theirs[name], (name, theirs, ours)
    assert theirs["qbuf"] == "26"


def _info(reply: bytes) -> dict[str, list[str]]:
    """INFO's sections: title -> field names, in order."""
    sections: dict[str, list[str]] = {}
    raw = parse(reply)
    for line in (raw.decode() if isinstance(raw, bytes) else str(raw)).splitlines():
        if line.startswith("# "):
            fields = sections.setdefault(line[2:], [])
        elif line:
            fields.append(line.split(":", 1)[0])
    return sections


def test_info_sections_follow_redis(pair: Pair) -> None:
    """The sections this server has come in Redis's order; INFO cpu and
    replication have Redis's fields, but for those it does not keep (the
    main thread's CPU, replication ids and backlog)."""
    for argv in ([b"INFO", b"everything"], [b"INFO"], [b"INFO", b"cpu", b"sentinel"],
                 [b"INFO", b"cpu", b"default"], [b"INFO", b"replication"]):
        theirs, ours = (_info(raw) for raw in pair.both(*argv))
        assert [t for t in theirs if t in ours] == list(ours), argv
        if "CPU" in theirs:
            assert ours["CPU"] == [f for f in theirs["CPU"] if "main_thread" not in f]
        if "Replication" in theirs:
            assert set(ours["Replication"]) <= set(theirs["Replication"])
            assert "master_repl_offset" in ours["Replication"]


def test_client_flags_match_redis(pair: Pair) -> None:
    """CLIENT INFO's flags in Redis's letters and order: x in MULTI, e with
    NO-EVICT (which RESET keeps), N for none."""
    for argv in ([b"CLIENT", b"INFO"], [b"CLIENT", b"NO-EVICT", b"on"], [b"CLIENT", b"INFO"],
                 [b"MULTI"], [b"CLIENT", b"INFO"], [b"EXEC"], [b"RESET"],
                 [b"CLIENT", b"INFO"], [b"CLIENT", b"NO-EVICT", b"off"], [b"CLIENT", b"INFO"]):
        theirs, ours = pair.both(*argv)
        if ours[:1] in (b"+", b"-"):  # OK, QUEUED, RESET, errors
            assert ours == theirs, argv
        elif argv == [b"EXEC"]:
            shown = [_client_fields(b"$%d\r\n%s\r\n" % (len(r), r))["flags"]
                     for r in (parse(theirs)[0], parse(ours)[0])]
            assert shown[0] == shown[1] == "xe"
        else:
            assert _client_fields(ours)["flags"] == _client_fields(theirs)["flags"], argv


def test_config_set_matches_redis(pair: Pair) -> None:
    pair.same(b"CONFIG", b"GET", b"daemonize")
    for kind in (b"master", b"replica", b"slave"):
        pair.same(b"CLIENT", b"KILL", b"TYPE", kind)  # none here, none there
    # A parameter this server cannot change takes its current value (no-op),
    # as Redis's CONFIG SET does; Redis's own immutable ones never.
    values = parse(pair.ours([b"CONFIG", b"GET", b"*"]))
    if isinstance(values, list):
        values = dict(zip(values[::2], values[1::2], strict=True))
    refused = {name for name, value in values.items()
               if pair.ours([b"CONFIG", b"SET", name, value]) != b"+OK\r\n"}
    assert refused == {b"databases", b"cluster-enabled", b"aclfile", b"unixsocket",
                       b"unixsocketperm", b"daemonize", b"dir"}
    assert pair.ours([b"CONFIG", b"SET", b"port", b"1"]).startswith(
        b"-ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable")


REPLY = b"CLIENT", b"REPLY"


@pytest.mark.parametrize(("commands", "replies"), [
    # ON ends a SKIP: its own OK is sent (the unit's "unset SKIP flag").
    ([[*REPLY, b"SKIP"], [*REPLY, b"ON"], [b"PING", b"a"]], 2),
    ([[*REPLY, b"SKIP"], [b"PING", b"a"], [b"PING", b"b"]], 1),
    # SKIP under OFF changes nothing; ON answers OK and replies resume.
    ([[*REPLY, b"OFF"], [*REPLY, b"SKIP"], [b"PING", b"a"], [*REPLY, b"ON"],
      [b"PING", b"b"]], 2),
    ([[*REPLY, b"OFF"], [*REPLY, b"SKIP"], [*REPLY, b"ON"], [b"PING", b"b"]], 2),
    ([[*REPLY, b"SKIP"], [*REPLY, b"SKIP"], [b"PING", b"a"], [b"PING", b"b"]], 1),
], ids=["skip-on", "skip", "off-skip-on", "off-skip-on-at-once", "skip-skip"])
def test_client_reply_modes(pair: Pair, commands: list[list[bytes]], replies: int) -> None:
    pair.pipeline(commands, replies)
    pair.same(b"PING")  # and the connection is back to normal


def test_memory_usage_shapes(pair: Pair) -> None:
    pair.same(b"MEMORY", b"USAGE", b"nosuch")  # a null of the protocol's kind
    pair.same(b"RPUSH", b"l", b"a", b"b")
    theirs, ours = pair.both(b"MEMORY", b"USAGE", b"l", b"SAMPLES", b"0")
    assert theirs[:1] == ours[:1] == b":"
    for sub in (b"MEMORY", b"CLIENT", b"COMMAND"):
        theirs, ours = pair.both(sub, b"HELP")
        assert parse(ours)[0] == parse(theirs)[0]  # the header line
        assert parse(ours)[-2:] == parse(theirs)[-2:] == [b"HELP", b"    Prints this help."]
        assert ours[:1] == theirs[:1] and b"\r\n+" in ours  # status lines


def test_commandstats_match_redis(redis_server: RedisServer) -> None:
    """The same commands to a fresh redis-server and to a fresh session:
    calls, rejected_calls (refused before running: arity) and failed_calls
    (ran, answered an error: WRONGTYPE) agree; usec is each side's own."""
    pair = Pair(redis_server.port, 2)
    try:
        for argv in ([b"SET", b"a", b"1"], [b"SET", b"a", b"2", b"EX", b"100"],
                     [b"GET", b"a"], [b"GET", b"nope"], [b"GET"], [b"GET", b"a", b"b"],
                     [b"HSET", b"a", b"f", b"v"], [b"LPUSH", b"l", b"x"], [b"LLEN", b"l"],
                     [b"INCR", b"l"]):
            pair.both(*argv)

        def figures(raw: bytes) -> dict[str, dict[str, str]]:
            text = parse(raw).decode()
            rows = dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)
            return {name: dict(f.split("=") for f in value.split(","))
                    for name, value in rows.items()}

        theirs, ours = (figures(raw) for raw in pair.both(b"INFO", b"commandstats"))
        for name in ("cmdstat_set", "cmdstat_get", "cmdstat_hset", "cmdstat_lpush",
                     "cmdstat_llen", "cmdstat_incr"):
            for field in ("calls", "rejected_calls", "failed_calls"):
                assert ours[name][field] == theirs[name][field], (name, field)
            assert float(ours[name]["usec_per_call"]) >= 0
        assert ours["cmdstat_get"]["rejected_calls"] == "2"
        assert ours["cmdstat_hset"]["failed_calls"] == "1"
        # The keyspace line agrees too (avg_ttl: the key's time left).
        keyspace = [parse(raw).decode().split("\r\n")[1] for raw in pair.both(b"INFO",
                                                                             b"keyspace")]
        assert keyspace[0].split(",avg_ttl=")[0] == keyspace[1].split(",avg_ttl=")[0]
        assert 90_000 < int(keyspace[1].split("avg_ttl=")[1]) <= 100_000
        # commandstats is not a default section, as in Redis.
        assert b"cmdstat_" not in pair.ours([b"INFO"])
        assert b"cmdstat_get" in pair.ours([b"INFO", b"all"])
    finally:
        pair.close()


# -- MEMORY USAGE is the store's own accounting ----------------------------------------------

def run(session: RespSession, *argv: bytes) -> Any:
    return parse(session.on_data(encode_command(list(argv))).data)


def test_memory_usage_adds_up_to_used_memory() -> None:
    service = RespService(MemoryStore(), ServerStats(), owns_store=True)
    session = service.new_session("127.0.0.1:1")
    try:
        run(session, b"SET", b"s", b"hello")
        run(session, b"SET", b"t", b"x" * 100, b"EX", b"100")
        run(session, b"RPUSH", b"l", b"a", b"bb", b"ccc")
        run(session, b"HSET", b"h", b"f", b"v", b"g", b"w")
        run(session, b"SADD", b"st", b"1", b"2", b"3")
        run(session, b"ZADD", b"z", b"1", b"a", b"2", b"b")
        assert run(session, b"MEMORY", b"USAGE", b"s") == 1 + 5 + ENTRY_OVERHEAD
        assert run(session, b"MEMORY", b"USAGE", b"t") == 1 + 100 + ENTRY_OVERHEAD + EXPIRY_OVERHEAD
        assert run(session, b"MEMORY", b"USAGE", b"l", b"SAMPLES", b"0") == (
            1 + 6 + 3 * LIST_ELEMENT_OVERHEAD + ENTRY_OVERHEAD)
        keys = run(session, b"KEYS", b"*")
        total = sum(run(session, b"MEMORY", b"USAGE", key) for key in keys)
        info = run(session, b"INFO", b"memory").decode()
        assert f"used_memory:{total}\r\n" in info
        assert run(session, b"MEMORY", b"USAGE", b"missing") is None
    finally:
        session.on_close()
        service.close()


def test_ops_rate() -> None:
    rate = OpsRate(now=0.0)
    total = 0
    for step in range(1, 25):  # 3 s at 1250 commands per 125 ms (exact floats)
        total += 1250
        rate.observe(step * 0.125, total)
    assert rate.rate(3.0, total) == 10_000
    # Idle: the rate falls as the window empties, to nothing.
    assert 4_900 < rate.rate(3.8, total) < 5_500
    assert rate.rate(10.0, total) == 0


# -- real redis-cli against a real server --------------------------------------------------------

@pytest.fixture(scope="module")
def loaded() -> Iterator[tuple[ServerProcess, int]]:
    """A server holding one or two keys of each type, of known sizes."""
    proc = spawn_server("serve", "kv", "--resp-port", "0", expect_listeners=2)
    port = proc.addresses[1][1]
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    try:
        client.rpush("biglist", *[f"item{i}" for i in range(7)])
        client.rpush("smalllist", "a", "b", "c")
        client.hset("hash", mapping={f"f{i}": "v" for i in range(4)})
        client.set("string", "x" * 10)
        client.set("short", "y")
        client.sadd("set", *range(5))
        client.zadd("zset", {f"m{i}": i for i in range(6)})
    finally:
        client.close()
    yield proc, port
    proc.stop()


def cli_run(port: int, *args: str) -> str:
    cli = require_binary("redis-cli")
    done = subprocess.run([cli, "-p", str(port), *args], capture_output=True, timeout=30,
                          check=True)
    return done.stdout.decode()


def test_redis_cli_bigkeys(loaded: tuple[ServerProcess, int]) -> None:
    out = cli_run(loaded[1], "--bigkeys")
    assert "Sampled 7 keys in the keyspace!" in out
    for line in ("Biggest   list found '\"biglist\"' has 7 items",
                 "Biggest   hash found '\"hash\"' has 4 fields",
                 "Biggest string found '\"string\"' has 10 bytes",
                 "Biggest    set found '\"set\"' has 5 members",
                 "Biggest   zset found '\"zset\"' has 6 members",
                 "2 lists with 10 items (28.57% of keys, avg size 5.00)",
                 "2 strings with 11 bytes (28.57% of keys, avg size 5.50)"):
        assert line in out, (line, out)


def test_redis_cli_memkeys(loaded: tuple[ServerProcess, int]) -> None:
    port = loaded[1]
    out = cli_run(port, "--memkeys")
    assert "Sampled 7 keys in the keyspace!" in out
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    try:
        sizes = {name: client.memory_usage(name) for name in
                 ("biglist", "smalllist", "hash", "string", "short", "set", "zset")}
    finally:
        client.close()
    biglist = len("biglist") + sum(len(f"item{i}") + LIST_ELEMENT_OVERHEAD
                                   for i in range(7)) + ENTRY_OVERHEAD
    assert sizes["biglist"] == biglist
    assert f"Biggest   list found '\"biglist\"' has {biglist} bytes" in out, out
    assert f"Biggest string found '\"string\"' has {sizes['string']} bytes" in out, out
    lists = sizes["biglist"] + sizes["smalllist"]
    assert f"2 lists with {lists} bytes (28.57% of keys, avg size {lists / 2:.2f})" in out, out
    assert " with 0 bytes" not in out.replace("0 streams with 0 bytes", "")


def bytes_to_human(n: int) -> str:
    """redis-cli's bytesToHuman (what its --stat prints)."""
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n}B"


def test_redis_cli_stat(loaded: tuple[ServerProcess, int]) -> None:
    """--stat's columns: keys, mem (INFO's used_memory), clients, requests
    and connections, read from a pty (redis-cli buffers a pipe) for three
    lines, then stopped."""
    port = loaded[1]
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    try:
        used = int(client.info("memory")["used_memory"])
    finally:
        client.close()
    cli = require_binary("redis-cli")
    master, slave = pty.openpty()
    proc = subprocess.Popen([cli, "-p", str(port), "--stat", "-i", "0.1"],
                            stdout=slave, stderr=slave, env=dict(os.environ, TERM="dumb"))
    os.close(slave)
    output = b""
    rows: list[list[str]] = []
    try:
        deadline = time.monotonic() + 15
        while len(rows) < 3:
            remaining = deadline - time.monotonic()
            assert remaining > 0, output
            ready, _, _ = select.select([master], [], [], remaining)
            if ready:
                output += os.read(master, 4096)
                rows = [line.split() for line in output.decode().splitlines()
                        if re.match(r"\d+ ", line)]
    finally:
        proc.kill()
        proc.wait(10)
        os.close(master)
    for keys, mem, clients, blocked, requests, *_ in rows:
        assert keys == "7"
        assert mem == bytes_to_human(used)
        assert int(clients) >= 1 and blocked == "0"
        assert int(requests) > 0
    # Each line's INFO is one more command than the line before.
    assert [row[5] for row in rows[1:]] == ["(+1)", "(+1)"]


def test_redis_backend_passes_memory_figures_through(redis_server: RedisServer) -> None:
    """With --store redis://, MEMORY USAGE is Redis's own answer and INFO
    memory/stats carry Redis's used_memory and counters (so --stat's memory
    column is the dataset's, not empty)."""
    proc = spawn_server("serve", "kv", "--resp-port", "0", "--store", redis_server.url,
                        expect_listeners=2)
    direct = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=10)
    ours = redis.Redis(host="127.0.0.1", port=proc.addresses[1][1], socket_timeout=10)
    try:
        ours.rpush("l", "a", "b")
        assert ours.memory_usage("l") == direct.memory_usage("l") > 0
        assert ours.memory_usage("l", samples=0) == direct.memory_usage("l", samples=0)
        assert ours.memory_usage("nope") is None
        memory = ours.info("memory")
        assert memory["used_memory"] > 0 and memory["maxmemory"] == 0
        ours.get("l-missing")
        assert ours.info("stats")["keyspace_misses"] == direct.info("stats")["keyspace_misses"]
    finally:
        ours.close()
        direct.close()
        proc.stop()
