"""INFO errorstats, total_error_replies and commandstats' failed/rejected
calls against a real redis-server; CONFIG RESETSTAT; min-replicas-to-write.

Differential: each scenario starts with CONFIG RESETSTAT on both sides, sends
the same commands (replies compared byte for byte, RESP2 and RESP3), then
compares the whole ``# Errorstats`` section, ``total_error_replies`` and the
``calls``/``rejected_calls``/``failed_calls`` of the commands involved (never
``usec``: a time). The scenarios are Redis's own (unit/scripting's
"Consistent eval error reporting") plus errors from the GET/SET fast path,
inside EXEC, and before a command runs. Then what Redis 7.0.15 does not
have: the bound on distinct error codes; and redis-py reading the section
from a real server.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from sockworks.core.error_stats import DISABLED, MAX_ERROR_CODES, ErrorStats, error_code
from tests.conftest import ServerProcess, spawn_server
from tests.redis_support import (  # noqa: F401 (fixtures)
    RedisServer,
    shared_redis_server_fixture,
)
from tests.services.test_scripting import DEADLINE, Ours, ask, raw_reply, resp_port
from tests.support import require_lua

redis = pytest.importorskip("redis")

require_lua()

#: The commands whose commandstats are compared (CONFIG is left out: Redis
#: counts it by subcommand, config|set, and this server does not).
COUNTED = (b"get", b"set", b"incr", b"lpush", b"select", b"eval", b"eval_ro", b"evalsha",
           b"exec", b"multi", b"ping", b"hset", b"blpop")

#: Scenarios: "|"-separated commands, run after CONFIG RESETSTAT.
SCENARIOS = {
    "command errors": [
        "SET s v", "LPUSH s x", "INCR s", "GET s", "LPUSH l a", "GET l", "GET l",
        "NOSUCHCOMMAND x", "GET", "SET x", "PING a b", "HSET h f",
    ],
    "errors inside exec": [
        "SET s v", "MULTI", "LPUSH s x", "INCR s", "GET s", "EXEC",
        "MULTI", "NOSUCHCOMMAND", "SET s", "EXEC", "EXEC",
    ],
    "script errors": [
        "EVAL|return redis.call('select',99)|0",
        "EVAL|local t = redis.pcall('select',99) return t['err']|0",
        "EVAL|return redis.pcall('select',99)|0",
        "EVAL|return redis.error_reply('MY_ERR_CODE custom msg')|0",
        "EVAL|return redis.error_reply('')|0",
        "EVAL|error(redis.error_reply('X\r\n+INJECTED'))|0",
        "EVAL|return redis.status_reply('MY_OK_CODE custom msg')|0",
        "EVAL|return foo|0",
        "EVAL|local status, res = pcall(function() return foo end) return res|0",
        "EVAL|return redis.call('ping', {})|0",
        "EVAL|return redis.call('nosuchcommand')|0",
        "EVAL|return redis.call('get')|0",
        "EVAL_RO|return redis.call('set','x','y')|1|x",
        "EVAL_RO|local t = redis.pcall('set','x','y') return t['err']|1|x",
        "SET s v",
        "EVAL|return redis.call('lpush','s','x')|1|s",
        "EVAL|return {1, redis.pcall('incr','s')}|1|s",
        "EVALSHA|0000000000000000000000000000000000000000|0",
        "EVAL|return 1|x",
        "EVAL|syntax error here|0",
    ],
    "scripts over maxmemory": [
        "CONFIG|SET|maxmemory|1",
        "EVAL|return redis.call('set','x','y')|1|x",
        "EVAL|local t = redis.pcall('set','x','y') return t['err']|1|x",
        "EVAL|return redis.pcall('set','x','y')|1|x",
        "EVAL|return redis.call('get','x')|1|x",
        "EVAL|#!lua\nreturn 1|0",
        "EVAL|#!lua flags=no-writes\nreturn redis.call('get','x')|1|x",
        "SET|x|y",
        "CONFIG|SET|maxmemory|0",
    ],
    "min-replicas-to-write": [
        "SET|x|v",
        "CONFIG|SET|min-replicas-to-write|1",
        "CONFIG|GET|min-replicas-to-write", "CONFIG|GET|min-slaves-to-write",
        "SET|x|w", "GET|x", "INCR|n",
        "EVAL|#!lua flags=no-writes\nreturn redis.call('get','x')|1|x",
        "EVAL|return redis.call('get','x')|1|x",
        "EVAL|#!lua\nreturn redis.call('get','x')|1|x",
        "EVAL|return redis.call('set','x', 1)|1|x",
        "EVAL|local t = redis.pcall('set','x', 1) return t['err']|1|x",
        "MULTI", "SET|x|1", "GET|x", "EXEC",
        "CONFIG|SET|min-replicas-max-lag|0", "SET|x|w",
        "CONFIG|SET|min-replicas-max-lag|10", "SET|x|w",
        "CONFIG|SET|min-replicas-to-write|0", "SET|x|w",
        "CONFIG|SET|min-replicas-to-write|-1", "CONFIG|SET|min-slaves-max-lag|x",
        "CONFIG|GET|min-replicas-max-lag",
    ],
}
#: What puts the servers back as they were, whatever a scenario left.
RESTORE = ([b"CONFIG", b"SET", b"maxmemory", b"0"],
           [b"CONFIG", b"SET", b"min-replicas-to-write", b"0"],
           [b"CONFIG", b"SET", b"min-replicas-max-lag", b"10"], [b"FLUSHALL"])


def argv_of(line: str) -> list[bytes]:
    return [part.encode() for part in (line.split("|") if "|" in line else line.split(" "))]


def info_fields(raw: bytes) -> dict[bytes, bytes]:
    """INFO's ``key:value`` lines (a bulk string in RESP2, verbatim in RESP3)."""
    body = raw.split(b"\r\n", 1)[1]
    if body.startswith(b"txt:"):
        body = body[4:]
    fields = {}
    for line in body.split(b"\r\n"):
        key, colon, value = line.partition(b":")
        if colon and not key.startswith(b"#"):
            fields[key] = value
    return fields


