"""Logging flags: rotating file, JSON lines, rate limiting."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

from pytest import LogCaptureFixture

from sockworks.core.logs import RateLimitedLog
from tests.support import StartServer, recv_until


def test_rate_limited_log_counts_suppressed(caplog: LogCaptureFixture) -> None:
    logger = logging.getLogger("test.ratelimit")
    limited = RateLimitedLog(logger, logging.WARNING, interval=3600)
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        for i in range(100):
            limited("refused %d", i)
    assert [r.getMessage() for r in caplog.records] == ["refused 0"]
    limited._last -= 7200  # as if an hour passed
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        limited("refused %d", 100)
    assert caplog.records[-1].getMessage() == "refused 100 (99 more suppressed)"


def test_log_file_and_json_format(start_server: StartServer, tmp_path: Path) -> None:
    log_file = tmp_path / "server.log"
    server = start_server("serve", "echo", "--log-file", str(log_file), "--log-format", "json")
    with server.connect() as sock:
        sock.sendall(b"x\n")
        assert recv_until(sock) == b"X\n"
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert records[0]["msg"].startswith("listening on 127.0.0.1:")
    assert {"ts", "level", "logger", "msg", "pid"} <= records[0].keys()
    assert records[-1]["msg"] == "server stopped"
    # The console gets the same JSON lines.
    console = [json.loads(line) for line in server.output.decode().splitlines()]
    assert console[0]["msg"] == records[0]["msg"]


def test_bad_flag_values_are_rejected_without_traceback() -> None:
    for argv in (["--port", "70000"], ["--max-connections", "0"], ["--idle-timeout", "-1"],
                 ["--model", "nope"], ["--host", "no-such-host.invalid"]):
        proc = subprocess.run([sys.executable, "-m", "sockworks", "serve", "echo", *argv],
                              capture_output=True, timeout=30)
        assert proc.returncode != 0, argv
        assert b"Traceback" not in proc.stderr, argv
        assert proc.stderr.strip(), argv


def test_fd_limit_is_raised_for_max_connections(start_server: StartServer) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 3000:
        import pytest

        pytest.skip("hard RLIMIT_NOFILE too low to observe the raise")

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    server = start_server("serve", "echo", "--max-connections", "2000", preexec_fn=low_soft_limit,
                          process=True)
    with open(f"/proc/{server.proc.pid}/limits") as f:
        line = next(line for line in f if line.startswith("Max open files"))
    assert int(line.split()[3]) >= 2000


def test_fd_limit_too_low_is_a_warning(start_server: StartServer) -> None:
    import resource

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    server = start_server("serve", "echo", "--max-connections", "1000", preexec_fn=low_limit)
    server.wait_for_log(b"raise the limit with ulimit -n")
