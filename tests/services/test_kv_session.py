"""KvSession driven directly, as a concurrency model would: bytes in, Output out.

No sockets: these tests pin the service's behaviour (replies, ordering,
closing, barriers, counters) on a real embedded store. Expiry uses the store's
clock injection point, so no test sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sockworks.core.service import Output
from sockworks.protocols import kvtext
from sockworks.services.kv import KvService, KvSession
from sockworks.storage.embedded import open_embedded_store

MAX_LINE = 1024


class FakeClock:
    """A settable millisecond clock for the store (its documented injection point)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


def make_service(data_dir: str | None = None, fsync: str = "no",
                 clock: FakeClock | None = None) -> KvService:
    options = {"clock": clock} if clock is not None else {}
    store = open_embedded_store(data_dir, fsync, active_expiry=False, **options)
    return KvService(store, max_line=MAX_LINE)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(clock: FakeClock) -> Iterator[KvService]:
    svc = make_service(clock=clock)
    yield svc
    svc.close()


@pytest.fixture
def session(service: KvService) -> KvSession:
    sess = service.new_session("127.0.0.1:5555")
    assert sess.on_connect() == Output(b"READY\n")
    return sess


def feed(session: KvSession, data: bytes, *, bytewise: bool = False) -> tuple[bytes, bool]:
    """All reply bytes and whether the session asked to close."""
    out = b""
    chunks = [data[i:i + 1] for i in range(len(data))] if bytewise else [data]
    for chunk in chunks:
        output = session.on_data(chunk)
        if output.barrier is not None:
            assert output.barrier.wait(10)
        out += output.data
        if output.close:
            return out, True
    return out, False


def talk(session: KvSession, data: bytes) -> bytes:
    out, closed = feed(session, data)
    assert not closed
    return out


CONVERSATION = (
    b"SET a 1\n", b"OK\n",
    b"GET a\n", b"1\n",
    b"set greeting  hello   world \r\n", b"OK\n",
    b"GET greeting\r\n", b"hello   world\n",
    b"GET nope\n", b"NOT_FOUND\n",
    b"DEL a\n", b"DELETED\n",
    b"DEL a\n", b"NOT_FOUND\n",
    b"\n", b"ERROR: empty command\n",
    b"FLY away\n", b"ERROR: unknown command\n",
    b"GET\n", b"ERROR: wrong number of arguments (usage: GET key)\n",
    b"PING\n", b"PONG\n",
    b"EXISTS greeting a greeting\n", b"2\n",
    b"INCR n\n", b"1\n",
    b"INCRBY n 41\n", b"42\n",
    b"INCRBY n -50\n", b"-8\n",
    b"INCR greeting\n", b"ERROR: value is not an integer or out of range\n",
    b"DBSIZE\n", b"2\n",
    b"TTL n\n", b"-1\n",
    b"TTL missing\n", b"-2\n",
    b"EXPIRE missing 10\n", b"0\n",
    b"PERSIST n\n", b"0\n",
)


@pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])
def test_conversation(session: KvSession, bytewise: bool) -> None:
    requests = b"".join(CONVERSATION[0::2])
    replies = b"".join(CONVERSATION[1::2])
    if bytewise:
        out, closed = feed(session, requests, bytewise=True)
    else:
        out = b"".join(talk(session, request) for request in CONVERSATION[0::2])
        closed = False
    assert not closed
    assert out == replies


def test_pipelined_requests_answered_in_order_in_one_output(session: KvSession) -> None:
    requests = b"".join(CONVERSATION[0::2])
    output = session.on_data(requests)
    assert output.data == b"".join(CONVERSATION[1::2])
    assert not output.close


def test_one_command_across_many_chunks(session: KvSession) -> None:
    assert session.on_data(b"SE").data == b""
    assert session.busy
    assert session.on_data(b"T k v").data == b""
    assert session.on_data(b"al\r").data == b""
    assert session.on_data(b"\nGET k\n").data == b"OK\nval\n"
    assert not session.busy


