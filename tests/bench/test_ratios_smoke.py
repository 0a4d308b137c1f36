"""benchmarks/ratios.py end to end on its cheapest figure (``startup``: real
``serve kv`` processes, a real log replayed), checking the report's shape and
the start-up line parsing; never the speed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import require_binary

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ratios.py"


@pytest.mark.timeout(60)
def test_startup_figure_writes_markdown_and_json(tmp_path: Path) -> None:
    require_binary("taskset")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "startup", "--repeat", "1",
         "--replay-keys", "2000", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=50, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "ratios.json").read_text())
    (figure,) = report["figures"]
    assert figure["name"] == "startup"
    assert [row["subject"] for row in figure["rows"]] == ["empty", "replay"]
    assert all(row["subject_median"] > 0 for row in figure["rows"])
    assert [run["variant"] for run in figure["runs"]] == ["empty", "replay"]
    assert "--data-dir" in figure["runs"][1]["commands"][0]
    assert report["machine"]["cpus"] >= 1
    markdown = (tmp_path / "ratios.md").read_text()
    assert "## startup" in markdown
    assert "| replay 2,000-key log | replay |" in markdown
    assert markdown.strip() in done.stdout


def test_unknown_figure_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "nonsense", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "unknown figure" in done.stderr
    assert not (tmp_path / "ratios.json").exists()


BENCHMARKS = SCRIPT.parent


def test_benchmarks_need_nothing_outside_the_repository() -> None:
    # Provenance notes in the chapter copies may name where they came from;
    # nothing that runs (scripts, the README's commands) may reach outside.
    for path in [*BENCHMARKS.glob("*.py"), BENCHMARKS / "README.md"]:
        assert "../shared" not in path.read_text(), path
    assert (BENCHMARKS / "tools" / "lineload.c").read_text().startswith(
        "/* Build: gcc -O2 -Wall -pthread -o lineload lineload.c")


@pytest.mark.timeout(120)
def test_vendored_lineload_builds_and_runs(tmp_path: Path) -> None:
    gcc = require_binary("gcc")
    binary = tmp_path / "lineload"
    subprocess.run([gcc, "-O2", "-Wall", "-pthread", "-o", str(binary),
                    str(BENCHMARKS / "tools" / "lineload.c")],
                   check=True, capture_output=True, timeout=110)
    done = subprocess.run([str(binary), "--help"], capture_output=True, text=True,
                          timeout=10, check=False)
    assert done.returncode == 0
    assert "lineload" in done.stdout + done.stderr
