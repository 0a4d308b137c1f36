"""The examples run as a user runs them: as scripts, in processes of their own.

``examples/counter/test_counter.py`` is collected by pytest directly
(``testpaths``); here ``examples/embed.py`` must exit 0, and the counter
service must serve, answer and stop on SIGTERM with status 0.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
LISTENING = re.compile(rb"listening on (\S+):(\d+) \(model=([\w-]+)\)")

pytestmark = pytest.mark.timeout(90)


def test_embed_exits_zero() -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / "embed.py")], cwd=ROOT,
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    out = proc.stdout.decode()
    for model in ("thread", "pool", "socketserver-thread", "asyncio"):
        assert f"ok   {model}:" in out, out
    assert "fork" not in out.replace("socketserver-thread", "")


def wait_for_listening(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> tuple[str, int]:
    """The address from the server's ``listening on`` log line."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    output = b""
    deadline = time.monotonic() + timeout
    while (match := LISTENING.search(output)) is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no 'listening on' line: {output!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"exited ({proc.wait(5)}) before listening: {output!r}")
            output += chunk
    return match.group(1).decode(), int(match.group(2))


@pytest.mark.parametrize("model", ["thread", "asyncio"])
def test_counter_script_serves_and_stops_on_sigterm(model: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "counter" / "counter.py"), "--port", "0",
         "--model", model],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        address = wait_for_listening(proc)
        with socket.create_connection(address, timeout=10) as sock, \
                sock.makefile("rb") as reader:
            sock.sendall(b"INCR x\nINCR x\nGET x\n")
            assert [reader.readline(64) for _ in range(3)] == [b"1\n", b"2\n", b"2\n"]
            # An idle connection does not hold up a graceful stop.
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
            assert reader.read(1) == b""  # closed by the server on its way out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()


def test_counter_script_refuses_a_forking_model() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "counter" / "counter.py"), "--model", "prefork"],
        cwd=ROOT, capture_output=True, timeout=30, check=False)
    assert proc.returncode == 2  # argparse: not one of the choices
    assert b"invalid choice" in proc.stderr