def test_quit_says_bye_and_nothing_after_it_runs(service: KvService,
                                                 session: KvSession) -> None:
    output = session.on_data(b"SET a 1\nQUIT\nSET b 2\n")
    assert output.data == b"OK\nBYE\n"
    assert output.close
    assert service.store.get(b"b") is None
    later = session.on_data(b"SET c 3\n")
    assert later.close and later.data == b""
    assert service.store.get(b"c") is None


def test_quit_with_arguments_still_quits(session: KvSession) -> None:
    assert feed(session, b"quit now\r\n") == (b"BYE\n", True)


def test_line_too_long_replies_then_closes_and_never_runs_the_tail(
        service: KvService, session: KvSession) -> None:
    long_line = b"SET big " + b"x" * MAX_LINE + b"\nSET after 1\n"
    output = session.on_data(b"SET first 1\n" + long_line)
    assert output.data == b"OK\nERROR: line too long\n"
    assert output.close
    assert service.store.get(b"after") is None
    assert service.store.get(b"big") is None


def test_line_too_long_detected_without_a_newline(session: KvSession) -> None:
    out, closed = feed(session, b"x" * (MAX_LINE + 1))
    assert (out, closed) == (b"ERROR: line too long\n", True)


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nHost: localhost:9000\r\n\r\n",
    b"POST /x HTTP/1.0\r\nContent-Length: 8\r\n\r\nSET a 1\n",
    b"Host: evil\r\nSET a 1\r\n",
])
def test_http_closes_without_running_anything(service: KvService, session: KvSession,
                                              request_bytes: bytes) -> None:
    for bytewise in (False, True):
        sess = service.new_session("127.0.0.1:1") if bytewise else session
        out, closed = feed(sess, request_bytes, bytewise=bytewise)
        assert (out, closed) == (b"", True)
    assert service.store.dbsize() == 0
    assert service.snapshot()["http_requests_refused"] == 2


def test_unterminated_tail_at_eof_is_not_run(service: KvService, session: KvSession) -> None:
    assert session.on_data(b"SET a 1\nSET b 2").data == b"OK\n"
    assert session.on_eof().close
    assert service.store.get(b"b") is None
    assert session.on_data(b"\n").close  # nothing runs after the end either


def test_errors_keep_the_connection_open(session: KvSession) -> None:
    out = talk(session, b"SET s text\nINCR s\nINCRBY s x\nEXPIRE s soon\nGET s\n")
    assert out.split(b"\n")[:-1] == [
        b"OK",
        b"ERROR: value is not an integer or out of range",
        b"ERROR: increment is not an integer or out of range",
        b"ERROR: invalid expire time (an integer number of seconds, at most "
        b"%d)" % kvtext.MAX_EXPIRE_SECONDS,
        b"text",
    ]


def test_incr_overflow_is_an_error(session: KvSession) -> None:
    out = talk(session, b"SET n 9223372036854775806\nINCR n\nINCR n\nGET n\n")
    assert out == (b"OK\n9223372036854775807\n"
                   b"ERROR: increment or decrement would overflow\n9223372036854775807\n")


def test_expiry(session: KvSession, clock: FakeClock) -> None:
    assert talk(session, b"SET k v\nEXPIRE k 10\nTTL k\n") == b"OK\n1\n10\n"
    clock.now += 4_400
    assert talk(session, b"TTL k\n") == b"6\n"  # 5.6 s left: rounded as Redis does
    clock.now += 5_599
    assert talk(session, b"GET k\nEXISTS k\n") == b"v\n1\n"
    clock.now += 1
    assert talk(session, b"GET k\nEXISTS k\nTTL k\nDBSIZE\n") == b"NOT_FOUND\n0\n-2\n0\n"


def test_persist_and_non_positive_expire(session: KvSession, clock: FakeClock) -> None:
    assert talk(session, b"SET k v\nEXPIRE k 5\nPERSIST k\nPERSIST k\nTTL k\n") == \
        b"OK\n1\n1\n0\n-1\n"
    clock.now += 10_000
    assert talk(session, b"GET k\n") == b"v\n"
    assert talk(session, b"EXPIRE k 0\nGET k\n") == b"1\nNOT_FOUND\n"
    assert talk(session, b"SET j v\nEXPIRE j -5\nEXISTS j\n") == b"OK\n1\n0\n"


