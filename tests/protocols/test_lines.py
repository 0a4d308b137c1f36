"""LineFramer: bytes in, lines out; fed whole and one byte at a time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sockworks.protocols.lines import CLOSED, LINE_TOO_LONG, NEED_DATA, LineFramer


def drain(framer: LineFramer) -> list[object]:
    events: list[object] = []
    while True:
        event = framer.next_event()
        events.append(event)
        if event in (NEED_DATA, CLOSED, LINE_TOO_LONG):
            return events


def feed(data: bytes, max_line: int, *, byte_by_byte: bool, eof: bool = False) -> list[object]:
    framer = LineFramer(max_line)
    events: list[object] = []
    chunks = [data[i:i + 1] for i in range(len(data))] if byte_by_byte else [data] * bool(data)
    for chunk in chunks:
        framer.receive_data(chunk)
        events.extend(e for e in drain(framer) if e is not NEED_DATA)
        if events and events[-1] is LINE_TOO_LONG:
            return events
    if eof:
        framer.receive_data(b"")
        events.extend(drain(framer))
    return events


def test_lines_split_on_newline_whole_and_bytewise() -> None:
    data = b"one\ntwo\r\n\nthree\n"
    expected = [b"one", b"two\r", b"", b"three"]
    assert feed(data, 100, byte_by_byte=False) == expected
    assert feed(data, 100, byte_by_byte=True) == expected


def test_unterminated_tail_is_reported_at_close_not_as_a_line() -> None:
    framer = LineFramer(100)
    framer.receive_data(b"a\npartial")
    assert framer.next_event() == b"a"
    assert framer.next_event() is NEED_DATA
    assert framer.buffered == len(b"partial")
    framer.receive_data(b"")
    assert framer.next_event() is CLOSED
    assert framer.trailing == b"partial"


def test_line_at_limit_ok_one_over_refused() -> None:
    assert feed(b"x" * 10 + b"\n", 10, byte_by_byte=False) == [b"x" * 10]
    assert feed(b"x" * 11 + b"\n", 10, byte_by_byte=False) == [LINE_TOO_LONG]


def test_over_long_line_without_newline_fails_before_newline_arrives() -> None:
    framer = LineFramer(10)
    framer.receive_data(b"y" * 11)
    assert framer.next_event() is LINE_TOO_LONG


def test_tail_of_over_long_line_never_becomes_a_line() -> None:
    for bytewise in (False, True):
        events = feed(b"z" * 50 + b"\nDEL key\n", 10, byte_by_byte=bytewise)
        assert events == [LINE_TOO_LONG]
    framer = LineFramer(10)
    framer.receive_data(b"z" * 50)
    assert framer.next_event() is LINE_TOO_LONG
    framer.receive_data(b"\nDEL key\n")  # ignored after failure
    assert framer.next_event() is LINE_TOO_LONG
    assert framer.buffered == 0


def test_memory_is_compacted_as_lines_are_consumed() -> None:
    framer = LineFramer(100)
    for _ in range(10_000):
        framer.receive_data(b"0123456789\n")
        assert framer.next_event() == b"0123456789"
    assert len(framer._buf) < 1000


@given(st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b), max_size=30),
       st.integers(min_value=1, max_value=40))
def test_any_split_gives_the_same_lines(lines: list[bytes], max_line: int) -> None:
    data = b"".join(line + b"\n" for line in lines)
    whole = feed(data, max_line, byte_by_byte=False)
    bytewise = feed(data, max_line, byte_by_byte=True)
    assert whole == bytewise
    expected: list[object] = []
    for line in lines:
        if len(line) > max_line:
            expected.append(LINE_TOO_LONG)
            break
        expected.append(line)
    assert whole == expected
