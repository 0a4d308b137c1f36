"""Passwords, ACL users and CONFIG end to end: redis-py, redis-cli, raw
sockets and ``sockworks client`` against ``serve kv``; every error text is
compared with a real redis-server given the same ACL file."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from sockworks.client import KvClient, ServerError
from tests.redis_support import start_redis
from tests.support import require_binary

SECRET_HASH = hashlib.sha256(b"s3cret").hexdigest()
ACL = f"""\
user app on >s3cret ~app:* +@read +@write -@dangerous
user admin on #{SECRET_HASH} ~* +@all
user default off
user ro on nopass ~x* -@all +get +ping +config|get
"""


def resp_port(server: Any) -> int:
    return int(server.addresses[1][1])


def raw(port: int, *commands: bytes) -> bytes:
    """Send inline commands on one connection, read until it goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"".join(c + b"\r\n" for c in commands) + b"QUIT\r\n")
        out = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return out
            out += chunk


@pytest.fixture
def acl_file() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "users.acl"
        path.write_text(ACL)
        yield path


def test_requirepass_with_redis_py_and_text_client(start_server: Any, tmp_path: Path) -> None:
    secret = tmp_path / "pass"
    secret.write_text("hunter2\nignored second line\n")
    server = start_server("serve", "kv", "--resp-port", "0", "--requirepass-file", str(secret))
    port = resp_port(server)
    anon = redis.Redis(port=port)
    with pytest.raises(redis.AuthenticationError):
        anon.ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, password="wrong").ping()
    good = redis.Redis(port=port, password="hunter2")
    assert good.set("k", "v") and good.get("k") == b"v"
    assert redis.Redis(port=port, username="default", password="hunter2", protocol=3).ping()
    assert good.config_get("requirepass") == {"requirepass": "hunter2"}
    assert int(good.info("stats")["acl_access_denied_auth"]) >= 2
    # Text protocol: the same password.
    with pytest.raises(ServerError, match="invalid password"):
        KvClient("127.0.0.1", server.port, password="nope")
    with KvClient("127.0.0.1", server.port) as kv:
        assert kv.execute(b"GET k") == b"ERROR: authentication required"
        assert kv.execute(b"AUTH hunter2") == b"OK"
        assert kv.execute(b"GET k") == b"v"
        assert b"acl_access_denied_auth=" in kv.execute(b"STATS")
    with KvClient("127.0.0.1", server.port, password="hunter2", username="default") as kv:
        assert kv.get(b"k") == b"v"


def test_sockworks_client_password_flag_and_env(start_server: Any) -> None:
    server = start_server("serve", "kv", "--requirepass", "pw1")
    base = [sys.executable, "-m", "sockworks", "client", "--port", str(server.port)]
    ok = subprocess.run([*base, "--password", "pw1", "PING"], capture_output=True, timeout=30)
    assert ok.returncode == 0 and ok.stdout == b"PONG\n"
    env = {"SOCKWORKS_PASSWORD": "pw1", "PATH": "/usr/bin:/bin"}
    via_env = subprocess.run([*base, "PING"], capture_output=True, timeout=30, env=env)
    assert via_env.returncode == 0 and via_env.stdout == b"PONG\n"
    bad = subprocess.run([*base, "--password", "x", "PING"], capture_output=True, timeout=30)
    assert bad.returncode == 2 and b"invalid password" in bad.stderr
    none = subprocess.run([*base, "PING"], capture_output=True, timeout=30)
    assert none.stdout == b"ERROR: authentication required\n" and none.returncode == 1