def test_set_clears_a_ttl(session: KvSession) -> None:
    assert talk(session, b"SET k v\nEXPIRE k 100\nSET k w\nTTL k\n") == b"OK\n1\nOK\n-1\n"


def test_binary_keys_and_values(session: KvSession) -> None:
    assert talk(session, b"SET \xff\xfe \x80 \x00\xc3\n") == b"OK\n"
    assert talk(session, b"GET \xff\xfe\n") == b"\x80 \x00\xc3\n"


def test_value_with_a_newline_is_an_error_not_a_broken_stream(service: KvService,
                                                               session: KvSession) -> None:
    service.store.set(b"multi", b"line one\nline two")  # as another protocol could
    service.store.set(b"cr", b"ends with cr\r")
    out = talk(session, b"GET multi\nGET cr\nPING\n")
    assert out == kvtext.UNFRAMABLE_VALUE_REPLY * 2 + b"PONG\n"


def test_key_too_long(session: KvSession) -> None:
    key = b"k" * (kvtext.MAX_KEY_LENGTH + 1)
    assert talk(session, b"SET " + key + b" v\n") == b"ERROR: key too long (max 512 bytes)\n"


def test_stats_reports_every_documented_field(service: KvService, session: KvSession) -> None:
    service.stats.opened()
    talk(session, b"SET a 1\nGET a\nGET b\nbogus\n")
    reply = talk(session, b"STATS\n")
    assert reply.startswith(b"STATS ") and reply.count(b"\n") == 1
    fields = dict(item.split(b"=", 1) for item in reply[6:-1].split(b" "))
    for name in (b"uptime_seconds", b"connections_current", b"connections_total",
                 b"connections_rejected", b"commands_processed", b"keys", b"get_hits",
                 b"get_misses", b"keyspace_hits", b"keyspace_misses", b"expired_keys",
                 b"persistence", b"protocol_errors", b"http_requests_refused"):
        assert name in fields, name
    assert fields[b"connections_current"] == b"1"
    assert fields[b"connections_total"] == b"1"
    assert fields[b"commands_processed"] == b"4"  # SET GET GET and this STATS
    assert fields[b"get_hits"] == b"1" and fields[b"get_misses"] == b"1"
    assert fields[b"protocol_errors"] == b"1"
    assert fields[b"keys"] == b"1"
    assert fields[b"persistence"] == b"off"


def test_stats_counts_expired_keys(session: KvSession, clock: FakeClock,
                                   service: KvService) -> None:
    talk(session, b"SET a 1\nEXPIRE a 1\n")
    clock.now += 2_000
    talk(session, b"GET a\n")
    assert service.snapshot()["expired_keys"] == 1


def test_writes_carry_the_durability_barrier(tmp_path: Path) -> None:
    svc = make_service(str(tmp_path), "always")
    try:
        sess = svc.new_session("127.0.0.1:1")
        sess.on_connect()
        write = sess.on_data(b"SET a 1\nINCR n\nGET a\n")
        assert write.data == b"OK\n1\n1\n"
        assert write.barrier is not None
        assert write.barrier.wait(10) is True
        read = sess.on_data(b"GET a\nEXISTS a\nTTL a\n")
        assert read.barrier is None
    finally:
        svc.close()
    reopened = make_service(str(tmp_path), "always")
    try:
        assert reopened.store.get(b"a") == b"1"
        assert reopened.store.get(b"n") == b"1"
    finally:
        reopened.close()


def test_fsync_no_needs_no_barrier(tmp_path: Path) -> None:
    svc = make_service(str(tmp_path), "no")
    try:
        sess = svc.new_session("127.0.0.1:1")
        assert sess.on_data(b"SET a 1\n").barrier is None
    finally:
        svc.close()


