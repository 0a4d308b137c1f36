"""Redis glob patterns: fixed cases, and a differential check against an
independent byte-by-byte interpreter of Redis's stringmatchlen rules."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockworks.storage.glob import compile_glob, glob_match
from tests.redis_support import RedisServer, shared_redis_server_fixture  # noqa: F401  (fixture)


def signed(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def reference_match(pattern: bytes, key: bytes) -> bool:
    """A direct interpreter (backtracking on '*') written from Redis's rules,
    sharing no code with the regex translation under test."""
    if not key:  # Redis's loop never runs; KEYS/SCAN special-case "*"
        return pattern in (b"", b"*")
    p = 0
    s = 0
    n = len(pattern)
    while p < n:
        c = pattern[p]
        if c == ord("*"):
            while p + 1 < n and pattern[p + 1] == ord("*"):
                p += 1
            if p + 1 == n:
                return True
            rest = pattern[p + 1 :]
            if any(reference_match(rest, key[i:]) for i in range(s, len(key))):
                return True
            # Having consumed the whole key, only stars may remain.
            return rest.strip(b"*") == b""
        if s >= len(key):
            return False
        if c == ord("?"):
            s += 1
        elif c == ord("["):
            p += 1
            negate = p < n and pattern[p] == ord("^")
            if negate:
                p += 1
            matched = False
            while True:
                if p < n and pattern[p] == ord("\\") and p + 1 < n:
                    p += 1
                    matched |= pattern[p] == key[s]
                elif p < n and pattern[p] == ord("]"):
                    break
                elif p >= n:
                    p -= 1
                    break
                elif p + 2 < n and pattern[p + 1] == ord("-"):
                    # Redis compares C chars: signed on x86-64.
                    lo, hi = sorted((signed(pattern[p]), signed(pattern[p + 2])))
                    matched |= lo <= signed(key[s]) <= hi
                    p += 2
                else:
                    matched |= pattern[p] == key[s]
                p += 1
            if negate:
                matched = not matched
            if not matched:
                return False
            s += 1
        else:
            if c == ord("\\") and p + 1 < n:
                p += 1
            if pattern[p] != key[s]:
                return False
            s += 1
        p += 1
    return s == len(key)


CASES = [
    (b"*", b"", True),
    (b"**", b"", False),  # Redis: the empty key matches only "*" and ""
    (b"", b"", True),
    (b"", b"a", False),
    (b"a**", b"a", True),
    (b"*", b"anything\n\x00", True),
    (b"a*", b"abc", True),
    (b"a*", b"bac", False),
    (b"*c", b"abc", True),
    (b"a**c", b"ac", True),
    (b"a?c", b"abc", True),
    (b"a?c", b"ac", False),
    (b"?", b"\xff", True),
    (b"?", b"\n", True),
    (b"h[ae]llo", b"hello", True),
    (b"h[ae]llo", b"hillo", False),
    (b"h[^e]llo", b"hallo", True),
    (b"h[^e]llo", b"hello", False),
    (b"h[a-b]llo", b"hbllo", True),
    (b"h[a-b]llo", b"hcllo", False),
    (b"h[b-a]llo", b"hallo", True),  # reversed range is swapped
    (b"\\*", b"*", True),
    (b"\\*", b"a", False),
    (b"\\?x", b"?x", True),
    (b"[\\]]", b"]", True),
    (b"[\\-]", b"-", True),
    (b"[]", b"a", False),  # empty class matches nothing
    (b"[]a]", b"]", False),  # ']' first closes the class: then 'a]' is literal
    (b"[]a]", b"xa]", False),
    (b"[^]", b"q", True),
    (b"[abc", b"b", True),  # unclosed class runs to the end
    (b"[", b"a", False),
    (b"a\\", b"a\\", True),  # a trailing backslash is literal
    (b"a.c", b"abc", False),  # regex syntax means nothing
    (b"(a|b)", b"a", False),
    (b"a+", b"aa", False),
    (b"^a$", b"^a$", True),
    (b"\xff*", b"\xff\xfe", True),
    (b"[\x00-\x10]", b"\x05", True),
    (b"[\xff-a]", b"\x00", True),  # range ends are signed chars, as in Redis on x86-64
    (b"[\xff-a]", b"\xfe", False),
    (b"[\x00-\xff]", b"\x80", False),
    (b"user:*:name", b"user:42:name", True),
    (b"user:*:name", b"user:42:mail", False),
]


@pytest.mark.parametrize(("pattern", "key", "expected"), CASES)
def test_cases(pattern: bytes, key: bytes, expected: bool) -> None:
    assert glob_match(pattern, key) is expected
    assert reference_match(pattern, key) is expected


def test_compiled_matchers_are_cached() -> None:
    assert compile_glob(b"x*y") is compile_glob(b"x*y")


@pytest.mark.timeout(30)
def test_nested_stars_do_not_backtrack() -> None:
    """Redis's keyspace unit: "pattern matching long nested loops". As a
    regex, a*a*...*b against a run of a's backtracked for minutes under the
    store lock; placed segment by segment it is linear per segment."""
    match = compile_glob(b"a*" * 40 + b"b")
    assert not match(b"a" * 5000)
    assert match(b"a" * 5000 + b"b")
    assert compile_glob(b"*a*[ab]?*b*")(b"xxaxbyyb") and not compile_glob(b"*a*b*c")(b"cba" * 2000)


@pytest.mark.redis
def test_more_nested_stars_than_redis_allows_match_nothing(
        shared_redis_server: RedisServer) -> None:
    """Redis's keyspace unit: "pattern matching very long nested loops"
    (``*?`` 50000 times matches no key), and where the limit lies, the
    same on a real redis-server (db 9)."""
    redis = pytest.importorskip("redis")
    keys = [b"a" * 1001, b"a" * 1000 + b"b"]
    patterns = [b"*a" * 1000, b"*a" * 1001, b"*a" * 1000 + b"*", b"*a" * 1001 + b"*",
                b"*?" * 1001, b"a*" * 1001]
    client = redis.Redis(host="127.0.0.1", port=shared_redis_server.port, db=9)
    try:
        client.flushdb()
        client.mset({k: b"v" for k in keys})
        for pattern in patterns:
            expected = sorted(client.keys(pattern))
            assert sorted(k for k in keys if glob_match(pattern, k)) == expected, pattern
        assert glob_match(b"*a" * 1000, b"a" * 1001)  # the limit itself still matches
        assert not glob_match(b"*?" * 50000, b"a" * 50000)
        client.flushdb()
    finally:
        client.close()


alphabet = st.sampled_from(list(b"ab-^]\\[*?\n\xff"))
patterns = st.lists(alphabet, max_size=8).map(bytes)
texts = st.lists(st.sampled_from(list(b"ab-^]\\[*?\n\xff")), max_size=8).map(bytes)


@settings(max_examples=2000, deadline=None)
@given(patterns, texts)
def test_matches_reference_interpreter(pattern: bytes, key: bytes) -> None:
    assert glob_match(pattern, key) == reference_match(pattern, key)


@pytest.mark.redis
@pytest.mark.timeout(60)
def test_agrees_with_real_redis_keys(shared_redis_server: RedisServer) -> None:
    """The same patterns over the same keys give the same KEYS answer as a
    real redis-server (db 9, so the shared server's other users are untouched)."""
    redis = pytest.importorskip("redis")
    rng = random.Random(3)
    symbols = b"ab-^]\\[*?\xff"
    key_set = {bytes(rng.choice(symbols) for _ in range(rng.randrange(0, 5)))
               for _ in range(150)}
    client = redis.Redis(host="127.0.0.1", port=shared_redis_server.port, db=9)
    try:
        client.flushdb()
        client.mset({k: b"v" for k in key_set})
        for _ in range(1500):
            pattern = bytes(rng.choice(symbols) for _ in range(rng.randrange(1, 7)))
            expected = sorted(client.keys(pattern))
            assert sorted(k for k in key_set if glob_match(pattern, k)) == expected, pattern
        client.flushdb()
    finally:
        client.close()
