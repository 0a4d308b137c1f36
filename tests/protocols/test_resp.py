"""RESP codec tests: bytes in, commands/errors out; replies out. No sockets.

Every parser test runs against both back ends (pure Python, and the hiredis
fast path when hiredis is installed) and feeds its input whole and one byte
at a time. The hostile inputs are those of Redis's tests/unit/protocol.tcl
(rewritten here), and the expected texts are the ones Redis 7 sends.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockworks.protocols import resp
from sockworks.protocols.resp import (
    CLOSED,
    NEED_DATA,
    PROTO_INLINE_MAX_SIZE,
    Map,
    ProtocolViolation,
    Push,
    RespParser,
    RespSet,
    SimpleString,
    Verbatim,
    encode,
    encode_command,
    split_inline,
)

BACKENDS = [pytest.param(False, id="python"),
            pytest.param(True, id="hiredis", marks=pytest.mark.skipif(
                not resp.HIREDIS_AVAILABLE, reason="hiredis not installed"))]


@pytest.fixture(params=BACKENDS)
def hiredis(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


Result = tuple[list[list[bytes]], str | None]


def parse_whole(data: bytes, hiredis: bool, **kwargs: int) -> Result:
    parser = RespParser(use_hiredis=hiredis, **kwargs)
    parser.receive_data(data)
    commands, violation = parser.next_commands()
    return commands, violation.message if violation else None


def parse_bytewise(data: bytes, hiredis: bool, **kwargs: int) -> Result:
    parser = RespParser(use_hiredis=hiredis, **kwargs)
    commands: list[list[bytes]] = []
    violation = None
    for i in range(len(data)):
        parser.receive_data(data[i:i + 1])
        got, violation = parser.next_commands()
        commands += got
        if violation:
            break
    return commands, violation.message if violation else None


def parse(data: bytes, hiredis: bool, **kwargs: int) -> Result:
    """Parse whole and byte by byte; both must agree."""
    whole = parse_whole(data, hiredis, **kwargs)
    assert parse_bytewise(data, hiredis, **kwargs) == whole
    return whole


def cmd(*args: bytes) -> bytes:
    return encode_command(args)


# -- well-formed requests ---------------------------------------------------------

def test_single_command(hiredis: bool) -> None:
    assert parse(cmd(b"GET", b"key"), hiredis) == ([[b"GET", b"key"]], None)


def test_pipeline_in_order(hiredis: bool) -> None:
    data = cmd(b"SET", b"k", b"v") + cmd(b"GET", b"k") + cmd(b"PING")
    assert parse(data, hiredis) == ([[b"SET", b"k", b"v"], [b"GET", b"k"], [b"PING"]], None)


def test_binary_safe_values(hiredis: bool) -> None:
    value = bytes(range(256)) + b"\r\n*1\r\n$4\r\nPING\r\n" + b"\x00"
    assert parse(cmd(b"SET", b"\r\nkey\x00", value), hiredis) == (
        [[b"SET", b"\r\nkey\x00", value]], None)


def test_empty_bulk(hiredis: bool) -> None:
    assert parse(cmd(b"SET", b"", b""), hiredis) == ([[b"SET", b"", b""]], None)


def test_partial_command_waits(hiredis: bool) -> None:
    data = cmd(b"SET", b"key", b"value")
    for cut in range(len(data)):
        assert parse_whole(data[:cut], hiredis) == ([], None)


def test_empty_and_negative_multibulk_are_ignored(hiredis: bool) -> None:
    # protocol.tcl "Negative multibulk length": *-10 is skipped and the
    # following PING is answered (Redis 7 does the same with *0 and *-1).
    data = b"*-10\r\n" + cmd(b"PING") + b"*0\r\n*-1\r\n" + cmd(b"ECHO", b"x")
    assert parse(data, hiredis) == ([[b"PING"], [b"ECHO", b"x"]], None)


def test_empty_query_is_ignored(hiredis: bool) -> None:
    # protocol.tcl "Handle an empty query".
    assert parse(b"\r\n\r\n\n" + cmd(b"PING"), hiredis) == ([[b"PING"]], None)


def test_bytes_after_bulk_are_skipped_unchecked(hiredis: bool) -> None:
    # Redis skips the two bytes after a bulk's data without looking at them.
    data = b"*1\r\n$4\r\nPINGxx" + cmd(b"PING")
    assert parse(data, hiredis) == ([[b"PING"], [b"PING"]], None)


def test_inline_commands(hiredis: bool) -> None:
    data = b"PING\r\nset  k   v\nGET k\r\n" + cmd(b"DEL", b"k") + b"  ECHO   \"a b\"  \r\n"
    assert parse(data, hiredis) == (
        [[b"PING"], [b"set", b"k", b"v"], [b"GET", b"k"], [b"DEL", b"k"], [b"ECHO", b"a b"]],
        None)


def test_commands_before_an_error_are_kept(hiredis: bool) -> None:
    data = cmd(b"PING") + b"*1\r\n+PING\r\n" + cmd(b"PING")
    assert parse(data, hiredis) == ([[b"PING"]], "Protocol error: expected '$', got '+'")


def test_many_arguments(hiredis: bool) -> None:
    args = [b"MSET"] + [b"k%d" % i for i in range(2000)]
    assert parse_whole(cmd(*args), hiredis) == ([args], None)


# -- hostile requests (protocol.tcl and friends) ----------------------------------

@pytest.mark.parametrize(("data", "message"), [
    # "Out of range multibulk length"
    (b"*3000000000\r\n", "Protocol error: invalid multibulk length"),
    (b"*20000000000000000000000\r\n", "Protocol error: invalid multibulk length"),
    (b"*abc\r\n", "Protocol error: invalid multibulk length"),
    (b"*03\r\n", "Protocol error: invalid multibulk length"),   # string2ll: no leading 0
    (b"*+1\r\n", "Protocol error: invalid multibulk length"),
    (b"*-0\r\n", "Protocol error: invalid multibulk length"),
    (b"*\r\n", "Protocol error: invalid multibulk length"),
    # "Wrong multibulk payload header"
    (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", "Protocol error: expected '$', got 'f'"),
    # "Negative multibulk payload length"
    (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n", "Protocol error: invalid bulk length"),
    # "Out of range multibulk payload length"
    (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n", "Protocol error: invalid bulk length"),
    # "Non-number multibulk payload length"
    (b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n", "Protocol error: invalid bulk length"),
    # "Multi bulk request not followed by bulk arguments"
    (b"*1\r\nfoo\r\n", "Protocol error: expected '$', got 'f'"),
    # "Unbalanced number of quotes"
    (b'set """test-key""" test-value\r\nping\r\n',
     "Protocol error: unbalanced quotes in request"),
    (b"set 'a\r\n", "Protocol error: unbalanced quotes in request"),
    (b'set "a"b c\r\n', "Protocol error: unbalanced quotes in request"),
    # other element types where a bulk string belongs
    (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
    (b"*1\r\n$03\r\nfoo\r\n", "Protocol error: invalid bulk length"),
    (b"*2\r\n:1\r\n$1\r\na\r\n", "Protocol error: expected '$', got ':'"),
    (b"*1\r\n*1\r\n$1\r\na\r\n", "Protocol error: expected '$', got '*'"),
    (b"*1\r\n=7\r\ntxt:abc\r\n", "Protocol error: expected '$', got '='"),
    (b"*1\r\n(123\r\n", "Protocol error: expected '$', got '('"),
    (b"*1\r\n-ERR x\r\n", "Protocol error: expected '$', got '-'"),
    (b"*1\r\n_\r\n", "Protocol error: expected '$', got '_'"),
])
def test_protocol_errors(hiredis: bool, data: bytes, message: str) -> None:
    assert parse(data, hiredis) == ([], message)


def test_bulk_over_max_bulk(hiredis: bool) -> None:
    ok = cmd(b"SET", b"k", b"x" * 100)
    assert parse(ok, hiredis, max_bulk=100) == ([[b"SET", b"k", b"x" * 100]], None)
    too_big = cmd(b"SET", b"k", b"x" * 101)
    assert parse(too_big, hiredis, max_bulk=100) == ([], "Protocol error: invalid bulk length")


def test_default_max_bulk_header_is_refused_before_the_data(hiredis: bool) -> None:
    header = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % (resp.DEFAULT_MAX_BULK + 1)
    assert parse(header, hiredis) == ([], "Protocol error: invalid bulk length")
    at_limit = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%d\r\n" % resp.DEFAULT_MAX_BULK
    assert parse_whole(at_limit, hiredis) == ([], None)


def test_too_big_inline_request(hiredis: bool) -> None:
    assert parse_whole(b"A" * PROTO_INLINE_MAX_SIZE, hiredis) == ([], None)
    assert parse_whole(b"A" * (PROTO_INLINE_MAX_SIZE + 1), hiredis) == (
        [], "Protocol error: too big inline request")
    # A complete line over the limit is refused too, however it arrives.
    assert parse_whole(b"ECHO " + b"A" * PROTO_INLINE_MAX_SIZE + b"\r\n", hiredis) == (
        [], "Protocol error: too big inline request")


def test_inline_at_the_limit_is_accepted(hiredis: bool) -> None:
    line = b"ECHO " + b"A" * (PROTO_INLINE_MAX_SIZE - 5)
    assert parse_whole(line + b"\r\n", hiredis) == ([line.split()], None)


def test_too_big_count_strings(hiredis: bool) -> None:
    assert parse_whole(b"*" + b"1" * (PROTO_INLINE_MAX_SIZE + 1), hiredis) == (
        [], "Protocol error: too big mbulk count string")
    assert parse_whole(b"*1\r\n$" + b"1" * (PROTO_INLINE_MAX_SIZE + 1), hiredis) == (
        [], "Protocol error: too big bulk count string")


def test_query_buffer_limit(hiredis: bool) -> None:
    limit = 100 + 4 * PROTO_INLINE_MAX_SIZE
    parser = RespParser(100, max_query=limit, use_hiredis=hiredis)
    one = cmd(b"SET", b"k", b"x" * 100)
    # An array that never ends accumulates arguments: stopped at the limit.
    parser.receive_data(b"*100000\r\n")
    violation = None
    for _ in range(limit // 100 + 10):
        parser.receive_data(one[13:])  # "$1\r\nk\r\n$100\r\nxxx...\r\n"
        _, violation = parser.next_commands()
        if violation:
            break
    assert violation == ProtocolViolation("Protocol error: query buffer limit exceeded")


def test_violation_is_final(hiredis: bool) -> None:
    parser = RespParser(use_hiredis=hiredis)
    parser.receive_data(b"*1\r\n$x\r\n")
    first = parser.next_commands()
    parser.receive_data(cmd(b"PING"))
    assert parser.next_commands() == ([], first[1])
    assert parser.next_event() == first[1]
    assert not parser.busy


@pytest.mark.parametrize("prefix", [b"\x00", b"*\x00", b"$\x00"])
def test_protocol_desync(hiredis: bool, prefix: bytes) -> None:
    # protocol.tcl "Protocol desync regression test": a bad first byte, then
    # an endless stream of 1 KiB chunks with no line end. The server must
    # give up with a protocol error after a bounded amount, never buffer on.
    parser = RespParser(use_hiredis=hiredis)
    parser.receive_data(prefix)
    sent = len(prefix)
    violation = None
    for _ in range(200):  # 200 KiB: far more than the 64 KiB limit
        parser.receive_data(b"A" * 1024)
        sent += 1024
        commands, violation = parser.next_commands()
        assert commands == []
        if violation:
            break
    assert violation is not None and violation.message.startswith("Protocol error:")
    assert sent <= PROTO_INLINE_MAX_SIZE + 2048


def test_random_garbage_never_hangs_or_crashes() -> None:
    # Random junk mixed with valid pieces: each backend ends with commands
    # and/or one violation, never an exception, with the buffer bounded; and
    # both backends, whole or in random chunks, agree on the outcome.
    rng = random.Random(4242)
    pieces = [b"*", b"$", b"\r\n", b"\r", b"\n", b"1", b"3", b"-1", b"0", b"PING", b" ",
              b'"', b"'", b"\x00", b"+", b":", cmd(b"PING"), cmd(b"SET", b"a", b"b"),
              b"*2\r\n", b"$3\r\n", b"$1\r\nx\r\n"]
    backends = [False, True] if resp.HIREDIS_AVAILABLE else [False]
    for _ in range(400):
        data = b"".join(rng.choice(pieces) if rng.random() < 0.8 else bytes([rng.randrange(256)])
                        for _ in range(rng.randrange(1, 40)))
        outcomes = set()
        for backend in backends:
            outcome = parse_whole(data, backend, max_bulk=64)
            outcomes.add(repr(outcome))
            parser = RespParser(64, use_hiredis=backend)
            commands: list[list[bytes]] = []
            violation = None
            offset = 0
            while offset < len(data) and violation is None:
                step = rng.randrange(1, 8)
                parser.receive_data(data[offset:offset + step])
                offset += step
                got, violation = parser.next_commands()
                commands += got
                assert parser.buffered <= parser.max_query
            outcomes.add(repr((commands, violation.message if violation else None)))
        assert len(outcomes) == 1, (data, outcomes)


arguments = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(st.lists(arguments, min_size=1, max_size=8), st.integers(1, 50), st.booleans())
def test_round_trip(commands: list[list[bytes]], chunk: int, use_hiredis: bool) -> None:
    use_hiredis = use_hiredis and resp.HIREDIS_AVAILABLE
    data = b"".join(encode_command(c) for c in commands)
    parser = RespParser(use_hiredis=use_hiredis)
    got: list[list[bytes]] = []
    for offset in range(0, len(data), chunk):
        parser.receive_data(data[offset:offset + chunk])
        parsed, violation = parser.next_commands()
        assert violation is None
        got += parsed
    assert got == commands
    assert not parser.busy


# -- event API ---------------------------------------------------------------------

def test_next_event_sequence(hiredis: bool) -> None:
    parser = RespParser(use_hiredis=hiredis)
    assert parser.next_event() is NEED_DATA
    parser.receive_data(cmd(b"PING") + cmd(b"GET", b"k") + b"*1\r\n$4\r\nPI")
    assert parser.next_event() == [b"PING"]
    assert parser.next_event() == [b"GET", b"k"]
    assert parser.next_event() is NEED_DATA
    assert parser.busy
    parser.receive_data(b"NG\r\n")
    assert parser.next_event() == [b"PING"]
    assert not parser.busy
    parser.receive_data(b"")
    assert parser.next_event() is CLOSED


def test_parser_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        RespParser(0)
    with pytest.raises(ValueError):
        RespParser(1000, max_query=1000)


# -- inline splitting (sdssplitargs) -----------------------------------------------------

@pytest.mark.parametrize(("line", "args"), [
    (b"", []),
    (b"   ", []),
    (b"a b  c", [b"a", b"b", b"c"]),
    (b'"a b" c', [b"a b", b"c"]),
    (b'"\\x41\\x4a\\n\\r\\t\\b\\a\\q\\"\\\\"', [b"AJ\n\r\t\b\aq\"\\"]),
    (b'"\\x4g"', [b"x4g"]),                  # not two hex digits: \x is just x
    (b"'it\\'s' 'a\\nb'", [b"it's", b"a\\nb"]),   # single quotes: only \' escapes
    (b'""', [b""]),
    (b"''", [b""]),
    (b'ab"c d"e', None),                       # closing quote must end the argument
    (b'ab"c d" e', [b"abc d", b"e"]),          # a quote may start mid-argument
    (b"a\x00 b", [b"a"]),                     # NUL ends the line (a C string in Redis)
    (b"a\x0bb", [b"a\x0bb"]),                 # \v separates nothing inside a word
    (b"\x0ba", [b"a"]),                       # ...but is skipped before one
    (b'"abc', None),
    (b"'abc", None),
    (b'"abc\\"', None),
])
def test_split_inline(line: bytes, args: list[bytes] | None) -> None:
    assert split_inline(line) == args


# -- replies -------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "resp2", "resp3"), [
    (b"hello", b"$5\r\nhello\r\n", b"$5\r\nhello\r\n"),
    (b"", b"$0\r\n\r\n", b"$0\r\n\r\n"),
    ("héllo", b"$6\r\nh\xc3\xa9llo\r\n", b"$6\r\nh\xc3\xa9llo\r\n"),
    (SimpleString("OK"), b"+OK\r\n", b"+OK\r\n"),
    (resp.ErrorReply("ERR bad\r\nthing"), b"-ERR bad  thing\r\n", b"-ERR bad  thing\r\n"),
    (42, b":42\r\n", b":42\r\n"),
    (-1, b":-1\r\n", b":-1\r\n"),
    (None, b"$-1\r\n", b"_\r\n"),
    (True, b":1\r\n", b"#t\r\n"),
    (False, b":0\r\n", b"#f\r\n"),
    (1.5, b"$3\r\n1.5\r\n", b",1.5\r\n"),
    (3.0, b"$1\r\n3\r\n", b",3\r\n"),
    (float("inf"), b"$3\r\ninf\r\n", b",inf\r\n"),
    (float("-inf"), b"$4\r\n-inf\r\n", b",-inf\r\n"),
    ([b"a", None, 1], b"*3\r\n$1\r\na\r\n$-1\r\n:1\r\n", b"*3\r\n$1\r\na\r\n_\r\n:1\r\n"),
    ([], b"*0\r\n", b"*0\r\n"),
    ({b"k": 1}, b"*2\r\n$1\r\nk\r\n:1\r\n", b"%1\r\n$1\r\nk\r\n:1\r\n"),
    (Map([(b"a", [b"b"])]), b"*2\r\n$1\r\na\r\n*1\r\n$1\r\nb\r\n",
     b"%1\r\n$1\r\na\r\n*1\r\n$1\r\nb\r\n"),
    (RespSet([b"x"]), b"*1\r\n$1\r\nx\r\n", b"~1\r\n$1\r\nx\r\n"),
    (Push([b"x"]), b"*1\r\n$1\r\nx\r\n", b">1\r\n$1\r\nx\r\n"),
    (Verbatim("a:1\r\n"), b"$5\r\na:1\r\n\r\n", b"=9\r\ntxt:a:1\r\n\r\n"),
])
def test_encode(value: object, resp2: bytes, resp3: bytes) -> None:
    assert encode(value, 2) == resp2
    assert encode(value, 3) == resp3


def test_encode_null_forms() -> None:
    assert resp.encode_null(2) == b"$-1\r\n"
    assert resp.encode_null(2, array=True) == b"*-1\r\n"
    assert resp.encode_null(3) == b"_\r\n"
    assert resp.encode_null(3, array=True) == b"_\r\n"
    assert encode(float("nan"), 3) == b",nan\r\n"


def test_encode_rejects_unknown_types() -> None:
    with pytest.raises(TypeError):
        encode(object())


@pytest.mark.skipif(not resp.HIREDIS_AVAILABLE, reason="hiredis not installed")
def test_replies_parse_with_a_real_resp3_reader() -> None:
    # hiredis's reply parser (what redis-py uses) reads our RESP3 back.
    import hiredis

    value = Map([(b"server", b"redis"), (b"proto", 3), (b"ok", True), (b"pi", 3.25),
                 (b"none", None), (b"list", [b"a", RespSet([b"b"])]),
                 (b"info", Verbatim("# Server\r\n"))])
    reader = hiredis.Reader()
    reader.feed(encode(value, 3))
    assert reader.gets() == {b"server": b"redis", b"proto": 3, b"ok": True, b"pi": 3.25,
                             b"none": None, b"list": [b"a", [b"b"]],
                             b"info": b"# Server\r\n"}


@pytest.mark.parametrize(("head", "message"), [
    (b"PING\x00\r\n", "Protocol error: too big inline request"),
    (b"*1\x00\r\n", "Protocol error: too big mbulk count string"),
    (b"*1\r\n$\x004\r\nPING\r\n", "Protocol error: too big bulk count string"),
    (b"*1\r\nx\x00\r\n", "Protocol error: too big bulk count string"),
])
def test_nul_before_line_end_stalls_like_redis(hiredis: bool, head: bytes, message: str) -> None:
    # Redis finds line ends with strchr(), which stops at NUL: a NUL before
    # the line end means "no line end yet", so nothing runs and the request
    # waits until the 64 KiB limit makes it a protocol error.
    assert parse(head + cmd(b"PING"), hiredis) == ([], None)
    assert parse_whole(head + b"A" * PROTO_INLINE_MAX_SIZE, hiredis) == ([], message)


def test_nul_after_line_end_is_data(hiredis: bool) -> None:
    assert parse(b"PING\r\n\x00", hiredis) == ([[b"PING"]], None)
    assert parse(cmd(b"ECHO", b"\x00\r\n") + cmd(b"PING"), hiredis) == (
        [[b"ECHO", b"\x00\r\n"], [b"PING"]], None)


def test_large_value_in_chunks(hiredis: bool) -> None:
    value = bytes(range(256)) * 8192  # 2 MiB, above the copy-once threshold
    data = cmd(b"SET", b"k", value) + cmd(b"PING")
    parser = RespParser(use_hiredis=hiredis)
    got: list[list[bytes]] = []
    for offset in range(0, len(data), 65536):
        parser.receive_data(data[offset:offset + 65536])
        commands, violation = parser.next_commands()
        assert violation is None
        got += commands
        assert parser.buffered <= len(data) + 4096
    assert got == [[b"SET", b"k", value], [b"PING"]]
