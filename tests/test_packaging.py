"""The Makefile and pyproject.toml: what `make run` installs, and metadata
setuptools accepts without deprecation warnings.

`make -n` prints the commands a target would run without running them, into
a virtualenv path that does not exist, so nothing is installed here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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


SMOKE = """
from sockworks.services.kv import KvService
service = KvService()
text = service.new_session("127.0.0.1:1")
assert text._fast is None
assert text.on_data(b"SET a 1\\nINCR a\\nGET a\\nPING\\n").data == b"OK\\n2\\n2\\nPONG\\n"
resp = service.resp_service().new_session("127.0.0.1:2")
assert resp.on_data(b"*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\na\\r\\n").data == b"$1\\r\\n2\\r\\n"
print("smoke ok")
"""


@pytest.mark.timeout(600)
def test_a_machine_without_a_compiler_installs_and_runs_the_pure_path(tmp_path: Path) -> None:
    """``pip install .`` with a C compiler that always fails (CC=/bin/false):
    the optional extension is skipped, the install succeeds, and the pure
    path serves (issue #15). Builds a wheel in a scratch virtualenv."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    env = {**os.environ, "CC": "/bin/false", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("SOCKWORKS_NO_EXTENSIONS", None)
    # A copy of the tree, so the build's own build/ dir cannot hold a C file
    # or an object compiled earlier by a working compiler.
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.so", "*.egg-info", "__pycache__", ".mypy_cache",
        ".pytest_cache", ".ruff_cache", ".hypothesis", "data", "benchmarks"))
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", str(source)],
                             capture_output=True, text=True, env=env, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    version = subprocess.run([str(venv / "bin" / "sockworks"), "--version"], capture_output=True,
                             text=True, env=env, check=True, timeout=60).stdout
    assert "hot path: pure Python (the C extension was not built)" in version
    smoke = subprocess.run([python, "-c", SMOKE], capture_output=True, text=True, env=env,
                           timeout=60, cwd=tmp_path)
    assert smoke.stdout.strip() == "smoke ok", smoke.stderr[-3000:]
