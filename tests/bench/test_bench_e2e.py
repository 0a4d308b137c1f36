"""``sockworks bench`` against real servers in real processes: the chapter's
baselines (benchmarks/chapter, started with ``--port 0``) and ``sockworks
serve``. Behaviour only: counts, error kinds, output shape; never speed."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sockworks.bench.compare import CHAPTER_PORT
from sockworks.bench.results import BenchResult
from sockworks.bench.runner import BenchConfig, run_bench
from sockworks.bench.workloads import WorkloadSpec
from sockworks.cli import build_parser
from sockworks.services.udp_models import UDP_MODELS
from tests.support import StartServer

CHAPTER = Path(__file__).resolve().parents[2] / "benchmarks" / "chapter"


class ChapterServer:
    """A baseline script on port 0; its stdout (a line per client) is drained."""

    def __init__(self, name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHAPTER / name), "--port", "0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + 20
        output = b""
        while b"\n" not in output:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{name} did not start: {output!r}"
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 4096)
                assert chunk, f"{name} exited: {output!r}"
                output += chunk
        found = CHAPTER_PORT.search(output.decode())
        assert found, output
        self.port = int(found.group(1))
        self._drain = threading.Thread(target=self.proc.stdout.read, daemon=True)
        self._drain.start()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(10)
        self._drain.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


#: The ``chapter`` fixture: start one of benchmarks/chapter/*.py by file name.
StartChapter = Callable[[str], ChapterServer]


@pytest.fixture
def chapter() -> Iterator[StartChapter]:
    started: list[ChapterServer] = []

    def start(name: str) -> ChapterServer:
        server = ChapterServer(name)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def bench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sockworks", "bench", *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False)


def bench_json(*args: str) -> dict[str, Any]:
    """The --json report of a run that must succeed (decoded JSON: Any)."""
    done = bench(*args, "--json")
    assert done.returncode == 0, done.stderr
    # Piped stderr: no progress line, nothing at all on success.
    assert "req/s" not in done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def assert_clean_run(document: dict[str, Any], connections: int) -> None:
    assert document["requests"] > 0
    assert document["errors"] == {}
    assert document["errors_total"] == 0
    assert document["connected"] == connections
    latency = document["latency_us"]
    assert isinstance(latency, dict)
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["p99.9"] <= latency["max"]


@pytest.mark.timeout(60)
def test_echo_against_the_chapter_thread_server(chapter: StartChapter) -> None:
    server = chapter("thread_echo.py")
    document = bench_json("echo", "--port", str(server.port), "-c", "4", "-d", "1")
    assert_clean_run(document, 4)
    assert document["workload"] == {"name": "echo", "value_size": 16, "expect": "upper"}


@pytest.mark.timeout(60)
def test_human_table(chapter: StartChapter) -> None:
    server = chapter("socketserver_echo.py")
    done = bench("echo", "--port", str(server.port), "-c", "2", "-d", "0.5", "-P", "4",
                 "--warmup", "0.2")
    assert done.returncode == 0, done.stderr
    assert "requests/s" in done.stdout
    assert "p99.9" in done.stdout
    assert "errors       none" in done.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize("pipeline", ["1", "8"])
def test_kv_against_the_chapter_kv_server(chapter: StartChapter, pipeline: str) -> None:
    server = chapter("kv_server.py")
    document = bench_json("kv", "--port", str(server.port), "-c", "4", "-d", "1",
                          "-P", pipeline, "--keys", "100", "--set-ratio", "0.5")
    assert_clean_run(document, 4)


@pytest.mark.timeout(60)
def test_several_client_processes_merge_their_results(chapter: StartChapter) -> None:
    server = chapter("pool_echo.py")
    document = bench_json("echo", "--port", str(server.port), "-c", "4", "--procs", "2",
                          "-d", "1", "--idle", "2")
    assert_clean_run(document, 4)
    assert document["procs"] == 2
    assert document["idle_connected"] == 2


@pytest.mark.timeout(60)
def test_udp_time_against_the_chapter_udp_service(chapter: StartChapter) -> None:
    server = chapter("udp_json.py")
    document = bench_json("udp", "--port", str(server.port), "-c", "2", "-d", "1",
                          "--udp-type", "time", "--timeout", "1")
    assert document["requests"] > 0
    assert document["errors"].get("protocol_mismatch", 0) == 0
    assert document["rate_limited"] is None  # the chapter's service has no counters


@pytest.mark.timeout(60)
def test_udp_ping_against_the_chapter_service_counts_error_replies(chapter: StartChapter) -> None:
    server = chapter("udp_json.py")
    document = bench_json("udp", "--port", str(server.port), "-c", "1", "-d", "0.5")
    # The chapter knows only "time": every ping gets {"error": "unknown request"}.
    assert document["errors"]["error_reply"] > 0


@pytest.mark.timeout(60)
def test_connection_refused_is_counted_and_exits_non_zero() -> None:
    # A bound, non-listening socket: its port refuses connections and no one
    # else can take it during the test.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        done = bench("echo", "--port", str(port), "-c", "2", "-d", "0.5", "--json")
    assert done.returncode == 1
    document = json.loads(done.stdout)
    assert document["requests"] == 0
    assert document["errors"]["connect_refused"] >= 2


class MisbehavingServer:
    """A listener that answers every connection in one bad way.

    - ``busy``: the busy line, then close (sockworks over --max-connections);
    - ``silent``: accept, read, never answer (a stalled server);
    - ``reset``: read the first request, then close with RST (SO_LINGER 0).
    """

    def __init__(self, mode: str) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.mode = mode
        self.held: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        deadline = time.monotonic() + 30
        while not self.stopped.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            if self.mode == "busy":
                with conn:
                    conn.sendall(b"ERROR: server busy\n")
            elif self.mode == "silent":
                self.held.append(conn)
            else:
                conn.settimeout(5)
                with conn:
                    conn.recv(4096)
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()
        for conn in self.held:
            conn.close()


def run_against(mode: str, workload: str = "echo", *, connections: int, duration: float,
                timeout: float = 10.0) -> BenchResult:  # 10.0: BenchConfig's default
    server = MisbehavingServer(mode)
    try:
        config = BenchConfig(port=server.port, workload=WorkloadSpec(name=workload),
                             connect_timeout=2, connections=connections, duration=duration,
                             timeout=timeout)
        return run_bench(config, progress_stream=io.StringIO())
    finally:
        server.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workload", ["echo", "kv"])
def test_server_busy_is_its_own_error_kind(workload: str) -> None:
    result = run_against("busy", workload, connections=2, duration=0.5)
    assert result.requests == 0
    assert result.errors["server_busy"] >= 1
    assert set(result.errors) <= {"server_busy", "closed", "reset"}


@pytest.mark.timeout(60)
def test_a_server_that_never_answers_is_a_timeout() -> None:
    result = run_against("silent", connections=2, duration=1.5, timeout=0.5)
    assert result.requests == 0
    assert result.errors["timeout"] >= 2


@pytest.mark.timeout(60)
def test_a_reset_connection_is_counted_and_reopened() -> None:
    result = run_against("reset", connections=1, duration=1.0)
    assert result.requests == 0
    # Reopened with a backoff: more than one reset in a second.
    assert result.errors["reset"] >= 2
    assert set(result.errors) <= {"reset", "closed"}


@pytest.mark.timeout(60)
def test_progress_line_only_on_a_terminal(chapter: StartChapter) -> None:
    server = chapter("thread_echo.py")
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sockworks", "bench", "echo", "--port", str(server.port),
             "-c", "2", "-d", "2", "--json"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        slave = -1
        terminal = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                terminal += chunk
            elif proc.poll() is not None:
                break
        stdout, _ = proc.communicate(timeout=30)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert proc.returncode == 0
    assert b"req/s" in terminal
    assert json.loads(stdout)["requests"] > 0


@pytest.mark.timeout(60)
def test_in_process_run_writes_nothing_to_a_non_terminal(chapter: StartChapter) -> None:
    server = chapter("thread_echo.py")
    stream = io.StringIO()
    result = run_bench(BenchConfig(port=server.port, connections=2, duration=0.5),
                       progress_stream=stream)
    assert result.requests > 0
    assert stream.getvalue() == ""


@pytest.mark.timeout(60)
def test_echo_and_kv_against_sockworks_serve(start_server: StartServer) -> None:
    echo = start_server("serve", "echo", "--model", "asyncio")
    document = bench_json("echo", "--port", str(echo.port), "-c", "4", "-d", "1", "-P", "4")
    assert_clean_run(document, 4)
    kv = start_server("serve", "kv", "--model", "asyncio")
    document = bench_json("kv", "--port", str(kv.port), "-c", "4", "-d", "1", "-P", "4")
    assert_clean_run(document, 4)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("model", list(UDP_MODELS))
def test_udp_ping_against_sockworks_serve_udp(start_server: StartServer, model: str) -> None:
    # The per-source rate limit would drop most of a benchmark's requests
    # (all come from 127.0.0.1): lift it for this run.
    udp = start_server("serve", "udp", "--model", model, "--rate", "1000000",
                       "--burst", "1000000")
    document = bench_json("udp", "--port", str(udp.port), "-c", "2", "-d", "1", "-P", "2")
    assert document["requests"] > 0
    assert document["errors"].get("protocol_mismatch", 0) == 0
    assert document["errors"].get("error_reply", 0) == 0
    assert document["rate_limited"] == 0


@pytest.mark.timeout(60)
def test_udp_requests_dropped_by_the_rate_limit_are_counted(start_server: StartServer) -> None:
    udp = start_server("serve", "udp", "--rate", "20", "--burst", "10")
    document = bench_json("udp", "--port", str(udp.port), "-c", "8", "-d", "1",
                          "--timeout", "0.05")
    # More requests than 10 + 20/s were sent: the server dropped the rest and
    # said so in its counters; the client saw them as timeouts.
    assert document["rate_limited"] > 0
    assert document["errors"]["timeout"] > 0
    table = bench("udp", "--port", str(udp.port), "-c", "8", "-d", "0.5", "--timeout", "0.05")
    assert "rate limited" in table.stdout and "per-source limit" in table.stdout


@pytest.mark.timeout(120)
def test_compare_runs_the_grid_against_sockworks_serve(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "sockworks", "bench", "compare", "--service", "echo",
         "--models", f"thread,asyncio,chapter:{CHAPTER / 'thread_echo.py'}",
         "--connections", "1,3", "-d", "0.5", "--out", str(out)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=110, check=False)
    assert done.returncode == 0, done.stderr
    document = json.loads((out / "results.json").read_text())
    rows = document["results"]
    assert [(r["model"], r["connections"]) for r in rows] == [
        ("thread", 1), ("thread", 3), ("asyncio", 1), ("asyncio", 3),
        ("chapter:thread_echo", 1), ("chapter:thread_echo", 3)]
    assert all(r["requests"] > 0 and r["errors_total"] == 0 for r in rows)
    assert document["failures"] == []
    markdown = (out / "results.md").read_text()
    assert "| thread |" in markdown and "| chapter:thread_echo |" in markdown
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not (out / "results.png").exists()
    else:
        assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(60)
def test_compare_reports_a_model_that_cannot_start(tmp_path: Path) -> None:
    # A valid model that serve kv refuses at start-up (the embedded store
    # cannot be shared by prefork's processes): found only by starting it.
    done = subprocess.run(
        [sys.executable, "-m", "sockworks", "bench", "compare", "--service", "kv",
         "--models", "prefork", "--connections", "1", "-d", "0.5", "--out", str(tmp_path)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=50, check=False)
    assert done.returncode == 1
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["results"] == []
    assert document["failures"][0]["model"] == "prefork"


def test_compare_checks_every_argument_before_starting_a_server(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "sockworks", "bench", "compare",
         "--models", f"thread,no-such-model,chapter:{tmp_path / 'missing.py'}",
         "--connections", "1,4", "--procs", "2", "-P", "100000",
         "--server-arg=--idle-timeout=-1", "--out", str(not_a_dir)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=50, check=False)
    assert done.returncode == 2
    assert "== " not in done.stderr   # the line logged as each server starts
    problems = done.stderr.splitlines()
    assert all(line.startswith("sockworks bench compare: ") for line in problems), problems
    for expected in ("invalid choice: 'no-such-model'", "missing.py not found",
                     "pipeline must be between", "--idle-timeout",
                     "exists and is not a directory"):
        assert any(expected in line for line in problems), (expected, problems)
    assert not_a_dir.read_text() == ""


def test_compare_default_output_directory_is_ignored_by_git() -> None:
    git = shutil.which("git")
    repo = Path(__file__).resolve().parents[2]
    if git is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    default = build_parser().parse_args(["bench", "compare"]).out
    done = subprocess.run([git, "-C", str(repo), "check-ignore", "-q",
                           f"{default}/results.json"], check=False, timeout=30)
    assert done.returncode == 0, f"{default}/ is not in .gitignore"


@pytest.mark.parametrize("options, message", [
    ({"procs": 3, "connections": 2}, "procs"),
    ({"idle": 1, "workload": WorkloadSpec(name="udp")}, "TCP only"),
    ({"pipeline": 0}, "pipeline"),
    ({"duration": 0}, "duration"),
])
def test_config_validation(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BenchConfig(**options)


def test_cli_refuses_bad_combinations() -> None:
    done = bench("echo", "--port", "9", "-c", "1", "--procs", "2")
    assert done.returncode == 2
    assert "procs" in done.stderr
    done = bench("kv", "--port", "9", "--set-ratio", "1.5")
    assert done.returncode == 2
    assert "between 0 and 1" in done.stderr
