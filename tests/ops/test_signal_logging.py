"""A stop signal is never lost to a log line it interrupts (issue #14).

Python runs a signal handler in the main thread between two bytecodes, so a
SIGTERM can arrive while that thread is writing a log line; the handler's
own line then re-enters the stream's writer, which raises RuntimeError.
Before the fix that exception escaped the handler ahead of the stop request
(prefork under systemd-socket-activate hung on SIGTERM one run in two).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator

import pytest

from sockworks.models.base import install_stop_signals


class Reentrant(logging.Handler):
    """What a StreamHandler does when its writer is already mid-write."""

    def emit(self, record: logging.LogRecord) -> None:
        raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stderr>'>")


@pytest.fixture
def broken_logging() -> Iterator[None]:
    handler = Reentrant()
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        signal.signal(signal.SIGUSR1, previous)


@pytest.mark.usefixtures("broken_logging")
def test_stop_request_survives_a_failing_log_line() -> None:
    stops: list[str] = []
    install_stop_signals(lambda: stops.append("stop"), signals=[signal.SIGUSR1])
    os.kill(os.getpid(), signal.SIGUSR1)        # the handler runs before kill returns
    assert stops == ["stop"]