def test_compact_runs_in_the_background(tmp_path: Path) -> None:
    svc = make_service(str(tmp_path), "everysec")
    try:
        sess = svc.new_session("127.0.0.1:1")
        talk(sess, b"".join(b"SET k %d\n" % i for i in range(200)))
        before = svc.store.info()["aof_size"]
        out = talk(sess, b"COMPACT\n")
        assert out == b"OK compaction started\n"
        # The rewrite runs in the store's background thread; wait for it
        # through the store's public counters (bounded).
        deadline = time.monotonic() + 10
        while svc.store.info()["aof_rewrites"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        info = svc.store.info()
        assert info["aof_rewrites"] == 1
        assert info["aof_size"] < before
        assert talk(sess, b"GET k\n") == b"199\n"
    finally:
        svc.close()


def test_service_close_is_idempotent(service: KvService) -> None:
    service.close()
    service.close()


# -- the session against a dict model, on generated streams ------------------

KEYS = st.sampled_from([b"a", b"b", b"\xff", b"n"])
VALUES = st.sampled_from([b"1", b"-3", b"x y", b"0", b"text", b"\x80\x81", b"007"])
COMMANDS = st.one_of(
    st.tuples(st.just(b"SET"), KEYS, VALUES),
    st.tuples(st.just(b"GET"), KEYS),
    st.tuples(st.just(b"DEL"), KEYS),
    st.tuples(st.just(b"INCR"), KEYS),
    st.tuples(st.just(b"INCRBY"), KEYS, st.integers(-100, 100).map(lambda n: b"%d" % n)),
    st.tuples(st.just(b"EXISTS"), KEYS),
    st.tuples(st.just(b"DBSIZE")),
    st.tuples(st.just(b"PING")),
    st.tuples(st.just(b"BOGUS"), KEYS),
)


def model_reply(model: dict[bytes, bytes], command: tuple[bytes, ...]) -> bytes:
    name, *args = command
    if name == b"SET":
        model[args[0]] = args[1]
        return b"OK"
    if name == b"GET":
        return model.get(args[0], b"NOT_FOUND")
    if name == b"DEL":
        return b"DELETED" if model.pop(args[0], None) is not None else b"NOT_FOUND"
    if name in (b"INCR", b"INCRBY"):
        delta = 1 if name == b"INCR" else int(args[1])
        old = model.get(args[0], b"0")
        canonical = old.lstrip(b"-").isdigit() and old == b"%d" % int(old)
        if not canonical:
            return b"ERROR: value is not an integer or out of range"
        model[args[0]] = b"%d" % (int(old) + delta)
        return model[args[0]]
    if name == b"EXISTS":
        return b"1" if args[0] in model else b"0"
    if name == b"DBSIZE":
        return b"%d" % len(model)
    if name == b"PING":
        return b"PONG"
    return b"ERROR: unknown command"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(COMMANDS, max_size=40), st.data())
def test_generated_streams_match_a_dict_model(commands: list[tuple[bytes, ...]],
                                              data: st.DataObject) -> None:
    svc = make_service()
    try:
        sess = svc.new_session("127.0.0.1:1")
        model: dict[bytes, bytes] = {}
        expected = b"".join(model_reply(model, c) + b"\n" for c in commands)
        stream = b"".join(b" ".join(c) + data.draw(st.sampled_from([b"\n", b"\r\n"]))
                          for c in commands)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
        out = b""
        start = 0
        for cut in [*cuts, len(stream)]:
            if cut > start:
                output = sess.on_data(stream[start:cut])
                assert not output.close
                out += output.data
                start = cut
        assert out == expected
        assert {k: svc.store.get(k) for k in model} == model
    finally:
        svc.close()


def test_pipelined_stats_includes_the_commands_before_it(session: KvSession) -> None:
    reply = talk(session, b"GET nope\nSET a 1\nSTATS\n").split(b"\n")[2]
    fields = dict(item.split(b"=", 1) for item in reply.split(b" ")[1:])
    assert fields[b"get_misses"] == b"1"
    assert fields[b"commands_processed"] == b"3"  # including the STATS itself