def figures(raw_errorstats: bytes, raw_stats: bytes,
            raw_commandstats: bytes) -> dict[bytes, object]:
    """What is compared: every errorstat line, the error total, and the
    counts (not the times) of the COUNTED commands."""
    found: dict[bytes, object] = dict(info_fields(raw_errorstats))
    found[b"total_error_replies"] = info_fields(raw_stats)[b"total_error_replies"]
    for key, value in info_fields(raw_commandstats).items():
        name = key.removeprefix(b"cmdstat_")
        if name in COUNTED:
            parts = dict(part.split(b"=") for part in value.split(b","))
            found[key] = (parts[b"calls"], parts[b"rejected_calls"], parts[b"failed_calls"])
    return found


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def sides(request: pytest.FixtureRequest,
          shared_redis_server: RedisServer) -> Iterator[tuple[socket.socket, Ours]]:
    sock = socket.create_connection(("127.0.0.1", shared_redis_server.port), timeout=10)
    ours = Ours()
    for argv in ([b"FLUSHALL"], [b"SCRIPT", b"FLUSH"], [b"HELLO", b"%d" % request.param]):
        ask(sock, *argv)
        ours.send(argv)
    try:
        yield sock, ours
    finally:
        for argv in RESTORE:
            ask(sock, *argv)
        sock.close()
        ours.close()


@pytest.mark.redis
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_error_figures_match_redis(scenario: str, sides: tuple[socket.socket, Ours]) -> None:
    sock, ours = sides
    for argv in ([b"CONFIG", b"RESETSTAT"], *map(argv_of, SCENARIOS[scenario])):
        expected, got = ask(sock, *argv), ours.send(argv)
        assert got == expected, (argv, expected, got)
    sections = ([b"INFO", b"errorstats"], [b"INFO", b"stats"], [b"INFO", b"commandstats"])
    theirs = figures(*(ask(sock, *argv) for argv in sections))
    mine = figures(*(ours.send(argv) for argv in sections))
    assert mine == theirs
    assert len(theirs) > 2  # the scenario made errors and ran counted commands


#: INFO stats counters RESETSTAT zeroes and both servers count alike (the
#: byte counts differ in when the INFO request's own bytes are counted;
#: keyspace_hits in which commands count a hit: EXISTS and LPUSH, not
#: this test's subject).
RESET_COUNTERS = (b"total_commands_processed", b"keyspace_misses", b"expired_keys",
                  b"evicted_keys", b"total_connections_received", b"rejected_connections",
                  b"total_error_replies")


@pytest.mark.redis
def test_resetstat_zeroes_what_redis_zeroes(sides: tuple[socket.socket, Ours]) -> None:
    sock, ours = sides
    traffic = ([b"LPUSH", b"l", b"a"], [b"GET", b"l"], [b"GET", b"nokey"], [b"NOSUCH"],
               [b"SET", b"k", b"v"], [b"EXISTS", b"k", b"l"])
    for argv in (*traffic, [b"CONFIG", b"RESETSTAT"]):
        assert ask(sock, *argv) == ours.send(argv)
    sections = ([b"INFO", b"errorstats"], [b"INFO", b"stats"], [b"INFO", b"commandstats"])
    theirs = figures(*(ask(sock, *argv) for argv in sections))
    assert figures(*(ours.send(argv) for argv in sections)) == theirs
    assert theirs == {b"total_error_replies": b"0"}
    for argv in (*traffic, [b"GET", b"l"]):
        assert ask(sock, *argv) == ours.send(argv)
    stats = info_fields(ask(sock, b"INFO", b"stats")), info_fields(ours.send([b"INFO", b"stats"]))
    theirs_counters, mine_counters = ({name: fields[name] for name in RESET_COUNTERS}
                                      for fields in stats)
    assert mine_counters == theirs_counters
    # RESETSTAT, three INFOs, the traffic but NOSUCH (refused before it
    # ran: not a command processed), the GET.
    assert theirs_counters[b"total_commands_processed"] == b"%d" % (len(traffic) + 4)


