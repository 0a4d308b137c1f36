"""Every protocol module stays sans-IO: no socket, asyncio, threading, selectors or time.

The codecs must be drivable by every concurrency model and testable by feeding
bytes, so they may not import anything that does I/O or reads the clock
(docs/conventions.md, "Protocols are sans-IO", after h11). The check reads the source with ``ast`` so it
also catches imports inside functions and ``from x import y`` forms.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sockworks.protocols

FORBIDDEN = {"socket", "asyncio", "threading", "selectors", "time", "ssl", "socketserver"}
PACKAGE_DIR = Path(sockworks.protocols.__file__).parent
MODULES = sorted(PACKAGE_DIR.rglob("*.py"))


def imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "__import__" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return names


def forbidden_imports(source: str) -> set[str]:
    return {name for name in imported_modules(ast.parse(source))
            if name.split(".")[0] in FORBIDDEN}


def test_the_package_has_modules() -> None:
    names = {path.name for path in MODULES}
    assert {"__init__.py", "lines.py", "kvtext.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_protocol_module_is_sans_io(path: Path) -> None:
    found = forbidden_imports(path.read_text(encoding="utf-8"))
    assert not found, f"{path.name} imports {sorted(found)}: protocol code must be sans-IO"


@pytest.mark.parametrize("source", [
    "import socket",
    "import asyncio.streams",
    "from threading import Lock",
    "def f():\n    import time\n    return time.monotonic()",
    "from selectors import DefaultSelector",
    "__import__('socket')",
])
def test_the_checker_catches_io_imports(source: str) -> None:
    assert forbidden_imports(source)


def test_the_checker_allows_pure_imports() -> None:
    assert not forbidden_imports("import re\nfrom dataclasses import dataclass\n"
                                 "from sockworks.protocols.lines import LineFramer\n")