def test_counters_survive_closed_sessions(service: KvService) -> None:
    for _ in range(3):
        sess = service.new_session("127.0.0.1:1")
        talk(sess, b"GET a\nSET a 1\nGET a\nnope\n")
        sess.on_close()
        sess.on_close()  # a second call must not count twice
    snap = service.snapshot()
    assert (snap["commands_processed"], snap["get_hits"], snap["get_misses"],
            snap["protocol_errors"]) == (9, 5, 1, 3)


# -- expiry against a model with a clock ---------------------------------------

TTL_KEYS = st.sampled_from([b"a", b"b"])
TTL_COMMANDS = st.one_of(
    st.tuples(st.just(b"SET"), TTL_KEYS, VALUES),
    st.tuples(st.just(b"GET"), TTL_KEYS),
    st.tuples(st.just(b"DEL"), TTL_KEYS),
    st.tuples(st.just(b"INCR"), TTL_KEYS),
    st.tuples(st.just(b"EXISTS"), TTL_KEYS),
    st.tuples(st.just(b"EXPIRE"), TTL_KEYS, st.integers(-1, 5).map(lambda n: b"%d" % n)),
    st.tuples(st.just(b"TTL"), TTL_KEYS),
    st.tuples(st.just(b"PERSIST"), TTL_KEYS),
    st.tuples(st.just(b"DBSIZE")),
    st.tuples(st.just(b"TICK"), st.integers(0, 3000)),  # advance the clock (ms)
)


class TtlModel:
    """A dict with deadlines: what the store must do, written the obvious way."""

    def __init__(self) -> None:
        self.now = FakeClock().now
        self.data: dict[bytes, bytes] = {}
        self.deadline: dict[bytes, int] = {}

    def purge(self) -> None:
        for key in [k for k, at in self.deadline.items() if at <= self.now]:
            del self.data[key], self.deadline[key]

    def reply(self, command: tuple[Any, ...]) -> bytes | None:
        name, *args = command
        if name == b"TICK":
            self.now += args[0]
            return None
        self.purge()
        data, deadline = self.data, self.deadline
        if name == b"SET":
            data[args[0]] = args[1]
            deadline.pop(args[0], None)
            return b"OK"
        if name == b"GET":
            return data.get(args[0], b"NOT_FOUND")
        if name == b"DEL":
            deadline.pop(args[0], None)
            return b"DELETED" if data.pop(args[0], None) is not None else b"NOT_FOUND"
        if name == b"INCR":
            old = data.get(args[0], b"0")
            if not (old.lstrip(b"-").isdigit() and old == b"%d" % int(old)):
                return b"ERROR: value is not an integer or out of range"
            data[args[0]] = b"%d" % (int(old) + 1)  # keeps the TTL, as Redis
            return data[args[0]]
        if name == b"EXISTS":
            return b"1" if args[0] in data else b"0"
        if name == b"EXPIRE":
            if args[0] not in data:
                return b"0"
            seconds = int(args[1])
            if seconds <= 0:
                del data[args[0]]
                deadline.pop(args[0], None)
            else:
                deadline[args[0]] = self.now + seconds * 1000
            return b"1"
        if name == b"TTL":
            if args[0] not in data:
                return b"-2"
            if args[0] not in deadline:
                return b"-1"
            return b"%d" % ((deadline[args[0]] - self.now + 500) // 1000)  # rounded
        if name == b"PERSIST":
            return b"1" if args[0] in data and deadline.pop(args[0], None) is not None else b"0"
        if name == b"DBSIZE":
            return b"%d" % len(data)
        raise AssertionError(name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(TTL_COMMANDS, max_size=60))
def test_generated_streams_with_expiry_match_a_model(commands: list[tuple[Any, ...]]) -> None:
    clock = FakeClock()
    svc = make_service(clock=clock)
    model = TtlModel()
    try:
        sess = svc.new_session("127.0.0.1:1")
        for command in commands:
            expected = model.reply(command)
            clock.now = model.now
            if expected is not None:
                assert talk(sess, b" ".join(command) + b"\n") == expected + b"\n", command
    finally:
        svc.close()
