"""The UDP JSON codec with no sockets: datagrams in, datagrams out."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockworks.protocols import udpjson
from sockworks.protocols.udpjson import (
    AMPLIFICATION_FACTOR,
    DEFAULT_MAX_DATAGRAM,
    MAX_REPLY,
    NO_ID,
    PAD_TO,
    BadRequest,
    Request,
    decode,
    encode,
    respond,
)

NOW = datetime(2026, 11, 28, 5, 37, 8, 123456, tzinfo=timezone(timedelta(hours=1)))
COUNTERS = {"received": 10, "replied": 9, "errors": 1, "rate_limited": 0}


def pad(data: bytes, size: int = PAD_TO) -> bytes:
    """Trailing whitespace: valid JSON, and buys reply budget."""
    return data + b" " * max(0, size - len(data))


def answer(datagram: bytes, counters: Mapping[str, int] = COUNTERS,
           max_size: int = DEFAULT_MAX_DATAGRAM) -> dict[str, object] | None:
    reply = respond(datagram, now=NOW, counters=counters, max_size=max_size)
    if reply.data is None:
        return None
    assert len(reply.data) <= min(MAX_REPLY, AMPLIFICATION_FACTOR * len(datagram))
    doc = json.loads(reply.data)
    assert isinstance(doc, dict)
    return doc


def error_of(datagram: bytes, max_size: int = DEFAULT_MAX_DATAGRAM) -> object:
    doc = answer(datagram, max_size=max_size)
    assert doc is not None, f"no reply to {datagram[:60]!r}"
    return doc.get("error")


def test_module_is_sans_io() -> None:
    tree = ast.parse(Path(udpjson.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"socket", "asyncio", "threading", "selectors", "time"}


# --- good requests -------------------------------------------------------

def test_time_is_iso8601_with_timezone() -> None:
    doc = answer(b'{"type": "time"}')
    assert doc is not None
    parsed = datetime.fromisoformat(str(doc["time"]))
    assert parsed.tzinfo is not None
    assert parsed.utcoffset() == timedelta(hours=1)
    assert abs(parsed - NOW) < timedelta(milliseconds=1)


def test_time_needs_an_aware_clock() -> None:
    request = decode(b'{"type":"time"}')
    with pytest.raises(ValueError):
        udpjson.reply_body(request, now=datetime(2026, 1, 1), counters={})


def test_ping() -> None:
    assert answer(b'{"type":"ping"}') == {"pong": True}


def test_echo_returns_data() -> None:
    data = {"a": [1, 2.5, "x", None, True], "b": "é☃"}
    doc = answer(json.dumps({"type": "echo", "data": data}).encode())
    assert doc == {"data": data}


def test_echo_needs_data() -> None:
    assert error_of(pad(b'{"type":"echo"}')) == "missing data"


def test_stats_reports_the_counters_given() -> None:
    assert answer(pad(b'{"type":"stats"}')) == {"stats": COUNTERS}


@pytest.mark.parametrize("request_id", ["abc", 7, -1, 2.5, True, None, "x" * 64, "é" * 32])
def test_scalar_id_is_copied(request_id: object) -> None:
    doc = answer(pad(json.dumps({"type": "ping", "id": request_id}).encode()))
    assert doc == {"pong": True, "id": request_id}


def test_id_is_copied_into_errors_after_the_request_parsed() -> None:
    assert answer(pad(b'{"type":"nope","id":"q1"}')) == {"error": "unknown type", "id": "q1"}


@pytest.mark.parametrize("request_id", ["x" * 65, "é" * 33, [1], {"a": 1}, "\ud800"])
def test_unacceptable_id_is_refused_without_echoing_it(request_id: object) -> None:
    doc = answer(pad(json.dumps({"type": "ping", "id": request_id}).encode()))
    assert doc == {"error": "invalid id"}


def test_no_id_means_none_in_reply() -> None:
    request = decode(b'{"type":"ping"}')
    assert isinstance(request, Request) and request.id is NO_ID


def test_unknown_fields_are_ignored() -> None:
    assert answer(b'{"type":"ping","future":1}') == {"pong": True}


# --- bad requests --------------------------------------------------------

@pytest.mark.parametrize(("datagram", "error"), [
    (b"\xff\xfe{}", "invalid UTF-8"),
    (b'{"type": "ping", "x": "\xc3"}', "invalid UTF-8"),
    (b'{"type": "ping"', "invalid JSON"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "invalid JSON"),
    (b'{"type": "ping"} {"type": "ping"}', "invalid JSON"),
    (b"\xef\xbb\xbf" + b'{"type":"ping"}', "invalid JSON"),  # a BOM is not JSON
    (b"[1]", "request must be a JSON object"),
    (b'"x"', "request must be a JSON object"),
    (b"null", "request must be a JSON object"),
    (b"42", "request must be a JSON object"),
    (b"{}", "missing type"),
    (b'{"type": null}', "missing type"),
    (b'{"type": "nope"}', "unknown type"),
    (b'{"type": 1}', "unknown type"),
    (b'{"type": ["ping"]}', "unknown type"),
    (b'{"type": "ping", "n": NaN}', "NaN is not valid JSON"),
    (b'{"type": "ping", "n": Infinity}', "Infinity is not valid JSON"),
    (b'{"type": "ping", "n": -Infinity}', "-Infinity is not valid JSON"),
    (b'{"type": "ping", "n": 1e400}', "number out of range"),
    (b'{"type": "ping", "n": -1e400}', "number out of range"),
    (b'{"type": "ping", "n": ' + b"9" * 101 + b"}", "number too large"),
    (b'{"type": "ping", "n": 0.' + b"1" * 100 + b"}", "number too large"),
])
def test_bad_input_gets_a_specific_error(datagram: bytes, error: str) -> None:
    assert error_of(pad(datagram)) == error


def test_every_decode_result_is_an_event_never_an_exception() -> None:
    for datagram in (b"", b" ", b"\x00", b"{", b"}", b"]]]]", b'"\\', b'"\\u12'):
        assert isinstance(decode(datagram), BadRequest)


def test_deep_nesting_is_refused_before_parsing() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert error_of(deep, max_size=len(deep)) == "nesting too deep"
    deep_objects = b'{"a":' * 100_000
    assert error_of(deep_objects, max_size=len(deep_objects)) == "nesting too deep"
    # 100,000 opening brackets alone (the reply is tiny; the request is big).
    assert decode(b"[" * 100_000, max_size=200_000) == BadRequest("nesting too deep", 100_000)


def test_nesting_limit_is_exact() -> None:
    ok = b'{"type":"echo","data":' + b"[" * 31 + b"]" * 31 + b"}"
    assert answer(ok) == {"data": json.loads(b"[" * 31 + b"]" * 31)}
    too_deep = b'{"type":"echo","data":' + b"[" * 32 + b"]" * 32 + b"}"
    assert error_of(pad(too_deep)) == "nesting too deep"


def test_brackets_inside_strings_are_not_nesting() -> None:
    inner = "[" * 200 + '\\"{' * 50
    datagram = json.dumps({"type": "echo", "data": inner}).encode()
    assert answer(datagram) == {"data": json.loads(json.dumps(inner))}


def test_unterminated_string_full_of_brackets_is_invalid_json() -> None:
    assert error_of(pad(b'{"type":"ping","x":"' + b"[" * 200)) == "invalid JSON"


def test_huge_number_5000_digits() -> None:
    # Python 3.11's int() refuses over 4300 digits with ValueError; our own
    # bound answers first, and both paths give the same specific error.
    datagram = b'{"type":"ping","n":' + b"1" * 5000 + b"}"
    assert error_of(datagram, max_size=10_000) == "number too large"
    bare = b"1" * 100_000
    assert error_of(bare, max_size=len(bare)) == "number too large"


def test_datagram_too_large() -> None:
    big = b'{"type":"echo","data":"' + b"x" * 2000 + b'"}'
    assert error_of(big) == "datagram too large"
    # The server hands us limit+1 bytes of a larger datagram: still too large.
    assert error_of(big[:udpjson.DEFAULT_MAX_DATAGRAM + 1]) == "datagram too large"
    just_fits = pad(b'{"type":"ping"}', udpjson.DEFAULT_MAX_DATAGRAM)
    assert answer(just_fits) == {"pong": True}


@pytest.mark.parametrize("datagram", [b"[1]", b'"x"', b"null", b"x", b"", b"{}", b"\xff"])
def test_tiny_bad_requests_get_no_reply_rather_than_an_amplified_one(datagram: bytes) -> None:
    reply = respond(datagram, now=NOW, counters=COUNTERS)
    assert reply.data is None
    assert reply.error is not None


# --- amplification -------------------------------------------------------

def test_reply_too_large_says_how_much_to_pad() -> None:
    counters = {f"counter_{i}": 10**12 for i in range(10)}
    request = b'{"type":"stats","id":5}'
    reply = respond(request, now=NOW, counters=counters)
    assert reply.error == "reply too large"
    assert reply.data is not None
    doc = json.loads(reply.data)
    assert doc["error"] == "reply too large" and doc["id"] == 5
    padded = pad(request, doc["pad_to"])
    full = respond(padded, now=NOW, counters=counters)
    assert full.error is None and full.data is not None
    assert json.loads(full.data) == {"stats": counters, "id": 5}


def test_reply_over_the_absolute_cap_is_refused_even_for_a_big_request() -> None:
    counters = {f"counter_{i:03d}": 10**15 for i in range(100)}
    doc = answer(pad(b'{"type":"stats"}', 1200), counters=counters)
    assert doc == {"error": "reply too large"}


def test_echo_of_numbers_that_grow_when_reserialized_is_capped() -> None:
    # 1e15 (4 bytes) comes back as 1000000000000000.0 (18 bytes).
    request = b'{"type":"echo","data":[' + b",".join([b"1e15"] * 40) + b"]}"
    reply = respond(request, now=NOW, counters=COUNTERS)
    assert reply.data is not None
    assert len(reply.data) <= AMPLIFICATION_FACTOR * len(request)
    assert json.loads(reply.data)["error"] == "reply too large"


def test_lone_surrogate_in_echo_data_is_sent_back_escaped() -> None:
    doc = answer(b'{"type":"echo","data":"\\ud800x"}')
    assert doc == {"data": "\ud800x"}


def test_encode_drops_an_error_that_cannot_fit() -> None:
    assert encode({"error": "invalid JSON"}, request_size=3) is None
    assert encode({"pong": True}, request_size=5) == b'{"pong":true}'


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=80),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=30,
)
ids = st.one_of(st.just(NO_ID), json_values)


def _request(kind: str, request_id: object, data: object, indent: int | None,
             ascii_only: bool) -> bytes:
    doc: dict[str, object] = {"type": kind}
    if request_id is not NO_ID:
        doc["id"] = request_id
    if kind == "echo":
        doc["data"] = data
    text = json.dumps(doc, indent=indent, ensure_ascii=ascii_only,
                      separators=(",", ":") if indent is None else None)
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from((*udpjson.REQUEST_TYPES, "nope")), request_id=ids,
       data=json_values, indent=st.one_of(st.none(), st.integers(0, 3)),
       ascii_only=st.booleans(), padding=st.integers(0, 1300),
       counters=st.dictionaries(st.text(max_size=20), st.integers(0, 2**63), max_size=30))
def test_amplification_rule_holds_for_every_request_type(
        kind: str, request_id: object, data: object, indent: int | None,
        ascii_only: bool, padding: int, counters: dict[str, int]) -> None:
    datagram = _request(kind, request_id, data, indent, ascii_only) + b" " * padding
    reply = respond(datagram, now=NOW, counters=counters)
    if reply.data is not None:
        assert len(reply.data) <= min(MAX_REPLY, AMPLIFICATION_FACTOR * len(datagram))
        doc = json.loads(reply.data)
        assert isinstance(doc, dict)
        if reply.error is None:
            assert set(doc) - {"id"} <= {"time", "pong", "data", "stats"}
        else:
            assert doc["error"] == reply.error


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1400))
def test_arbitrary_bytes_never_raise_and_never_amplify(datagram: bytes) -> None:
    reply = respond(datagram, now=NOW, counters=COUNTERS)
    if reply.data is not None:
        assert len(reply.data) <= min(MAX_REPLY, AMPLIFICATION_FACTOR * len(datagram))
        json.loads(reply.data)


def test_padded_client_requests_always_get_the_full_reply() -> None:
    # What the udp-client relies on: at PAD_TO bytes any reply <= MAX_REPLY fits.
    assert AMPLIFICATION_FACTOR * PAD_TO >= MAX_REPLY
    doc = answer(pad(b'{"type":"stats","id":"abc"}'))
    assert doc == {"stats": COUNTERS, "id": "abc"}