@pytest.mark.redis
def test_errorstats_is_a_default_section_as_in_redis(
        sides: tuple[socket.socket, Ours]) -> None:
    sock, ours = sides

    def titles(raw: bytes) -> list[bytes]:
        return [line for line in raw.split(b"\r\n") if line.startswith(b"# ")]
    for argv in ([b"INFO"], [b"INFO", b"all"], [b"INFO", b"everything"], [b"INFO", b"default"]):
        theirs, mine = titles(ask(sock, *argv)), titles(ours.send(argv))
        # Redis has sections this server does not (Modules, Latencystats):
        # ours must be in Redis's order, and Errorstats among them.
        assert b"# Errorstats" in mine
        assert [title for title in theirs if title in mine] == mine, argv


# -- the bound (not in Redis 7.0.15: Redis 7.2's ERROR_STATS_NUMBER) ---------------------

def test_error_codes_are_bounded_then_counted_as_disabled_until_resetstat() -> None:
    ours = Ours()
    try:
        for i in range(MAX_ERROR_CODES + 50):
            reply = ours.send([b"EVAL", b"return redis.error_reply(ARGV[1] .. ' my error')",
                               b"0", b"E%d" % i])
            assert reply == b"-E%d my error\r\n" % i
        fields = info_fields(ours.send([b"INFO", b"errorstats"]))
        assert fields == {b"errorstat_" + DISABLED.encode(): b"count=1"}
        stats = info_fields(ours.send([b"INFO", b"stats"]))
        assert stats[b"total_error_replies"] == b"%d" % (MAX_ERROR_CODES + 50)
        assert ours.send([b"CONFIG", b"RESETSTAT"]) == b"+OK\r\n"
        ours.send([b"GET"])
        assert info_fields(ours.send([b"INFO", b"errorstats"])) == {b"errorstat_ERR": b"count=1"}
    finally:
        ours.close()


def test_error_code_is_redis_prefix_rule() -> None:
    assert error_code(b"-WRONGTYPE Operation\r\n") == "WRONGTYPE"
    assert error_code(b"-ERR\r\n") == "ERR"
    assert error_code(b"-" + b"X" * 40 + b" too long to be a code\r\n") == "ERR"
    stats = ErrorStats()
    stats.note(b"-A:B#c\r\n d\r\n")
    stats.note(b"-A:B#c\r\n d\r\n")
    assert stats.fields() == {"errorstat_A_B_c__": "count=2"}
    assert stats.total == 2


# -- a real server, read by redis-py ---------------------------------------------------------

@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    proc = spawn_server("serve", "kv", "--resp-port", "0", expect_listeners=2)
    yield proc
    proc.stop()


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_reads_errorstats(server: ServerProcess, protocol: int) -> None:
    r: Any = redis.Redis(host="127.0.0.1", port=resp_port(server), socket_timeout=10,
                         protocol=protocol)
    try:
        r.config_resetstat()
        r.set("s", "v")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            r.lpush("s", "x")
        with pytest.raises(redis.ResponseError, match="MY_CODE"):
            r.eval("return redis.error_reply('MY_CODE custom')", 0)
        assert r.info("errorstats") == {"errorstat_MY_CODE": {"count": 1},
                                        "errorstat_WRONGTYPE": {"count": 1}}
        assert r.info()["total_error_replies"] == 2
        assert r.info("commandstats")["cmdstat_lpush"]["failed_calls"] == 1
        assert "errorstat_WRONGTYPE" in r.info("all")
    finally:
        r.close()


def unblocked_with_error(port: int) -> dict[bytes, object]:
    """CONFIG RESETSTAT, a BLPOP on one connection, CLIENT UNBLOCK ... ERROR
    from another: the figures after the blocked client got its error."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as blocked, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as other:
        assert ask(other, "CONFIG", "RESETSTAT") == b"+OK\r\n"
        client_id = ask(blocked, "CLIENT", "ID")[1:-2]
        blocked.sendall(b"*3\r\n$5\r\nBLPOP\r\n$9\r\nnosuchkey\r\n$1\r\n0\r\n")
        deadline = time.monotonic() + DEADLINE
        for _ in range(100_000):
            if b"blocked_clients:1\r\n" in ask(other, "INFO", "clients"):
                break
            assert time.monotonic() < deadline, "the BLPOP never blocked"
        else:
            pytest.fail("the BLPOP never blocked")
        assert ask(other, "CLIENT", "UNBLOCK", client_id, "ERROR") == b":1\r\n"
        assert raw_reply(blocked) == b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"
        sections = (("INFO", "errorstats"), ("INFO", "stats"), ("INFO", "commandstats"))
        return figures(*(ask(other, *argv) for argv in sections))


@pytest.mark.redis
def test_an_unblocked_client_error_is_counted_as_redis_counts_it(
        server: ServerProcess, shared_redis_server: RedisServer) -> None:
    theirs = unblocked_with_error(shared_redis_server.port)
    assert theirs[b"errorstat_UNBLOCKED"] == b"count=1"
    assert unblocked_with_error(resp_port(server)) == theirs
