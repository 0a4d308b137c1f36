"""SIGHUP (issue #14, item 4): reopen --log-file for logrotate, re-read log_level.

Real processes: the log file is moved away as logrotate does, SIGHUP is
sent, and the server writes to a new file at the path. Waits poll the file
with a bounded deadline.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.conftest import spawn_server

pytestmark = pytest.mark.timeout(60)


def wait_for_text(path: Path, text: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in (content := path.read_text()):
            return content
        time.sleep(0.02)        # polling a file: bounded by the deadline
    raise AssertionError(f"{text!r} not in {path} within {timeout}s")


@pytest.mark.parametrize("model", ["asyncio", "thread"])
def test_sighup_reopens_the_log_file(tmp_path: Path, model: str) -> None:
    log = tmp_path / "kv.log"
    server = spawn_server("serve", "kv", "--model", model, "--log-file", str(log))
    try:
        wait_for_text(log, "listening on")
        log.rename(tmp_path / "kv.log.1")           # logrotate's "create" mode
        server.signal(signal.SIGHUP)
        wait_for_text(log, "received SIGHUP")
        assert "received SIGHUP" not in (tmp_path / "kv.log.1").read_text()
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        assert "shutting down gracefully" in log.read_text()
    finally:
        server.stop()


def test_sighup_rereads_log_level(tmp_path: Path) -> None:
    config = tmp_path / "sockworks.toml"
    config.write_text('[logging]\nlog_level = "INFO"\n')
    log = tmp_path / "echo.log"
    server = spawn_server("serve", "echo", "--config", str(config), "--log-file", str(log))
    try:
        wait_for_text(log, "listening on")
        config.write_text('[logging]\nlog_level = "DEBUG"\n')
        server.signal(signal.SIGHUP)
        wait_for_text(log, "SIGHUP: log level DEBUG")
        config.write_text('[logging]\nlog_level = "LOUD"\n')     # a mistake: kept, logged
        server.signal(signal.SIGHUP)
        wait_for_text(log, "keeping the current settings")
        with server.connect() as conn:                           # still serving
            conn.sendall(b"x\n")
            assert conn.recv(10) == b"X\n"
    finally:
        server.stop()


def test_sighup_reaches_prefork_workers(tmp_path: Path) -> None:
    log = tmp_path / "echo.log"
    server = spawn_server("serve", "echo", "--model", "prefork", "--workers", "2",
                          "--log-file", str(log), "--log-level", "DEBUG")
    try:
        wait_for_text(log, "worker 1 started")
        log.rename(tmp_path / "echo.log.1")
        server.signal(signal.SIGHUP)
        wait_for_text(log, "received SIGHUP")
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        # Each worker reopened too: their shutdown lines are in the new file.
        text = log.read_text()
        assert text.count("worker") >= 1, text
    finally:
        server.stop()


def test_sighup_reopens_the_udp_log_file(tmp_path: Path) -> None:
    """``serve udp`` takes SIGHUP as the TCP services do."""
    log = tmp_path / "udp.log"
    server = spawn_server("serve", "udp", "--log-file", str(log))
    try:
        wait_for_text(log, "listening on")
        log.rename(tmp_path / "udp.log.1")
        server.signal(signal.SIGHUP)
        wait_for_text(log, "received SIGHUP")
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
        assert "received SIGHUP" not in (tmp_path / "udp.log.1").read_text()
    finally:
        server.stop()
