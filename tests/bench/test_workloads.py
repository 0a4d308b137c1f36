"""Workload codecs with no sockets: requests out, replies in, whole and one
byte at a time; errors told apart by kind."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockworks.bench.workloads import (
    RING_MIN,
    KvConversation,
    ProtocolMismatch,
    RespConversation,
    ServerBusy,
    TcpConversation,
    UdpConversation,
    WorkloadSpec,
    build_ring,
    new_tcp_conversation,
    ring_size,
)


def conversation(name: str, seed: int = 1, **options: object) -> TcpConversation:
    spec = WorkloadSpec(name=name, seed=seed, **options)  # type: ignore[arg-type]
    rng = random.Random(seed)
    return new_tcp_conversation(spec, build_ring(spec, rng), rng)


def feed_whole(conv: TcpConversation, data: bytes) -> int:
    return conv.feed(data)


def feed_bytewise(conv: TcpConversation, data: bytes) -> int:
    return sum(conv.feed(data[i:i + 1]) for i in range(len(data)))


Feeder = Callable[[TcpConversation, bytes], int]
FEEDERS: list[Feeder] = [feed_whole, feed_bytewise]


# -- a tiny reference server for each text protocol (the oracle) -----------

def kv_replies(batch: bytes, store: dict[bytes, bytes]) -> bytes:
    out = []
    for line in batch.split(b"\n")[:-1]:
        parts = line.split(None, 2)
        if parts[0] == b"SET":
            store[parts[1]] = parts[2]
            out.append(b"OK\n")
        else:
            out.append(store.get(parts[1], b"NOT_FOUND") + b"\n")
    return b"".join(out)


def resp_commands(batch: bytes) -> list[list[bytes]]:
    commands = []
    rest = batch
    while rest:
        header, rest = rest.split(b"\r\n", 1)
        assert header[:1] == b"*"
        args = []
        for _ in range(int(header[1:])):
            length_line, rest = rest.split(b"\r\n", 1)
            length = int(length_line[1:])
            args.append(rest[:length])
            assert rest[length:length + 2] == b"\r\n"
            rest = rest[length + 2:]
        commands.append(args)
    return commands


def resp_replies(batch: bytes, store: dict[bytes, bytes], null: bytes = b"$-1\r\n") -> bytes:
    out = []
    for command in resp_commands(batch):
        if command[0] == b"SET":
            store[command[1]] = command[2]
            out.append(b"+OK\r\n")
        elif command[1] in store:
            value = store[command[1]]
            out.append(b"$%d\r\n%s\r\n" % (len(value), value))
        else:
            out.append(null)
    return b"".join(out)


# -- echo ------------------------------------------------------------------

@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize("depth", [1, 3, 16])
def test_echo_uppercased_replies_complete_the_batch(feed: Feeder, depth: int) -> None:
    conv = conversation("echo", value_size=24)
    for _ in range(3):
        batch = conv.next_batch(depth)
        assert batch.count(b"\n") == depth
        assert all(len(line) == 24 for line in batch.split(b"\n")[:-1])
        assert conv.outstanding() == depth
        assert feed(conv, batch.upper()) == depth
        assert conv.outstanding() == 0


def test_echo_same_mode_and_wrong_case() -> None:
    same = conversation("echo", expect="same")
    batch = same.next_batch(2)
    assert same.feed(batch) == 2
    upper = conversation("echo")
    batch = upper.next_batch(1)
    with pytest.raises(ProtocolMismatch, match="does not match"):
        upper.feed(batch)  # not uppercased


def test_echo_partial_batch_counts_complete_lines() -> None:
    conv = conversation("echo")
    reply = conv.next_batch(3).upper()
    first_line_end = reply.index(b"\n") + 1
    assert conv.feed(reply[:first_line_end + 2]) == 1
    assert conv.outstanding() == 2
    assert conv.feed(reply[first_line_end + 2:]) == 2


def test_echo_busy_and_unsolicited() -> None:
    conv = conversation("echo")
    conv.next_batch(1)
    with pytest.raises(ServerBusy):
        conv.feed(b"ERROR: server busy\n")
    conv = conversation("echo")
    reply = conv.next_batch(1).upper()
    with pytest.raises(ProtocolMismatch, match="unsolicited"):
        conv.feed(reply + b"EXTRA\n")


# -- kv text protocol --------------------------------------------------------

@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize("depth", [1, 16])
def test_kv_requests_and_replies_against_a_dict_server(feed: Feeder, depth: int) -> None:
    conv = conversation("kv", keys=20, set_ratio=0.5)
    store: dict[bytes, bytes] = {}
    assert conv.awaiting_greeting
    assert feed(conv, b"READY\n") == 0
    assert not conv.awaiting_greeting
    sets = gets = 0
    for _ in range(20):
        batch = conv.next_batch(depth)
        for line in batch.split(b"\n")[:-1]:
            op, key, *value = line.split(b" ")
            assert key.startswith(b"key:") and 0 <= int(key[4:]) < 20
            if op == b"SET":
                sets += 1
                assert value == [b"v" * 16]
            else:
                gets += 1
                assert op == b"GET" and value == []
        assert feed(conv, kv_replies(batch, store)) == depth
        assert conv.outstanding() == 0
    assert sets and gets


def test_kv_greeting_and_first_reply_in_one_read() -> None:
    conv = conversation("kv", set_ratio=1.0)
    conv.next_batch(1)
    assert conv.feed(b"READY\nOK\n") == 1


def test_kv_counts_error_replies_and_tells_busy_and_garbage_apart() -> None:
    conv = conversation("kv", set_ratio=1.0)
    conv.feed(b"READY\n")
    conv.next_batch(2)
    assert conv.feed(b"ERROR: disk full\nOK\n") == 2
    assert conv.error_replies == 1
    conv.next_batch(1)
    with pytest.raises(ProtocolMismatch, match="SET answered"):
        conv.feed(b"NOT_FOUND\n")
    busy = conversation("kv")
    with pytest.raises(ServerBusy):
        busy.feed(b"ERROR: server busy\n")
    http = conversation("kv")
    with pytest.raises(ProtocolMismatch, match="READY"):
        http.feed(b"HTTP/1.1 400 Bad Request\r\n")


def test_kv_get_of_a_foreign_value_is_a_reply_not_an_error() -> None:
    conv = conversation("kv", set_ratio=0.0)
    conv.feed(b"READY\r\n")
    conv.next_batch(1)
    assert conv.feed(b"some other value of another size\n") == 1
    assert conv.error_replies == 0


def test_kv_unsolicited_reply_is_a_mismatch() -> None:
    conv = conversation("kv", set_ratio=1.0)
    conv.feed(b"READY\n")
    conv.next_batch(1)
    with pytest.raises(ProtocolMismatch, match="unsolicited"):
        conv.feed(b"OK\nOK\n")


# -- RESP --------------------------------------------------------------------

@pytest.mark.parametrize("feed", FEEDERS)
@pytest.mark.parametrize("null", [b"$-1\r\n", b"_\r\n"])
@pytest.mark.parametrize("depth", [1, 16])
def test_resp_against_a_dict_server(feed: Feeder, null: bytes, depth: int) -> None:
    conv = conversation("resp", keys=30, value_size=5)
    store: dict[bytes, bytes] = {}
    for _ in range(20):
        batch = conv.next_batch(depth)
        commands = resp_commands(batch)
        assert len(commands) == depth
        for command in commands:
            assert command[0] in (b"SET", b"GET")
            if command[0] == b"SET":
                assert command[2] == b"vvvvv"
        assert feed(conv, resp_replies(batch, store, null)) == depth


@pytest.mark.parametrize("feed", FEEDERS)
def test_resp_general_replies_on_the_slow_path(feed: Feeder) -> None:
    conv = conversation("resp", set_ratio=0.0)
    conv.next_batch(3)
    # A value with CRLF inside, an empty value, an error reply.
    data = b"$4\r\na\r\nb\r\n$0\r\n\r\n-ERR something\r\n"
    assert feed(conv, data) == 3
    assert conv.error_replies == 1


@pytest.mark.parametrize("reply, kind", [
    (b"-ERR max number of clients reached\r\n", ServerBusy),
    (b":1\r\n", ProtocolMismatch),
    (b"$abc\r\n", ProtocolMismatch),
    (b"$3\r\nabcXY", ProtocolMismatch),
    (b"+PONG\r\n", ProtocolMismatch),
])
def test_resp_bad_replies(reply: bytes, kind: type[Exception]) -> None:
    conv = conversation("resp", set_ratio=0.0)
    conv.next_batch(1)
    with pytest.raises(kind):
        conv.feed(reply)


def test_resp_set_answered_with_bulk_is_a_mismatch() -> None:
    conv = conversation("resp", set_ratio=1.0)
    conv.next_batch(1)
    with pytest.raises(ProtocolMismatch, match="SET"):
        conv.feed(b"$-1\r\n")


def test_resp_incomplete_bulk_waits_for_more() -> None:
    conv = conversation("resp", set_ratio=0.0, value_size=4)
    conv.next_batch(1)
    assert conv.feed(b"$4\r\nvv") == 0
    assert conv.feed(b"vv\r") == 0
    assert conv.feed(b"\n") == 1


# -- the ring ----------------------------------------------------------------

def test_ring_mixes_sets_and_covers_the_keyspace() -> None:
    spec = WorkloadSpec(name="kv", keys=1000, set_ratio=0.25, seed=3)
    ring = build_ring(spec, random.Random(3))
    assert len(ring) == ring_size(spec) == 4096
    share = sum(ring.kinds) / len(ring)
    assert 0.2 < share < 0.3
    keys = {req.split()[1] for req in ring.requests}
    assert len(keys) > 950


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=64), st.integers(min_value=0, max_value=2**32))
def test_batches_wrap_around_the_ring(depth: int, seed: int) -> None:
    conv = conversation("kv", seed=seed, keys=10)
    conv.feed(b"READY\n")
    store: dict[bytes, bytes] = {}
    for _ in range(RING_MIN // depth + 2):
        batch = conv.next_batch(depth)
        assert batch.count(b"\n") == depth
        assert conv.feed(kv_replies(batch, store)) == depth


def test_spec_validation() -> None:
    with pytest.raises(ValueError):
        WorkloadSpec(name="http")
    with pytest.raises(ValueError):
        WorkloadSpec(set_ratio=1.5)
    with pytest.raises(ValueError):
        WorkloadSpec(keys=0)
    with pytest.raises(ValueError):
        conversation("echo").next_batch(RING_MIN + 1)


# -- UDP ---------------------------------------------------------------------

def udp(**options: object) -> UdpConversation:
    spec = WorkloadSpec(name="udp", **options)  # type: ignore[arg-type]
    return UdpConversation(spec, random.Random(5))


def test_udp_ping_replies_matched_by_id_in_any_order() -> None:
    conv = udp()
    datagrams = conv.next_batch(3)
    requests = [json.loads(d) for d in datagrams]
    assert {r["type"] for r in requests} == {"ping"}
    ids = [r["id"] for r in requests]
    assert len(set(ids)) == 3
    for ident in reversed(ids):
        assert conv.feed(json.dumps({"pong": True, "id": ident}).encode()) == 1
    assert conv.outstanding() == 0
    # A late duplicate of an old batch is ignored, not an error.
    conv.next_batch(1)
    assert conv.feed(json.dumps({"pong": True, "id": ids[0]}).encode()) == 0


def test_udp_time_replies_without_id_match_in_order() -> None:
    conv = udp(request_type="time")
    datagrams = conv.next_batch(2)
    assert json.loads(datagrams[0])["type"] == "time"
    assert conv.feed(b'{"time": "2024-01-01 00:00:00"}') == 1
    assert conv.feed(b'{"time": "2024-01-01 00:00:01"}') == 1
    assert conv.feed(b'{"time": "2024-01-01 00:00:02"}') == 0


def test_udp_errors() -> None:
    conv = udp()
    ident = json.loads(conv.next_batch(1)[0])["id"]
    assert conv.feed(json.dumps({"error": "rate limited", "id": ident}).encode()) == 1
    assert conv.error_replies == 1
    conv.next_batch(1)
    with pytest.raises(ProtocolMismatch, match="not JSON"):
        conv.feed(b"\xff\xfe")
    with pytest.raises(ProtocolMismatch, match="not a JSON object"):
        conv.feed(b"[1]")
    with pytest.raises(ProtocolMismatch, match="ping answered"):
        conv.feed(b'{"error_free": 1}')
    with pytest.raises(ServerBusy):
        conv.feed(b'{"error": "server busy"}')


def test_kv_conversation_classes() -> None:
    assert isinstance(conversation("kv"), KvConversation)
    assert isinstance(conversation("resp"), RespConversation)


# -- whole-batch checking (pipelines of 4 and more) ------------------------

def mixed_batch(conv: TcpConversation, depth: int) -> bytes:
    """A batch with at least one SET and one GET."""
    for _ in range(1000):
        batch = conv.next_batch(depth)
        if b"SET" in batch and b"GET" in batch:
            return batch
        conv.feed(b"OK\n" * batch.count(b"SET") + b"NOT_FOUND\n" * batch.count(b"GET")
                  if b"\r\n" not in batch else
                  b"+OK\r\n" * batch.count(b"SET") + b"$-1\r\n" * batch.count(b"GET"))
    raise AssertionError("no mixed batch")


@pytest.mark.parametrize("name", ["kv", "resp"])
def test_replies_in_the_wrong_order_are_caught_in_a_whole_batch(name: str) -> None:
    conv = conversation(name, keys=5)
    if name == "kv":
        conv.feed(b"READY\n")
    batch = mixed_batch(conv, 8)
    if name == "kv":
        lines = batch.split(b"\n")[:-1]
        replies = [b"OK\n" if line.startswith(b"SET") else b"NOT_FOUND\n" for line in lines]
    else:
        commands = resp_commands(batch)
        replies = [b"+OK\r\n" if c[0] == b"SET" else b"$-1\r\n" for c in commands]
    first_set = next(i for i, r in enumerate(replies) if b"OK" in r)
    first_get = next(i for i, r in enumerate(replies) if b"OK" not in r)
    replies[first_set], replies[first_get] = replies[first_get], replies[first_set]
    with pytest.raises(ProtocolMismatch):
        conv.feed(b"".join(replies))


@pytest.mark.parametrize("name", ["kv", "resp"])
def test_error_reply_inside_a_whole_batch_is_counted(name: str) -> None:
    conv = conversation(name, set_ratio=0.0)
    if name == "kv":
        conv.feed(b"READY\n")
    conv.next_batch(8)
    error = b"ERROR: no\n" if name == "kv" else b"-ERR no\r\n"
    miss = b"NOT_FOUND\n" if name == "kv" else b"_\r\n"
    assert conv.feed(miss * 3 + error + miss * 4) == 8
    assert conv.error_replies == 1
    assert conv.outstanding() == 0


def test_whole_batch_split_over_reads_still_counts_every_reply() -> None:
    conv = conversation("resp", set_ratio=0.5, keys=3, value_size=3)
    store: dict[bytes, bytes] = {}
    for _ in range(50):
        batch = conv.next_batch(16)
        replies = resp_replies(batch, store)
        cut = len(replies) // 3
        assert conv.feed(replies[:cut]) + conv.feed(replies[cut:]) == 16


@pytest.mark.parametrize("name", ["echo", "kv", "resp"])
@pytest.mark.parametrize("depth", [2, 7, 16])
def test_pre_joined_batches_match_the_ring(name: str, depth: int) -> None:
    spec = WorkloadSpec(name=name, keys=7, seed=2)
    rng = random.Random(2)
    ring = build_ring(spec, rng, depth)
    assert len(ring) % depth == 0 and len(ring) >= ring_size(spec)
    assert len(ring.batches) == len(ring) // depth
    for j in (0, len(ring.batches) - 1):
        assert ring.batches[j] == b"".join(ring.requests[j * depth:(j + 1) * depth])
    conv = new_tcp_conversation(spec, ring, rng)
    if name == "kv":
        conv.feed(b"READY\n")
    store: dict[bytes, bytes] = {}
    # Twice round the ring: every batch, and the wrap back to the start.
    for _ in range(2 * len(ring.batches) + 1):
        batch = conv.next_batch(depth)
        if name == "echo":
            replies = batch.upper()
        elif name == "kv":
            replies = kv_replies(batch, store)
        else:
            replies = resp_replies(batch, store)
        assert conv.feed(replies) == depth
        assert conv.outstanding() == 0
