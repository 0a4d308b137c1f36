"""Helpers the tests import: reading from sockets, requiring external programs.

They live in a normal module, not in ``conftest.py``: pytest imports conftest
itself, and a test doing ``from conftest import ...`` as well loaded a second
copy of it under another name (``conftest`` next to ``tests.conftest``).
``conftest.py`` holds fixtures only; what tests import comes from here.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, Protocol, overload

import pytest

from sockworks.models import FORKING_MODELS, MODELS

if TYPE_CHECKING:
    # Only for the annotation below: conftest imports this module at run time.
    from tests.conftest import ServerProcess

#: Models whose connections share one address space (the embedded store works,
#: Server.start() runs them): every registered model that does not fork, so a
#: new model is tested here unless it is listed in FORKING_MODELS.
SHARED_MEMORY_MODELS = tuple(name for name in MODELS if name not in FORKING_MODELS)

#: The CI entry point (.ci/run) sets CI=true and installs every external
#: program the tests drive, so a missing one is a failure there, not a skip.
IN_CI = os.environ.get("CI") == "true"


class RunningServer(Protocol):
    """What a test gets from ``start_server``: in-process or a process alike."""

    host: str
    port: int
    model: str
    addresses: list[tuple[str, int]]

    @property
    def address(self) -> tuple[str, int]: ...

    @property
    def output(self) -> bytearray: ...

    def connect(self, timeout: float = ..., index: int = ...) -> socket.socket: ...

    def read_output(self, timeout: float = ...) -> bytes: ...

    def wait_for_log(self, pattern: bytes, timeout: float = ...) -> bytes: ...

    def signal(self, sig: int = ...) -> None: ...

    def wait(self, timeout: float = ...) -> int: ...

    def stop(self) -> None: ...


class StartServer(Protocol):
    """The ``start_server`` fixture: ``start_server("serve", "echo", "--model", "thread")``.

    Builds the server the command line describes (``--port 0`` unless given)
    and starts it in the test process, or, with ``process=True`` (and for the
    forking models, a log file, ``env``/``preexec_fn``), runs ``python -m
    sockworks`` (or ``python -m MODULE``) and waits until it logs its
    listening address(es). Every server started is stopped when the test ends.
    """

    @overload
    def __call__(self, *args: str, process: Literal[True], expect_listeners: int = ...,
                 env: dict[str, str] | None = ...,
                 preexec_fn: Callable[[], object] | None = ...,
                 timeout: float = ..., module: str = ...) -> ServerProcess: ...

    @overload
    def __call__(self, *args: str, process: bool = ..., expect_listeners: int = ...,
                 env: dict[str, str] | None = ...,
                 preexec_fn: Callable[[], object] | None = ...,
                 timeout: float = ...) -> RunningServer: ...


def require_binary(name: str) -> str:
    """Path of an external program the test needs.

    Skips the test without it on a developer's machine; fails it under
    CI=true, where .ci/run installs it.
    """
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required under CI=true but is not installed")
        pytest.skip(f"{name} not installed")
    return path


def require_lua() -> None:
    """At a test module's top: the module needs lupa (the 'lua' extra).

    Skips the module without it on a developer's machine; fails it under
    CI=true, where .ci/run installs the extra.
    """
    from sockworks.services import lua_engine

    if not lua_engine.LUA_AVAILABLE:
        if IN_CI:
            pytest.fail("lupa (the 'lua' extra) is required under CI=true", pytrace=False)
        pytest.skip("lupa not installed (pip install 'sockworks[lua]')", allow_module_level=True)


def recv_until(sock: socket.socket, terminator: bytes = b"\n", limit: int = 1 << 20) -> bytes:
    """Read until ``terminator`` is seen or the peer closes; never past ``limit``."""
    buf = b""
    while terminator not in buf and len(buf) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def recv_lines(sock: socket.socket, count: int) -> list[bytes]:
    """Read until ``count`` newline-terminated lines arrived (or the peer closes)."""
    buf = b""
    while buf.count(b"\n") < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n")[:count]


def recv_all(sock: socket.socket) -> bytes:
    """Read until the peer closes (the socket must have a timeout)."""
    buf = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        buf += chunk
    return buf
