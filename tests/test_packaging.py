"""The Makefile and pyproject.toml: what `make run` installs, and metadata
setuptools accepts without deprecation warnings.

`make -n` prints the commands a target would run without running them, into
a virtualenv path that does not exist, so nothing is installed here.
"""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

from tests.support import require_binary

REPO = Path(__file__).resolve().parent.parent

DEV_EXTRAS = "'.[fast,redis,metrics,lua,bench,test]'"


def dry_run(target: str, tmp_path: Path) -> list[str]:
    make = require_binary("make")
    result = subprocess.run([make, "-n", "-C", str(REPO), target, f"VENV={tmp_path / 'venv'}"],
                            capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.splitlines()


def installs(lines: list[str]) -> list[str]:
    return [line for line in lines if "pip install" in line and "--upgrade pip" not in line]


def test_make_run_installs_only_what_serving_needs(tmp_path: Path) -> None:
    lines = dry_run("run", tmp_path)
    assert [line.split()[-1] for line in installs(lines)] == ["'.[fast]'"]
    assert any("sockworks serve kv" in line for line in lines)


def test_make_test_lint_and_bench_install_the_developer_extras(tmp_path: Path) -> None:
    for target in ("test", "lint", "bench"):
        assert [line.split()[-1] for line in installs(dry_run(target, tmp_path))] == [
            DEV_EXTRAS], target


def test_license_is_an_spdx_string() -> None:
    # setuptools >= 77 warns that a `license = {text = ...}` table is deprecated;
    # the SPDX expression string is what it (and PEP 639) wants.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"
    assert project["project"]["requires-python"] == ">=3.11"
    assert "setuptools>=77" in project["build-system"]["requires"]
