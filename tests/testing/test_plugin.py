"""The pytest plugin as a user's project meets it: run through ``pytester``.

Each test writes a small test file into a fresh directory and runs pytest on
it in a subprocess, with the plugin loaded through its ``pytest11`` entry
point (as in any project that installed sockworks), and checks the outcome.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def run(pytester: pytest.Pytester, source: str, *args: str,
        ini: str = "") -> pytest.RunResult:
    pytester.makepyfile(test_user=source)
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    return pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", *args)


def test_kv_fixture_with_redis_py(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import redis

def test_set_get(sockworks_kv):
    r = redis.Redis.from_url(sockworks_kv.url)
    assert r.set("greeting", "hello")
    assert r.get("greeting") == b"hello"
    assert sockworks_kv.url == f"redis://{sockworks_kv.host}:{sockworks_kv.resp_port}/0"
    r.close()

def test_text_port(sockworks_kv):
    import socket
    with socket.create_connection((sockworks_kv.host, sockworks_kv.port), timeout=5) as s:
        f = s.makefile("rb")
        assert f.readline() == b"READY\\n"
        s.sendall(b"SET k v\\r\\nGET k\\r\\n")
        assert f.readline() == b"OK\\n" and f.readline() == b"v\\n"
""")
    result.assert_outcomes(passed=2)


FRESH = """
import redis

def test_first(sockworks_kv):
    r = redis.Redis.from_url(sockworks_kv.url)
    assert r.dbsize() == 0
    r.set("left-over", 1)

def test_second(sockworks_kv):
    r = redis.Redis.from_url(sockworks_kv.url)
    assert r.dbsize() == 0, "data leaked from the previous test"
"""


@pytest.mark.parametrize("scope", ["function", "session"])
def test_kv_data_fresh_per_test(pytester: pytest.Pytester, scope: str) -> None:
    run(pytester, FRESH, ini=f"sockworks_kv_scope = {scope}").assert_outcomes(passed=2)


def test_session_scope_shares_one_server(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import pytest
seen = []

def test_a(sockworks_kv):
    seen.append(sockworks_kv.resp_port)

@pytest.mark.sockworks_keep_data
def test_b(sockworks_kv):
    seen.append(sockworks_kv.resp_port)
    assert seen[0] == seen[1]
""", ini="sockworks_kv_scope = session")
    result.assert_outcomes(passed=2)


def test_keep_data_mark(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import pytest, redis

def test_write(sockworks_kv):
    redis.Redis.from_url(sockworks_kv.url).set("kept", 1)

@pytest.mark.sockworks_keep_data
def test_read(sockworks_kv):
    assert redis.Redis.from_url(sockworks_kv.url).get("kept") == b"1"
""", ini="sockworks_kv_scope = module")
    result.assert_outcomes(passed=2)


def test_bad_scope_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = run(pytester, "def test_x(sockworks_kv):\n    pass\n",
                 ini="sockworks_kv_scope = forever")
    result.stdout.fnmatch_lines(["*sockworks_kv_scope must be one of*"])
    assert result.ret != 0


def test_server_factory_custom_service(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import socket
import pytest
from sockworks import Output, Server, Service, Session

class Shout(Session):
    def on_data(self, data):
        return Output(data.upper())

class ShoutService(Service):
    def new_session(self, peer):
        return Shout()

@pytest.mark.parametrize("model", ["thread", "asyncio", "pool"])
def test_shout(sockworks_server, model):
    server = sockworks_server(ShoutService(), model=model)
    assert isinstance(server, Server) and server.running
    with socket.create_connection(server.addresses[0], timeout=5) as s:
        s.sendall(b"hi")
        assert s.recv(10) == b"HI"

def test_stopped_after(sockworks_server):
    server = sockworks_server(ShoutService())
    pytest.shared = server

def test_check_stopped():
    assert not pytest.shared.running
""")
    result.assert_outcomes(passed=5)
