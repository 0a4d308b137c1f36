"""ACL rules: a hypothesis test against an independent reference model,
the category table against a real redis-server, and protected mode's
decision."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockworks.services.acl import AclError, User, parse_user_line
from sockworks.services.acl_categories import CATEGORIES, COMMAND_CATEGORIES
from sockworks.services.auth import AccessControl, is_loopback, known_command
from sockworks.services.resp_table import COMMANDS
from sockworks.storage.glob import compile_glob
from tests.redis_support import start_redis
from tests.support import require_binary

NAMES = sorted(COMMAND_CATEGORIES)
USED_CATEGORIES = sorted({c for cats in COMMAND_CATEGORIES.values() for c in cats})


def reference_allowed(rules: list[str]) -> set[str]:
    """Redis's model: a set of allowed commands updated rule by rule."""
    allowed: set[str] = set()
    for rule in rules:
        sign, what = rule[0], rule[1:]
        if rule in ("allcommands", "nocommands"):
            sign, what = ("+" if rule == "allcommands" else "-"), "@all"
        if what == "@all":
            hit = set(NAMES)
        elif what.startswith("@"):
            hit = {n for n in NAMES if what[1:] in COMMAND_CATEGORIES[n]}
        elif "|" in what:
            hit = {what}
        else:
            hit = {n for n in NAMES if n == what or n.startswith(what + "|")}
        allowed = allowed | hit if sign == "+" else allowed - hit
    return allowed


def split(name: str) -> tuple[str, str | None]:
    base, _, sub = name.partition("|")
    return base, sub or None


rule = st.one_of(
    st.sampled_from(["allcommands", "nocommands", "+@all", "-@all"]),
    st.builds(lambda s, c: f"{s}@{c}", st.sampled_from("+-"), st.sampled_from(USED_CATEGORIES)),
    st.builds(lambda s, n: f"{s}{n}", st.sampled_from("+-"), st.sampled_from(NAMES)),
)


@settings(max_examples=300, deadline=None)
@given(rules=st.lists(rule, max_size=12), patterns=st.lists(
    st.sampled_from(["app:*", "x?", "[ab]*", "*"]), max_size=3),
    key=st.sampled_from([b"app:1", b"xy", b"b", b"zzz", b""]))
def test_decision_matches_reference_model(rules: list[str], patterns: list[str],
                                          key: bytes) -> None:
    words = ["user", "u", "on", "resetkeys", *("~" + p for p in patterns), *rules]
    try:
        user = parse_user_line(words, known_command)
    except AclError:
        # Redis refuses a pattern after ~* (the only error these rules can make).
        first = patterns.index("*")
        assert any(p != "*" for p in patterns[first:])
        return
    allowed = reference_allowed(rules)
    for name in NAMES:
        base, sub = split(name)
        if sub is None and any(n.startswith(name + "|") for n in NAMES):
            continue  # a container alone is judged through its subcommands
        assert user.may_run(base, sub) == (name in allowed), (name, rules)
    matches = any(compile_glob(p.encode())(key) for p in patterns)
    assert user.may_access([key]) == matches


def test_rule_errors_are_redis_texts() -> None:
    with pytest.raises(AclError, match="Error in applying operation '\\+@nope': Unknown"):
        parse_user_line(["user", "u", "+@nope"], known_command)
    with pytest.raises(AclError, match="Syntax error"):
        parse_user_line(["user", "u", "bogus"], known_command)
    with pytest.raises(AclError, match="exactly 64 characters"):
        parse_user_line(["user", "u", "#abc"], known_command)
    user = parse_user_line(["user", "u", "on", ">a", ">b", "<a"], known_command)
    assert user.check_password(b"b") and not user.check_password(b"a")
    assert isinstance(user, User)


def test_every_command_has_categories() -> None:
    for name in COMMANDS:
        assert name.decode() in COMMAND_CATEGORIES
    for cats in COMMAND_CATEGORIES.values():
        assert set(cats) <= set(CATEGORIES)


def test_categories_are_redis_own() -> None:
    """Every row equals COMMAND INFO's ACL categories on a real redis-server
    (compact is ours: BGREWRITEAOF's; two 7.2 subcommands 7.0 lacks)."""
    import redis

    binary = require_binary("redis-server")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        real = start_redis(binary, Path(tmp))
        try:
            conn: Any = redis.Connection(port=real.port, decode_responses=True)  # type: ignore[no-untyped-call]
            for name, cats in COMMAND_CATEGORIES.items():
                if name in ("compact", "client|setinfo", "client|no-touch"):
                    continue
                conn.send_command("COMMAND", "INFO", name)
                info = conn.read_response()[0]
                assert tuple(c.lstrip("@") for c in info[6]) == cats, name
            conn.send_command("ACL", "CAT")
            assert tuple(conn.read_response()) == CATEGORIES
            conn.disconnect()
        finally:
            real.kill()


@pytest.mark.parametrize(("peer", "local"), [
    ("127.0.0.1:5", True), ("127.9.9.9:5", True), ("::1:5", True), ("[::1]:5", True),
    ("::ffff:127.0.0.1:5", True), ("10.0.0.2:5", False), ("::ffff:10.0.0.2:5", False),
    ("fe80::1:5", False)])
def test_protected_mode_decision(peer: str, local: bool) -> None:
    open_server = AccessControl()
    assert open_server.refuses(peer) is not local
    assert not AccessControl(protected_mode=False).refuses(peer)
    assert not AccessControl(requirepass=b"x").refuses(peer)
    assert is_loopback(peer.rpartition(":")[0]) is local