#: Inline commands whose replies must be byte-identical to redis-server's.
SCRIPTS: list[tuple[bytes, ...]] = [
    (b"PING", b"GET x", b"HELLO 3", b"HELLO 2 AUTH default s3cret", b"AUTH s3cret",
     b"AUTH nobody pw", b"AUTH a b c", b"FOO", b"GET", b"EXEC", b"MULTI", b"GET y", b"EXEC"),
    (b"AUTH app wrong", b"AUTH app s3cret", b"ACL WHOAMI", b"FLUSHALL", b"GET foo",
     b"GET app:1", b"MGET app:1 foo", b"SET app:x 1", b"SET other 1", b"KEYS *",
     b"CONFIG GET port", b"MULTI", b"GET foo", b"SET app:y 2", b"EXEC", b"MULTI", b"EXEC"),
    # Keys found by numkeys, SORT's STORE and MEMORY USAGE are checked too.
    (b"AUTH app s3cret", b"ZUNIONSTORE app:d 2 app:a secret", b"ZUNIONSTORE app:d 1 app:a",
     b"ZUNIONSTORE secret 1 app:a", b"ZINTER 2 app:a secret", b"ZINTER 1 app:a",
     b"LMPOP 1 secret LEFT", b"LMPOP 2 app:l app:m LEFT", b"SINTERCARD 2 app:a secret",
     b"MEMORY USAGE secret", b"MEMORY USAGE app:x", b"OBJECT ENCODING secret",
     b"ZUNIONSTORE app:d 5 app:a"),
    (b"AUTH ro anything", b"GET x1", b"GET y", b"SET x1 1", b"CONFIG SET timeout 1",
     b"CLIENT INFO", b"MULTI", b"HELLO 2", b"RESET", b"GET x1"),
    (b"AUTH admin s3cret", b"ACL USERS", b"ACL WHOAMI x", b"ACL BOGUS", b"ACL CAT nope",
     b"ACL CAT a b", b"ACL LIST x", b"FLUSHALL", b"CONFIG SET databases 3",
     b"CONFIG SET timeout abc", b"CONFIG SET maxclients 0", b"CONFIG SET loglevel loud",
     b"CONFIG SET aclfile /x"),
]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda s: s[0].decode())
def test_acl_replies_match_redis(start_server: Any, acl_file: Path,
                                 script: tuple[bytes, ...]) -> None:
    binary = require_binary("redis-server")
    server = start_server("serve", "kv", "--resp-port", "0", "--aclfile", str(acl_file))
    with tempfile.TemporaryDirectory() as tmp:
        real = start_redis(binary, Path(tmp), ["--aclfile", str(acl_file)])
        try:
            expected = raw(real.port, *script)
        finally:
            real.kill()
    got = raw(resp_port(server), *script)
    # HELLO's id and CLIENT INFO's fields differ by nature: compare the rest.
    def scrub(out: bytes) -> list[bytes]:
        return [line for line in out.split(b"\r\n")
                if not line.startswith((b"id=", b":", b"$"))
                and line not in (b"7.0.15", b"7.2.0")]
    assert scrub(got) == scrub(expected)


def test_acl_list_load_and_bad_file(start_server: Any, acl_file: Path) -> None:
    server = start_server("serve", "kv", "--resp-port", "0", "--aclfile", str(acl_file))
    admin: Any = redis.Redis(port=resp_port(server), username="admin", password="s3cret")
    listing = admin.execute_command("ACL", "LIST")
    assert f"user admin on #{SECRET_HASH} ~* resetchannels +@all".encode() in listing
    assert b"user default off resetchannels -@all" in listing
    assert (f"user app on #{SECRET_HASH} ~app:* resetchannels -@all +@read +@write "
            "-@dangerous").encode() in listing
    acl_file.write_text(ACL + "user bad on >x +@nosuch\n")
    with pytest.raises(redis.ResponseError) as err:
        admin.execute_command("ACL", "LOAD")
    assert str(err.value) == (
        f"{acl_file}:5: Error in applying operation '+@nosuch': Unknown command or category "
        "name in ACL. WARNING: ACL errors detected, no change to the previously active ACL "
        "rules was performed")
    assert admin.execute_command("ACL", "WHOAMI") == b"admin"
    acl_file.write_text("user admin on >newpass ~* +@all\n")
    assert admin.execute_command("ACL", "LOAD") == b"OK"
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=resp_port(server), username="admin", password="s3cret").ping()
    assert redis.Redis(port=resp_port(server), username="admin", password="newpass").ping()
    # The default user is back (the file no longer defines it): open.
    assert redis.Redis(port=resp_port(server)).ping()


def test_text_protocol_enforces_acl(start_server: Any, acl_file: Path) -> None:
    server = start_server("serve", "kv", "--aclfile", str(acl_file))
    with KvClient("127.0.0.1", server.port, username="app", password="s3cret") as kv:
        assert kv.execute(b"SET app:1 v") == b"OK"
        assert kv.execute(b"GET app:1") == b"v"
        assert kv.execute(b"GET other") == (b"ERROR: no permission: this user has no "
                                            b"permissions to access one of the keys used "
                                            b"as arguments")
        assert kv.execute(b"COMPACT") == (b"ERROR: no permission: this user has no "
                                          b"permissions to run the 'bgrewriteaof' command")
        assert kv.execute(b"STATS").startswith(b"ERROR: no permission")


def test_bad_acl_file_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "bad.acl"
    path.write_text("user ok on nopass ~* +@all\nuser broken on +@nosuch\n")
    result = subprocess.run([sys.executable, "-m", "sockworks", "serve", "kv", "--port", "0",
                             "--aclfile", str(path)], capture_output=True, timeout=60)
    assert result.returncode == 2
    assert f"{path}:2: Error in applying operation '+@nosuch'".encode() in result.stderr


