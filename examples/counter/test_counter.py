"""Tests of the counter service: the session without sockets, then real servers.

    pytest examples/counter

The end-to-end tests use the ``sockworks_server`` fixture of sockworks'
pytest plugin (installed with sockworks: nothing to configure).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from io import BufferedReader

import pytest

from counter import CounterService, CounterSession, CounterTable
from sockworks import Output, Server


class FakeClock:
    """Time that moves only when the test says so: expiry without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def new_session(ttl: float = 60.0, max_counters: int = 100,
                clock: Callable[[], float] | None = None) -> CounterSession:
    return CounterSession(CounterTable(ttl, max_counters, clock or FakeClock()))


# -- the session: bytes in, Output out --------------------------------------

def test_incr_and_get() -> None:
    session = new_session()
    assert session.on_data(b"INCR apples\n") == Output(b"1\n")
    assert session.on_data(b"INCR apples\n") == Output(b"2\n")
    assert session.on_data(b"GET apples\n") == Output(b"2\n")
    assert session.on_data(b"GET pears\n") == Output(b"0\n")


def test_pipelined_requests_get_one_output_in_order() -> None:
    session = new_session()
    out = session.on_data(b"INCR a\r\nINCR a\r\nincr b\r\nGET a\r\n")
    assert out == Output(b"1\n2\n1\n2\n")


def test_a_request_split_anywhere() -> None:
    session = new_session()
    for byte in b"INCR slow":
        assert session.on_data(bytes([byte])) == Output(b"")
        assert session.busy  # part of a request is buffered
    assert session.on_data(b"\n") == Output(b"1\n")
    assert not session.busy


def test_counts_expire_ttl_after_the_last_incr() -> None:
    clock = FakeClock()
    session = new_session(ttl=10.0, clock=clock)
    session.on_data(b"INCR visits\n")
    clock.now += 9.0
    assert session.on_data(b"INCR visits\n") == Output(b"2\n")  # deadline moves on
    clock.now += 9.0
    assert session.on_data(b"GET visits\n") == Output(b"2\n")
    clock.now += 1.0
    assert session.on_data(b"GET visits\n") == Output(b"0\n")
    assert session.on_data(b"INCR visits\n") == Output(b"1\n")


def test_the_number_of_counters_is_bounded() -> None:
    clock = FakeClock()
    session = new_session(ttl=10.0, max_counters=2, clock=clock)
    assert session.on_data(b"INCR a\nINCR b\n") == Output(b"1\n1\n")
    assert session.on_data(b"INCR c\n") == Output(b"ERROR: too many counters\n")
    assert session.on_data(b"INCR a\n") == Output(b"2\n")  # existing names still count
    clock.now += 10.0  # a and b expire: room again
    assert session.on_data(b"INCR c\n") == Output(b"1\n")


@pytest.mark.parametrize(("line", "reply"), [
    (b"\n", b"ERROR: empty line\n"),
    (b"   \r\n", b"ERROR: empty line\n"),
    (b"DECR a\n", b"ERROR: unknown command (INCR, GET, QUIT)\n"),
    (b"INCR\n", b"ERROR: usage: INCR name\n"),
    (b"get a b\n", b"ERROR: usage: GET name\n"),
    (b"INCR " + b"n" * 65 + b"\n", b"ERROR: name longer than 64 bytes\n"),
])
def test_bad_input_gets_an_error_and_the_connection_stays(line: bytes, reply: bytes) -> None:
    session = new_session()
    assert session.on_data(line) == Output(reply)
    assert session.on_data(b"INCR ok\n") == Output(b"1\n")


def test_over_long_line_is_refused_and_its_tail_never_runs() -> None:
    session = new_session()
    out = session.on_data(b"INCR a\n" + b"x" * 300 + b" INCR a\nINCR a\n")
    assert out == Output(b"1\nERROR: line too long\n", close=True)
    assert session.on_data(b"INCR a\n") == Output(close=True)


def test_quit_says_bye_closes_and_ignores_the_rest() -> None:
    session = new_session()
    assert session.on_data(b"INCR a\nQUIT\nINCR a\n") == Output(b"1\nBYE\n", close=True)
    assert session.on_data(b"GET a\n") == Output(close=True)


def test_half_close_closes_once_replies_are_out() -> None:
    session = new_session()
    assert session.on_data(b"INCR a\nINCR") == Output(b"1\n")
    assert session.on_eof() == Output(close=True)  # the unterminated line is not run


def test_sessions_on_many_threads_lose_no_increment() -> None:
    table = CounterTable(ttl=60.0, max_counters=10)
    threads, per_thread = 8, 500

    def client() -> None:
        session = CounterSession(table)  # one session per thread, as the models do
        for _ in range(per_thread):
            session.on_data(b"INCR shared\n")

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
        assert not worker.is_alive()
    assert table.get(b"shared") == threads * per_thread


def test_service_checks_its_settings() -> None:
    with pytest.raises(ValueError, match="ttl must be > 0"):
        CounterService(ttl=0)
    with pytest.raises(ValueError, match="max_counters must be >= 1"):
        CounterService(max_counters=0)


# -- end to end: a real server, real sockets ---------------------------------

def ask(sock: socket.socket, reader: BufferedReader, request: bytes = b"") -> bytes:
    """Send a request (if any) and read one reply line; the socket has a
    timeout, and the line is read up to 128 bytes at most."""
    if request:
        sock.sendall(request)
    return reader.readline(128)


@pytest.mark.parametrize("model", ["thread", "pool", "asyncio"])
def test_end_to_end(sockworks_server: Callable[..., Server], model: str) -> None:
    server = sockworks_server(CounterService(), model=model)
    address = server.addresses[0]
    with socket.create_connection(address, timeout=10) as one, one.makefile("rb") as one_in, \
            socket.create_connection(address, timeout=10) as two, two.makefile("rb") as two_in:
        assert ask(one, one_in, b"INCR hits\n") == b"1\n"
        assert ask(two, two_in, b"INCR hits\n") == b"2\n"  # one table for all connections
        one.sendall(b"INCR hits\nGET hits\n")  # pipelined: two replies, in order
        assert ask(one, one_in) == b"3\n"
        assert ask(one, one_in) == b"3\n"
        assert ask(two, two_in, b"FLY away\n").startswith(b"ERROR: unknown command")
        assert ask(two, two_in, b"QUIT\n") == b"BYE\n"
        assert two_in.read(1) == b""  # the server closed the connection
        assert ask(one, one_in, b"GET hits\n") == b"3\n"
