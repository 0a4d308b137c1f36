"""The KV text codec: bytes in, events out; results in, reply bytes out. No sockets.

Every stream test feeds the input whole and one byte at a time (h11's habit):
framing must not depend on how TCP splits the stream.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockworks.protocols import kvtext
from sockworks.protocols.kvtext import (
    CLOSED,
    LINE_TOO_LONG,
    MAX_EXPIRE_SECONDS,
    MAX_KEY_LENGTH,
    NEED_DATA,
    BadRequest,
    Compact,
    DbSize,
    Delete,
    Exists,
    Expire,
    Get,
    HttpRequest,
    IncrBy,
    Persist,
    Ping,
    Quit,
    Set,
    Stats,
    Ttl,
    parse_line,
)
from sockworks.protocols.lines import LineFramer

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


class KvTextConnection:
    """What the KV session does with a connection's bytes, without a store:
    LineFramer cuts lines, parse_line makes each one an event."""

    def __init__(self, max_line: int) -> None:
        self.framer = LineFramer(max_line)

    @property
    def buffered(self) -> int:
        return self.framer.buffered

    @property
    def trailing(self) -> bytes:
        return self.framer.trailing

    def receive_data(self, data: bytes) -> None:
        self.framer.receive_data(data)

    def next_event(self) -> object:
        event = self.framer.next_event()
        return parse_line(event) if isinstance(event, bytes) else event


def events_of(stream: bytes, *, max_line: int = 1024, bytewise: bool = False,
              eof: bool = False) -> list[object]:
    conn = KvTextConnection(max_line)
    chunks = [stream[i:i + 1] for i in range(len(stream))] if bytewise else [stream]
    events: list[object] = []
    for chunk in chunks:
        if not chunk:
            continue
        conn.receive_data(chunk)
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
            if event is LINE_TOO_LONG:
                break
    if eof:
        conn.receive_data(b"")
        events.append(conn.next_event())
    return events


def both_ways(stream: bytes, **kwargs: object) -> list[object]:
    whole = events_of(stream, **kwargs)  # type: ignore[arg-type]
    bytewise = events_of(stream, bytewise=True, **kwargs)  # type: ignore[arg-type]
    # Byte-at-a-time may report LINE_TOO_LONG repeatedly once failed; compare
    # up to the first one.
    if LINE_TOO_LONG in bytewise:
        bytewise = bytewise[: bytewise.index(LINE_TOO_LONG) + 1]
    if LINE_TOO_LONG in whole:
        whole = whole[: whole.index(LINE_TOO_LONG) + 1]
    assert whole == bytewise
    return whole


# -- the chapter's commands ------------------------------------------------

@pytest.mark.parametrize("line, event", [
    (b"SET a 1", Set(b"a", b"1")),
    (b"set a 1", Set(b"a", b"1")),
    (b"SeT a 1", Set(b"a", b"1")),
    # value = rest of the line: inner whitespace kept, surrounding stripped
    (b"SET a  hello   world  ", Set(b"a", b"hello   world")),
    (b"SET a \thello\tworld\t", Set(b"a", b"hello\tworld")),
    (b"  SET   a   b  ", Set(b"a", b"b")),
    (b"SET a 1\r", Set(b"a", b"1")),
    (b"SET a x\ry", Set(b"a", b"x\ry")),
    (b"GET a", Get(b"a")),
    (b"get a\r", Get(b"a")),
    (b"DEL a", Delete(b"a")),
    (b"QUIT", Quit()),
    (b"quit", Quit()),
    (b"QUIT now please", Quit()),  # the chapter's server ignores QUIT's arguments
])
def test_chapter_commands(line: bytes, event: object) -> None:
    assert parse_line(line) == event


@pytest.mark.parametrize("line, event", [
    (b"PING", Ping()),
    (b"EXISTS a", Exists((b"a",))),
    (b"EXISTS a b a", Exists((b"a", b"b", b"a"))),
    (b"INCR n", IncrBy(b"n", 1)),
    (b"INCRBY n 5", IncrBy(b"n", 5)),
    (b"incrby n -5", IncrBy(b"n", -5)),
    (b"INCRBY n 0", IncrBy(b"n", 0)),
    (b"INCRBY n %d" % INT64_MAX, IncrBy(b"n", INT64_MAX)),
    (b"INCRBY n %d" % INT64_MIN, IncrBy(b"n", INT64_MIN)),
    (b"EXPIRE k 10", Expire(b"k", 10)),
    (b"EXPIRE k 0", Expire(b"k", 0)),
    (b"EXPIRE k -1", Expire(b"k", -1)),
    (b"EXPIRE k %d" % MAX_EXPIRE_SECONDS, Expire(b"k", MAX_EXPIRE_SECONDS)),
    (b"TTL k", Ttl(b"k")),
    (b"PERSIST k", Persist(b"k")),
    (b"DBSIZE", DbSize()),
    (b"STATS", Stats()),
    (b"COMPACT", Compact()),
])
def test_extension_commands(line: bytes, event: object) -> None:
    assert parse_line(line) == event


@pytest.mark.parametrize("line, reason", [
    (b"", "empty command"),
    (b"   ", "empty command"),
    (b"\r", "empty command"),
    (b"\t \r", "empty command"),
    (b"FROB a", "unknown command"),
    (b"\xff\xfe\x00", "unknown command"),
    (b"SETX a 1", "unknown command"),
    (b"SET", "wrong number of arguments (usage: SET key value)"),
    (b"SET a", "wrong number of arguments (usage: SET key value)"),
    (b"SET a   ", "wrong number of arguments (usage: SET key value)"),
    (b"GET", "wrong number of arguments (usage: GET key)"),
    (b"GET a b", "wrong number of arguments (usage: GET key)"),
    (b"DEL", "wrong number of arguments (usage: DEL key)"),
    (b"DEL a b", "wrong number of arguments (usage: DEL key)"),
    (b"PING x", "wrong number of arguments (usage: PING)"),
    (b"EXISTS", "wrong number of arguments (usage: EXISTS key [key ...])"),
    (b"INCR", "wrong number of arguments (usage: INCR key)"),
    (b"INCR a 1", "wrong number of arguments (usage: INCR key)"),
    (b"INCRBY a", "wrong number of arguments (usage: INCRBY key increment)"),
    (b"TTL", "wrong number of arguments (usage: TTL key)"),
    (b"PERSIST", "wrong number of arguments (usage: PERSIST key)"),
    (b"DBSIZE x", "wrong number of arguments (usage: DBSIZE)"),
    (b"STATS x", "wrong number of arguments (usage: STATS)"),
    (b"COMPACT now", "wrong number of arguments (usage: COMPACT)"),
    (b"EXPIRE a", "wrong number of arguments (usage: EXPIRE key seconds)"),
])
def test_bad_requests_say_what_was_wrong(line: bytes, reason: str) -> None:
    assert parse_line(line) == BadRequest(reason)


@pytest.mark.parametrize("number", [
    b"+1", b"1.5", b"1e3", b"0x10", b"1_000", b"", b"-", b"abc", b"%d" % (INT64_MAX + 1),
    b"%d" % (INT64_MIN - 1), b"9" * 400, "\u0661".encode(),
])
def test_increments_must_be_int64(number: bytes) -> None:
    event = parse_line(b"INCRBY n " + number) if number else parse_line(b"INCRBY n")
    assert isinstance(event, BadRequest)
    if number:
        assert event.reason == "increment is not an integer or out of range"


@pytest.mark.parametrize("seconds", [b"1.5", b"x", b"%d" % (MAX_EXPIRE_SECONDS + 1),
                                     b"%d" % -(MAX_EXPIRE_SECONDS + 1), b"9" * 30])
def test_expire_times_are_bounded_integers(seconds: bytes) -> None:
    event = parse_line(b"EXPIRE k " + seconds)
    assert isinstance(event, BadRequest)
    assert event.reason.startswith("invalid expire time")


def test_key_length_limit() -> None:
    longest = b"k" * MAX_KEY_LENGTH
    too_long = longest + b"k"
    assert parse_line(b"SET " + longest + b" v") == Set(longest, b"v")
    assert parse_line(b"GET " + longest) == Get(longest)
    reason = f"key too long (max {MAX_KEY_LENGTH} bytes)"
    for line in (b"SET " + too_long + b" v", b"GET " + too_long, b"DEL " + too_long,
                 b"INCR " + too_long, b"INCRBY " + too_long + b" 1",
                 b"EXPIRE " + too_long + b" 1", b"TTL " + too_long,
                 b"PERSIST " + too_long, b"EXISTS a " + too_long):
        assert parse_line(line) == BadRequest(reason), line


def test_keys_and_values_are_bytes_not_utf8() -> None:
    assert parse_line(b"SET \xff\xfe \x80\x81 \xc3") == Set(b"\xff\xfe", b"\x80\x81 \xc3")
    assert parse_line(b"GET \xff\xfe") == Get(b"\xff\xfe")
    assert parse_line(b"SET k \x00nul\x00") == Set(b"k", b"\x00nul\x00")


# -- HTTP on the wrong port --------------------------------------------------

@pytest.mark.parametrize("line", [
    b"GET / HTTP/1.1", b"GET /index.html HTTP/1.0\r", b"get / http/1.1".upper(),
    b"POST /x HTTP/1.0", b"POST", b"post anything at all", b"HEAD / HTTP/1.1",
    b"PUT /k HTTP/1.1", b"DELETE /k HTTP/1.1", b"OPTIONS * HTTP/1.1",
    b"CONNECT example.com:443 HTTP/1.1", b"PRI * HTTP/2.0", b"Host: example.com",
    b"host: 127.0.0.1:9000\r", b"HOST:",
])
def test_http_lines_are_detected(line: bytes) -> None:
    assert parse_line(line) == HttpRequest(line)


@pytest.mark.parametrize("line", [b"GET /", b"GET HTTP/1.1", b"SET / HTTP/1.1",
                                  b"GET hostname", b"DEL Host:"])
def test_kv_lines_that_only_resemble_http(line: bytes) -> None:
    assert not isinstance(parse_line(line), HttpRequest)


def test_http_request_stops_the_stream_before_anything_runs() -> None:
    stream = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 8\r\n\r\nSET a 1\n"
    events = both_ways(stream)
    assert events[0] == HttpRequest(b"POST /x HTTP/1.1\r")


# -- streams: whole and byte by byte ---------------------------------------

def test_pipelined_stream() -> None:
    stream = b"SET a 1\r\nGET a\nset b  two words \r\nDEL a\n\nbogus\nQUIT\nGET b\n"
    assert both_ways(stream) == [
        Set(b"a", b"1"), Get(b"a"), Set(b"b", b"two words"), Delete(b"a"),
        BadRequest("empty command"), BadRequest("unknown command"), Quit(), Get(b"b"),
    ]


def test_partial_line_waits_for_newline() -> None:
    conn = KvTextConnection(100)
    conn.receive_data(b"GET")
    assert conn.next_event() is NEED_DATA
    assert conn.buffered == 3
    conn.receive_data(b" a")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"\n")
    assert conn.next_event() == Get(b"a")
    assert conn.buffered == 0


def test_unterminated_tail_at_eof_is_never_a_command() -> None:
    events = events_of(b"GET a\nDEL a", eof=True)
    assert events == [Get(b"a"), CLOSED]
    conn = KvTextConnection(100)
    conn.receive_data(b"GET a\nDEL a")
    conn.next_event()
    conn.receive_data(b"")
    assert conn.next_event() is CLOSED
    assert conn.trailing == b"DEL a"


def test_line_too_long_then_nothing_more_is_parsed() -> None:
    limit = 16
    stream = b"GET a\n" + b"SET k " + b"v" * 40 + b"\nGET a\n"
    assert both_ways(stream, max_line=limit) == [Get(b"a"), LINE_TOO_LONG]
    conn = KvTextConnection(limit)
    conn.receive_data(stream)
    assert conn.next_event() == Get(b"a")
    for _ in range(3):  # sticky: the tail is never run as a command
        assert conn.next_event() is LINE_TOO_LONG


def test_line_exactly_at_the_limit_is_accepted() -> None:
    line = b"SET k " + b"v" * 10
    assert both_ways(line + b"\n", max_line=len(line)) == [Set(b"k", b"v" * 10)]
    assert both_ways(line + b"v\n", max_line=len(line)) == [LINE_TOO_LONG]


def test_too_long_without_newline_is_detected_before_the_newline() -> None:
    conn = KvTextConnection(8)
    conn.receive_data(b"x" * 9)
    assert conn.next_event() is LINE_TOO_LONG


# -- replies ---------------------------------------------------------------

def test_fixed_replies() -> None:
    assert kvtext.GREETING == b"READY\n"
    assert (kvtext.OK, kvtext.NOT_FOUND, kvtext.DELETED, kvtext.BYE, kvtext.PONG) == (
        b"OK\n", b"NOT_FOUND\n", b"DELETED\n", b"BYE\n", b"PONG\n")
    assert kvtext.LINE_TOO_LONG_REPLY == b"ERROR: line too long\n"


@pytest.mark.parametrize("value, reply", [
    (None, b"NOT_FOUND\n"),
    (b"1", b"1\n"),
    (b"hello  world", b"hello  world\n"),
    (b"x\ry", b"x\ry\n"),
    (b"\xff\x00", b"\xff\x00\n"),
    (b"", b"\n"),
    (b"two\nlines", kvtext.UNFRAMABLE_VALUE_REPLY),
    (b"ends in cr\r", kvtext.UNFRAMABLE_VALUE_REPLY),
    (b"\n", kvtext.UNFRAMABLE_VALUE_REPLY),
])
def test_value_reply(value: bytes | None, reply: bytes) -> None:
    assert kvtext.value_reply(value) == reply


def test_unframable_value_reply_is_one_error_line() -> None:
    reply = kvtext.UNFRAMABLE_VALUE_REPLY
    assert reply.startswith(b"ERROR: ") and reply.count(b"\n") == 1 and reply.endswith(b"\n")


def test_error_reply_is_always_one_line() -> None:
    assert kvtext.error_reply("disk full") == b"ERROR: disk full\n"
    assert kvtext.error_reply("a\nb\r\nc") == b"ERROR: a b c\n"
    assert kvtext.error_reply("caf\u00e9") == "ERROR: caf\u00e9\n".encode()


def test_integer_and_status_replies() -> None:
    assert kvtext.integer_reply(-2) == b"-2\n"
    assert kvtext.integer_reply(INT64_MAX) == b"%d\n" % INT64_MAX
    assert kvtext.status_reply("rewrite started") == b"OK rewrite started\n"
    assert kvtext.status_reply("") == b"OK\n"
    assert kvtext.status_reply("multi\nline") == b"OK multi line\n"


STATS_LINE = re.compile(rb"STATS( [a-z0-9_]+=[^\s=]+)*\n")


def test_stats_reply_is_one_parseable_line() -> None:
    reply = kvtext.stats_reply({
        "keys": 3, "uptime_seconds": 12, "ratio": 0.5, "aof_enabled": True,
        "last error": "No space left on device", "path": "/var/lib/kv data=x",
        "nothing": None, "Mixed-Case": b"\xff",
    })
    assert STATS_LINE.fullmatch(reply), reply
    fields = dict(item.split(b"=", 1) for item in reply[6:-1].split(b" "))
    assert fields[b"keys"] == b"3"
    assert fields[b"ratio"] == b"0.500"
    assert fields[b"aof_enabled"] == b"1"
    assert fields[b"last_error"] == b"No_space_left_on_device"
    assert fields[b"path"] == b"/var/lib/kv_data_x"
    assert fields[b"nothing"] == b"-"
    assert b"mixed_case" in fields


# -- properties ------------------------------------------------------------

@settings(deadline=None)  # a loaded CI machine must not fail a pure function
@given(st.binary(max_size=200).filter(lambda b: b"\n" not in b))
def test_any_line_parses_to_an_event(line: bytes) -> None:
    event = parse_line(line)
    assert isinstance(event, (Set, Get, Delete, Quit, Ping, Exists, IncrBy, Expire, Ttl,
                              Persist, DbSize, Stats, Compact, BadRequest, HttpRequest))


KEYS = st.binary(min_size=1, max_size=20).map(lambda b: bytes(c for c in b if c not in
                                                                  b" \t\n\r\x0b\x0c") or b"k")
VALUES = st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\n", b"").strip() or b"v")


@settings(deadline=None)  # a loaded CI machine must not fail a pure function
@given(KEYS, VALUES, st.sampled_from([b"SET", b"set", b"Set"]),
       st.sampled_from([b" ", b"  ", b"\t"]), st.sampled_from([b"", b"\r", b"  \r"]))
def test_set_round_trips_any_bytes(key: bytes, value: bytes, name: bytes, sep: bytes,
                                   end: bytes) -> None:
    assert parse_line(name + sep + key + sep + value + end) == Set(key, value)
    assert kvtext.value_reply(value) == value + b"\n"


@settings(deadline=None)  # a loaded CI machine must not fail a pure function
@given(st.lists(st.binary(max_size=30), max_size=20), st.data())
def test_any_split_gives_the_same_events(lines: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(line.replace(b"\n", b"") + b"\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    conn = KvTextConnection(64)
    events: list[object] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        if cut > start:
            conn.receive_data(stream[start:cut])
            start = cut
            while (event := conn.next_event()) is not NEED_DATA:
                events.append(event)
    assert events == events_of(stream, max_line=64)
