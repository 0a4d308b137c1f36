"""The echo session with no sockets: bytes in, Output out."""

from __future__ import annotations

from sockworks.services.echo import EchoService


def test_uppercases_each_line_and_batches_replies() -> None:
    session = EchoService().new_session("peer")
    assert session.on_connect().data == b""
    out = session.on_data(b"a\nb\nc")
    assert out.data == b"A\nB\n" and not out.close
    assert session.busy  # "c" is a request in flight
    out = session.on_data(b"\n")
    assert out.data == b"C\n" and not session.busy


def test_transform_none_and_non_ascii_bytes() -> None:
    session = EchoService(transform="none").new_session("p")
    assert session.on_data(b"Mixed \xff\xfe\n").data == b"Mixed \xff\xfe\n"
    session = EchoService().new_session("p")
    assert session.on_data(b"caf\xc3\xa9\n").data == b"CAF\xc3\xa9\n"


def test_too_long_closes_and_keeps_earlier_replies() -> None:
    session = EchoService(max_line=8).new_session("p")
    out = session.on_data(b"ok\n" + b"x" * 20 + b"\nnext\n")
    assert out.data == b"OK\nERROR: line too long\n"
    assert out.close


def test_eof_answers_final_unterminated_line_then_closes() -> None:
    session = EchoService().new_session("p")
    session.on_data(b"last")
    out = session.on_eof()
    assert out.data == b"LAST" and out.close
    assert EchoService().new_session("p").on_eof().close
