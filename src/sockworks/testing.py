"""pytest plugin: real sockworks servers inside the test process, on free ports.

Installed with sockworks (entry point ``pytest11``), so any project that has
sockworks installed gets two fixtures and nothing to set up::

    def test_cache(sockworks_kv):
        r = redis.Redis.from_url(sockworks_kv.url)     # a real RESP server
        r.set("k", "v")

    def test_my_protocol(sockworks_server):
        server = sockworks_server(MyService(), model="asyncio")
        host, port = server.addresses[0]

``sockworks_kv`` is the key-value store on the embedded in-memory store with
its text port and its RESP port; attributes ``host``, ``port`` (text),
``resp_port``, ``url`` (``redis://host:resp_port/0``), ``server`` (the
:class:`sockworks.Server`) and ``store``. Its data is fresh for every test.

Settings (``pytest.ini``/``pyproject.toml`` ``[tool.pytest.ini_options]``):

``sockworks_kv_scope``
    ``function`` (default), ``module``, ``package`` or ``session``: how long
    one ``sockworks_kv`` server lives. With a wider scope the server is
    shared, and its data is still flushed before each test, unless the test
    is marked ``@pytest.mark.sockworks_keep_data``.
``sockworks_kv_model``
    the concurrency model (default: the KV service's own, asyncio). A forking
    model cannot run inside the test process.

``sockworks_server(service, **kwargs)`` takes :class:`sockworks.Server`'s
keywords (``port`` defaults to 0: a free port) and returns a started server,
stopped when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sockworks.core.service import Service
    from sockworks.server import Server
    from sockworks.storage.base import Store

__all__ = ["KvEndpoints", "sockworks_kv", "sockworks_server"]

_SCOPES = ("function", "class", "module", "package", "session")
KEEP_DATA_MARK = "sockworks_keep_data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("sockworks_kv_scope", default="function",
                  help="scope of the sockworks_kv server: " + ", ".join(_SCOPES))
    parser.addini("sockworks_kv_model", default="",
                  help="concurrency model of the sockworks_kv server (default: asyncio)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{KEEP_DATA_MARK}: do not flush a shared sockworks_kv server's data "
        "before this test")


@dataclass(frozen=True)
class KvEndpoints:
    """Where the ``sockworks_kv`` server listens, and handles on it."""

    server: Server
    store: Store
    host: str
    port: int
    resp_port: int

    @property
    def url(self) -> str:
        """A redis-py URL for the RESP port: ``redis.Redis.from_url(kv.url)``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.resp_port}/0"


def _kv_scope(fixture_name: str, config: pytest.Config) -> str:
    scope = str(config.getini("sockworks_kv_scope") or "function")
    if scope not in _SCOPES:
        raise pytest.UsageError(f"sockworks_kv_scope must be one of {', '.join(_SCOPES)}, "
                                f"got {scope!r}")
    return scope


@pytest.fixture(scope=_kv_scope)  # type: ignore[arg-type]
def _sockworks_kv_server(pytestconfig: pytest.Config) -> Iterator[KvEndpoints]:
    from sockworks.server import Server
    from sockworks.services.kv import KvService

    service = KvService()
    model = str(pytestconfig.getini("sockworks_kv_model") or "") or None
    with Server(service, port=0, resp_port=0, model=model) as server:
        (host, port), (_, resp_port) = server.addresses
        yield KvEndpoints(server, service.store, host, port, resp_port)


@pytest.fixture
def sockworks_kv(_sockworks_kv_server: KvEndpoints,
                 request: pytest.FixtureRequest) -> KvEndpoints:
    """A running KV server (text + RESP ports) with no data in it."""
    if request.node.get_closest_marker(KEEP_DATA_MARK) is None:
        _sockworks_kv_server.store.flushdb()
    return _sockworks_kv_server


@pytest.fixture
def sockworks_server() -> Iterator[Callable[..., Server]]:
    """Factory: ``sockworks_server(service, **Server keywords)`` -> a started
    Server on a free port; every server it started is stopped afterwards."""
    from sockworks.server import Server

    started: list[Server] = []

    def start(service: Service | None = None, **kwargs: Any) -> Server:
        kwargs.setdefault("port", 0)
        server = Server(service, **kwargs)
        server.start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
