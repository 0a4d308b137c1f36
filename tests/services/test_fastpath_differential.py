"""The compiled hot path against the pure-Python reference, byte for byte.

Two services, each on its own store with the same fixed clock: one whose
sessions run the compiled fast path (services/_fastpath.pyx), one whose
sessions run the reference code only (what ``SOCKWORKS_NO_EXTENSIONS=1``
selects). Hypothesis feeds both the same random byte stream -- fast-path
commands in every letter case, every other command, transactions, protocol
switches, hostile frames (bad headers, huge and negative lengths, bad CRLF,
NUL bytes, HTTP, over-long lines, random bytes) -- split at random points,
and requires the same Output for every chunk (reply bytes, close, whether
a durability barrier was asked for), then the same store contents, the
same session and service counters and the same per-command statistics.

Needs the extension: skipped on a machine that could not build it, and a
failure under CI=true (tests/services/test_fastpath.py checks it is built).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sockworks.core.config import ServerSettings
from sockworks.core.service import Output
from sockworks.core.stats import ServerStats
from sockworks.protocols.resp import encode_command
from sockworks.services.accel import compiled_module
from sockworks.services.kv import KvService, KvSession
from sockworks.services.resp import RespService, RespSession
from sockworks.storage.embedded import open_embedded_store

FASTPATH = compiled_module()
if FASTPATH is None and os.environ.get("CI") == "true":  # pragma: no cover - CI guard
    raise RuntimeError("the compiled fast path was not built in CI")
pytestmark = pytest.mark.skipif(FASTPATH is None, reason="the C extension is not built")

NOW = 1_700_000_000_000
MAX_LINE = 200
MAX_BULK = 300
#: What the stores' durability_barrier() returns: a write asked for one.
BARRIER: Any = object()
#: A small key space, so reads hit what writes wrote.
KEYS = [b"k1", b"k2", b"n", b"nl", b"cr", b"h", b"x" * 513]


def make_service(limit: tuple[int, str]) -> KvService:
    maxmemory, policy = limit
    store = open_embedded_store(None, "no", active_expiry=False, clock=lambda: NOW,
                                maxmemory=maxmemory, maxmemory_policy=policy)
    store.durability_barrier = lambda: BARRIER  # type: ignore[method-assign]
    service = KvService(store, max_line=MAX_LINE, max_bulk=MAX_BULK)
    service.attach(ServerStats(), ServerSettings("asyncio"))
    # Values the text port cannot frame, and a key of another type.
    resp = service.resp_service()
    setup = resp.new_session("setup")
    setup.on_data(encode_command([b"SET", b"nl", b"a\nb"]) + encode_command([b"SET", b"cr", b"ab\r"])
                  + encode_command([b"HSET", b"h", b"f", b"v"]) + encode_command([b"SET", b"n", b"41"]))
    return service


def case_variants(word: bytes) -> st.SearchStrategy[bytes]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda flags: bytes(c if up else c ^ 0x20 if 65 <= c <= 90 else c
                            for c, up in zip(word, flags)))


keys = st.sampled_from(KEYS)
values = st.sampled_from([b"v", b"hello world", b"12", b"-3", b"9223372036854775807", b"",
                          b"x" * 250, b"a b\tc"])
spaces = st.sampled_from([b" ", b"  ", b"\t", b" \x0b", b"\x0c"])
ends = st.sampled_from([b"\n", b"\r\n", b" \r\n", b"\t\n"])


@st.composite
def text_line(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["get"] * 3 + ["set"] * 3 + ["del", "incr", "ping"]
                                + ["other"] * 2 + ["hostile"]))
    sp = draw(spaces)
    if kind == "ping":
        line = draw(case_variants(b"PING")) + draw(st.sampled_from([b"", b" x"]))
    elif kind == "set":
        line = draw(case_variants(b"SET")) + sp + draw(keys) + sp + draw(values)
    elif kind in ("get", "del", "incr"):
        line = draw(case_variants(kind.upper().encode())) + sp + draw(keys)
        if draw(st.integers(0, 5)) == 0:
            line += sp + draw(keys)  # one argument too many
    elif kind == "other":
        line = draw(st.sampled_from([
            b"EXISTS k1 k2", b"TTL k1", b"EXPIRE k1 100", b"EXPIRE k2 0", b"PERSIST k1",
            b"INCRBY n 5", b"INCRBY n x", b"DBSIZE", b"QUIT", b"AUTH x", b"SET k1", b"GET",
            b"FOO bar", b"DEL", b"INCR n n"]))
    else:
        line = draw(st.sampled_from([
            b"", b"   ", b"GET / HTTP/1.1", b"POST /x HTTP/1.0", b"Host: example.com",
            b"SET " + b"x" * 600 + b" v", b"\x00GET k1", b"GET k1\x00", b"\xff\xfe k1"]))
        line += draw(st.binary(max_size=8)) if draw(st.booleans()) else b""
    return line + draw(ends)


def bulk(arg: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(arg), arg)


@st.composite
def resp_request(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["get"] * 3 + ["set"] * 3 + ["del", "incr", "ping"]
                                + ["other"] * 3 + ["hostile", "inline"]))
    if kind in ("get", "set", "del", "incr", "ping"):
        word = draw(case_variants(kind.upper().encode()))
        nargs = {"get": 1, "set": 2, "del": draw(st.integers(1, 5)), "incr": 1,
                 "ping": draw(st.sampled_from([0, 0, 1]))}[kind]
        if draw(st.integers(0, 6)) == 0:
            nargs += draw(st.sampled_from([-1, 1]))  # the wrong number of arguments
        args = [draw(keys) if i < 1 or kind in ("del", "get") else draw(values)
                for i in range(max(nargs, 0))]
        return encode_command([word, *args])
    if kind == "other":
        argv = draw(st.sampled_from([
            [b"MULTI"], [b"EXEC"], [b"DISCARD"], [b"HELLO", b"3"], [b"HELLO", b"3"],
            [b"HELLO", b"2"],
            [b"EXISTS", b"k1", b"k2"], [b"INCRBY", b"n", b"2"], [b"DECR", b"n"],
            [b"HSET", b"h", b"g", b"w"], [b"AUTH", b"pw"], [b"CLIENT", b"SETNAME", b"x"],
            [b"SET", b"k1", b"v", b"NX"], [b"GETDEL", b"k2"], [b"QUIT"], [b"ECHO", b"hi"],
            [b"NOSUCH", b"x"], [b"post"], [b"Host:"]]))
        return encode_command(argv)
    if kind == "inline":
        return draw(st.sampled_from([b"PING\r\n", b"GET k1\r\n", b"SET k1 v\n", b"\r\n",
                                     b'SET k2 "a b"\r\n', b"'unbalanced\r\n"]))
    return draw(st.sampled_from([
        b"*-1\r\n", b"*0\r\n", b"*01\r\n$3\r\nGET\r\n", b"*1\r\n$-5\r\n",
        b"*1\r\n$99999999999\r\n", b"*1\r\n$301\r\n", b"*2\r\n$3\r\nGET\r\n$2\r\nk1XY",
        b"*2\r\n$03\r\nGET\r\n$2\r\nk1\r\n", b"*2\r$3\r\nGET\r\n$2\r\nk1\r\n",
        b"*1\r\n+PING\r\n", b"*1\r\n$4\r\nPI\x00G\r\n", b"*99999999999\r\n",
        b"*2\r\n$3\r\nGET\r\n", b"$3\r\nGET\r\n", b"\x00\x01", b"*3000000\r\n"]))


def split(requests: list[bytes], cuts: list[int]) -> list[bytes]:
    """The requests' bytes cut at the positions ``cuts`` names: an even
    number cuts between two requests (where a reading server usually finds
    a boundary), an odd one anywhere."""
    stream = b"".join(requests)
    bounds = [0]
    for request in requests:
        bounds.append(bounds[-1] + len(request))
    points = sorted({bounds[(c // 2) % len(bounds)] if c % 2 == 0
                     else c // 2 % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)])]
    return [c for c in chunks if c]


def shape(out: Output) -> tuple[bytes, bool, bool]:
    return out.data, out.close, out.barrier is BARRIER


def store_state(service: KvService) -> tuple[Any, ...]:
    store: Any = service.store  # the embedded store: its dicts are the whole state
    info = store.info()
    return (dict(store._data), dict(store._expires), info.get("used_memory"),
            info.get("keyspace_hits"), info.get("keyspace_misses"), info.get("evicted_keys"))


def stats_of(flat: dict[str, float]) -> dict[str, float]:
    # Times (the per-chunk histogram, per-command usec) differ by nature;
    # the counts may not.
    return {k: v for k, v in flat.items()
            if not k.startswith(("bucket.", "usec.")) and k != "sum"}


def run_both(make: Callable[[KvService], Any], chunks: list[bytes],
             maxmemory: tuple[int, str]) -> tuple[Any, Any]:
    results = []
    for fast in (True, False):
        service = make_service(maxmemory)
        holder = make(service)
        session = holder.new_session("127.0.0.1:1")
        assert FASTPATH is not None
        session._fast = (FASTPATH.text_run if isinstance(session, KvSession)
                         else FASTPATH.resp_run) if fast else None
        outputs = []
        for chunk in chunks:
            outputs.append(shape(session.on_data(chunk)))
            while session.backlog:
                outputs.append(shape(session.resume()))
        outputs.append(shape(session.on_eof()))
        session.on_close()
        results.append((outputs, store_state(service), service, holder, session))
    return results[0], results[1]


#: (maxmemory, policy): no limit; 1 byte under noeviction (every write is
#: refused); 1,500 bytes under allkeys-lru (a few keys fit: writes evict).
MAXMEMORY = st.sampled_from([(0, "noeviction"), (0, "noeviction"), (1, "noeviction"),
                             (1500, "allkeys-lru")])


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(text_line(), min_size=1, max_size=40), st.lists(st.integers(0, 5000), max_size=20),
       MAXMEMORY)
def test_text_port_compiled_equals_reference(lines: list[bytes], cuts: list[int],
                                             maxmemory: tuple[int, str]) -> None:
    chunks = split(lines, cuts)
    fast, pure = run_both(lambda service: service, chunks, maxmemory)
    assert fast[0] == pure[0]
    assert fast[1] == pure[1]
    fast_service, pure_service = fast[2], pure[2]
    assert fast_service.counters() == pure_service.counters()
    assert stats_of(fast_service.command_stats.flat()) == stats_of(
        pure_service.command_stats.flat())


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(resp_request(), min_size=1, max_size=40),
       st.lists(st.integers(0, 5000), max_size=20), MAXMEMORY)
def test_resp_port_compiled_equals_reference(requests: list[bytes], cuts: list[int],
                                             maxmemory: tuple[int, str]) -> None:
    chunks = split(requests, cuts)
    fast, pure = run_both(lambda service: service.resp_service(), chunks, maxmemory)
    assert fast[0] == pure[0]
    assert fast[1] == pure[1]
    fast_resp, pure_resp = fast[3], pure[3]
    assert isinstance(fast_resp, RespService) and isinstance(pure_resp, RespService)
    # ops_per_sec is a rate over wall-clock time; the rest are counts.
    assert {**fast_resp.counters(), "ops_per_sec": 0} == {**pure_resp.counters(), "ops_per_sec": 0}
    assert stats_of(fast_resp.command_stats.flat()) == stats_of(pure_resp.command_stats.flat())
    fast_session, pure_session = fast[4], pure[4]
    assert isinstance(fast_session, RespSession) and isinstance(pure_session, RespSession)
    assert (fast_session.last_command, fast_session.proto) == (
        pure_session.last_command, pure_session.proto)


def test_pipelines_of_fast_commands_take_the_compiled_path() -> None:
    """The differential tests above would pass if the fast path never ran:
    here a whole pipelined chunk of fast commands must be answered by it
    (the reference's _run_lines / _run_commands are made to fail)."""
    service = make_service((0, "noeviction"))
    text = service.new_session("127.0.0.1:1")
    assert FASTPATH is not None
    text._fast = FASTPATH.text_run
    with mock.patch.object(KvSession, "_run_lines", side_effect=AssertionError("reference ran")):
        out = text.on_data(b"SET a 1\nGET a\nINCR a\nDEL a\nPING\nGET a\n")
    assert out.data == b"OK\n1\n2\nDELETED\nPONG\nNOT_FOUND\n"
    resp = service.resp_service()
    session = resp.new_session("127.0.0.1:2")
    session._fast = FASTPATH.resp_run
    with mock.patch.object(RespSession, "_run_commands", side_effect=AssertionError("reference ran")):
            out = session.on_data(
            encode_command([b"set", b"a", b"1"]) + encode_command([b"GET", b"a"])
            + encode_command([b"incr", b"a"]) + encode_command([b"del", b"a", b"b"])
            + encode_command([b"PING"]) + encode_command([b"get", b"a"]))
    assert out.data == b"+OK\r\n$1\r\n1\r\n:2\r\n:1\r\n+PONG\r\n$-1\r\n"
