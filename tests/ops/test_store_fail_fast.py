"""A Redis backend that is wrong stops start-up (issue #14, item 6).

Real redis-servers (tests/redis_support.py) and real ``python -m sockworks``
processes: each misconfiguration ends start-up with one line on stderr and
exit status 1, within a bounded time; an unreachable server is waited for
``--store-timeout`` seconds, no longer.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.redis_support import (  # noqa: F401  (fixture)
    RedisServer,
    probe_free_port,
    redis_server_fixture,
    start_redis,
)
from tests.support import require_binary

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


def serve_kv(*args: str, timeout: float = 30.0) -> tuple[int, list[str], float]:
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "sockworks", "serve", "kv", "--port", "0",
                           *args], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, check=False, text=True)
    lines = [line for line in done.stderr.splitlines() if line.startswith("sockworks")]
    return done.returncode, lines, time.monotonic() - began


def test_database_index_out_of_range(redis_server: RedisServer) -> None:
    rc, lines, _ = serve_kv("--store", f"redis://127.0.0.1:{redis_server.port}/99")
    assert rc == 1
    assert len(lines) == 1 and "DB index is out of range" in lines[0], lines


def test_bad_credentials() -> None:
    binary = require_binary("redis-server")
    with tempfile.TemporaryDirectory(prefix="sockworks-redis-") as tmp:
        server = start_redis(binary, Path(tmp), ["--requirepass", "right"])
        try:
            rc, lines, _ = serve_kv("--store", f"redis://:wrong@127.0.0.1:{server.port}/0")
            assert rc == 1
            assert len(lines) == 1 and "authentication failed" in lines[0], lines
            assert "wrong" not in lines[0]          # the password is never shown
            # And without a password at all:
            rc, lines, _ = serve_kv("--store", f"redis://127.0.0.1:{server.port}/0")
            assert rc == 1 and len(lines) == 1 and "authentication" in lines[0].lower(), lines
        finally:
            server.kill()


def test_unknown_scheme() -> None:
    rc, lines, _ = serve_kv("--store", "mongodb://127.0.0.1:1/0")
    assert rc == 1
    assert len(lines) == 1 and "unsupported store URL" in lines[0], lines


def test_unreachable_is_waited_for_store_timeout_then_fails() -> None:
    port = probe_free_port()        # nothing listens there
    rc, lines, took = serve_kv("--store", f"redis://127.0.0.1:{port}/0",
                               "--store-timeout", "1")
    assert rc == 1
    assert len(lines) == 1 and "unreachable for 1s" in lines[0], lines
    assert 1.0 <= took < 20.0


def test_a_server_that_comes_up_in_time_is_used(redis_server: RedisServer) -> None:
    """Start-up waits: Redis stopped, sockworks started, Redis started again."""
    redis_server.kill()
    proc = subprocess.Popen([sys.executable, "-m", "sockworks", "serve", "kv", "--port", "0",
                             "--store", redis_server.url, "--store-timeout", "30"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        # Synchronise on the first failed attempt, not on a sleep.
        line = proc.stderr.readline()
        assert b"redis unavailable" in line, line
        redis_server.start()
        line = proc.stderr.readline()
        while line and b"listening on" not in line:
            line = proc.stderr.readline()
        assert b"listening on" in line
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stderr:
            proc.stderr.close()
