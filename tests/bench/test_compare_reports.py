"""bench compare's reports from a results document (no servers): the
Markdown pivot and rows, the plot, and the plot skipped without matplotlib."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from sockworks.bench.compare import (
    CompareError,
    CompareSettings,
    client_argv,
    model_label,
    process_tree_rss,
    render_markdown,
    render_plot,
    server_argv,
)


def row(model: str, connections: int, rps: float) -> dict[str, object]:
    return {"model": model, "connections": connections, "requests": int(rps * 2),
            "requests_per_second": rps, "errors": {} if rps else {"connect_refused": 3},
            "errors_total": 0 if rps else 3, "connected": connections,
            "latency_us": {"p50": 100.0, "p90": 200.0, "p99": 300.0, "p99.9": 400.0,
                           "max": 500.0, "mean": 120.0}}


THREAD_10 = row("thread", 10, 5000.0)
THREAD_10["server_rss_peak_kib"] = 2048

DOCUMENT = {
    "service": "kv",
    "settings": {"models": ["thread", "chapter:benchmarks/chapter/kv_server.py"],
                 "connections": [1, 10], "pipeline": 1, "duration": 1.0,
                 "server_cpus": "0", "client_cpus": None},
    "results": [row("thread", 1, 1000.0), THREAD_10,
                row("chapter:kv_server", 1, 800.0)],
    "failures": [{"model": "chapter:kv_server", "connections": 10,
                  "error": "bench exited 1: no request completed\nmore"}],
}


def test_markdown_pivot_rows_and_failures() -> None:
    text = render_markdown(DOCUMENT)
    assert "| model | c=1 | c=10 |" in text
    assert "| thread | 1,000 | 5,000 |" in text
    assert "| chapter:kv_server | 800 | failed |" in text
    assert "| thread | 10 | 5,000 | 100 | 200 | 300 | 400 | 500 | 2.0 | 0 |" in text
    assert "| chapter:kv_server | 1 | 800 | 100 | 200 | 300 | 400 | 500 | ? | 0 |" in text
    assert "**chapter:kv_server failed at c=10:** bench exited 1: no request completed" in text
    assert "server CPUs 0, client CPUs any" in text


def test_plot_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "results.png"
    assert render_plot(DOCUMENT, path)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_plot_skipped_with_a_warning_without_matplotlib(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # A None entry in sys.modules makes `import matplotlib` raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    path = tmp_path / "results.png"
    with caplog.at_level(logging.WARNING, logger="sockworks.bench.compare"):
        assert render_plot(DOCUMENT, path) is False
    assert not path.exists()
    assert "matplotlib is not installed" in caplog.text


def test_server_and_client_commands() -> None:
    settings = CompareSettings(service="resp", connections=[1, 100], idle=10,
                               server_cpus="0", client_cpus="1")
    argv, script = server_argv(settings, "pool")
    assert not script
    assert argv[:2] == [argv[0], "-c"] and argv[2] == "0"
    tail = argv[argv.index("serve"):]
    assert tail[:4] == ["serve", "kv", "--resp-port", "0"]
    assert "--max-connections" in tail and int(tail[tail.index("--max-connections") + 1]) >= 110
    assert tail[tail.index("--idle-timeout") + 1] == "0"
    client = client_argv(settings, "127.0.0.1", 4242, 100)
    assert client[:3] == [client[0], "-c", "1"]
    assert client[client.index("bench") + 1] == "resp"
    assert client[client.index("-c", 3) + 1] == "100"
    assert "--json" in client


def test_chapter_models() -> None:
    assert model_label("chapter:benchmarks/chapter/thread_echo.py") == "chapter:thread_echo"
    assert model_label("asyncio") == "asyncio"
    with pytest.raises(CompareError, match="not found"):
        server_argv(CompareSettings(), "chapter:/no/such/file.py")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.timeout(30)
def test_process_tree_rss_counts_children() -> None:
    import subprocess
    mine = process_tree_rss(os.getpid())
    assert mine is not None and mine > 1000  # a Python process is several MiB
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; print('ready', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"  # started: its memory is there
        with_child = process_tree_rss(os.getpid())
        assert with_child is not None and with_child > mine + 1000
    finally:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.close()
        child.wait(10)
        child.stdout.close()
    assert process_tree_rss(child.pid) is None  # reaped: gone from /proc