def test_no_password_configured_is_said_not_accepted(start_server: Any) -> None:
    server = start_server("serve", "kv", "--resp-port", "0")
    out = raw(resp_port(server), b"AUTH x", b"AUTH default x", b"HELLO 3 AUTH default x",
              b"ACL WHOAMI")
    expected = (b"-ERR AUTH <password> called without any password configured for the "
                b"default user. Are you sure your configuration is correct?\r\n")
    assert out.startswith(expected * 3 + b"$7\r\ndefault\r\n")


def test_config_get_and_set_are_truthful(start_server: Any, tmp_path: Path) -> None:
    server = start_server("serve", "kv", "--host", "::1", "--resp-port", "0", "--idle-timeout",
                          "7", "--max-connections", "50", "--data-dir", str(tmp_path),
                          "--fsync", "always")
    client = redis.Redis(host="::1", port=resp_port(server))
    config = client.config_get("*")
    assert config["bind"] == "::1"
    assert config["port"] == str(resp_port(server))
    assert config["timeout"] == "7" and config["maxclients"] == "50"
    assert config["appendonly"] == "yes" and config["appendfsync"] == "always"
    assert config["dir"] == str(tmp_path) and config["protected-mode"] == "yes"
    assert config["requirepass"] == "" and config["aclfile"] == ""
    assert client.config_set("timeout", 0) and client.config_get("timeout") == {"timeout": "0"}
    assert client.config_set("maxclients", 2)
    with pytest.raises(redis.ResponseError, match="can't set immutable config"):
        client.config_set("port", 1)
    # maxclients now 2: a third connection is refused.
    other = redis.Redis(host="::1", port=resp_port(server))
    other.ping()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="::1", port=resp_port(server)).ping()
    assert client.config_set("maxclients", 100)
    assert client.config_set("requirepass", "later")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="::1", port=resp_port(server)).ping()
    assert redis.Redis(host="::1", port=resp_port(server), password="later").ping()


def test_redis_cli_auth_flags(start_server: Any, acl_file: Path) -> None:
    cli = require_binary("redis-cli")
    server = start_server("serve", "kv", "--resp-port", "0", "--aclfile", str(acl_file))
    port = str(resp_port(server))
    run = [cli, "-p", port, "--no-auth-warning"]
    out = subprocess.run([*run, "--user", "admin", "--pass", "s3cret", "ACL", "WHOAMI"],
                         capture_output=True, timeout=30)
    assert out.stdout == b"admin\n"
    out = subprocess.run([*run, "--user", "app", "-a", "s3cret", "FLUSHALL"],
                         capture_output=True, timeout=30)
    assert b"NOPERM this user has no permissions to run the 'flushall' command" in out.stdout


#: ACL SETUSER (all rules or none) and a script's redis.acl_check_cmd as
#: that user: compared whole, integers and nils too. (ACL LIST is left out:
#: Redis shows +@read/+@write expanded into what they hold.)
SETUSER = (b"AUTH admin s3cret", b"ACL SETUSER bob on >123 +@scripting +set ~x*",
           b"ACL SETUSER bob bogus", b"ACL SETUSER", b"ACL SETUSER bob +nosuch",
           b"ACL SETUSER bob ~x allkeys ~y", b'ACL SETUSER "a b" on', b"ACL USERS",
           b"ACL SETUSER carol", b"ACL SETUSER carol on nopass +get ~c*", b"ACL USERS",
           b"AUTH bob 123", b"""EVAL "return redis.acl_check_cmd('set','xx',1)" 1 xx""",
           b"""EVAL "return redis.acl_check_cmd('hset','xx','f',1)" 1 xx""",
           b"""EVAL "return redis.acl_check_cmd('set','yy',1)" 0""",
           b"""EVAL "return redis.acl_check_cmd('config','nosuch')" 0""",
           b"""EVAL "return redis.acl_check_cmd('invalid-cmd','arg')" 0""",
           b"""EVAL "return redis.acl_check_cmd()" 0""", b"GET x", b"SET yy 1",
           b"AUTH carol x", b"GET c1", b"GET d1", b"SET c1 1")


def test_acl_setuser_and_acl_check_cmd_match_redis(start_server: Any, acl_file: Path) -> None:
    binary = require_binary("redis-server")
    server = start_server("serve", "kv", "--resp-port", "0", "--aclfile", str(acl_file))
    with tempfile.TemporaryDirectory() as tmp:
        real = start_redis(binary, Path(tmp), ["--aclfile", str(acl_file)])
        try:
            expected = raw(real.port, *SETUSER)
        finally:
            real.kill()
    assert raw(resp_port(server), *SETUSER) == expected
