"""Redis glob patterns: fixed cases, and a differential check against an
independent byte-by-byte interpreter of Redis's stringmatchlen rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockworks.storage.glob import compile_glob, glob_match


def reference_match(pattern: bytes, key: bytes) -> bool:
    """A direct interpreter (backtracking on '*') written from Redis's rules,
    sharing no code with the regex translation under test."""
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
            return any(reference_match(pattern[p + 1 :], key[i:]) for i in range(s, len(key) + 1))
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
                    lo, hi = sorted((pattern[p], pattern[p + 2]))
                    matched |= lo <= key[s] <= hi
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
    (b"user:*:name", b"user:42:name", True),
    (b"user:*:name", b"user:42:mail", False),
]


@pytest.mark.parametrize(("pattern", "key", "expected"), CASES)
def test_cases(pattern: bytes, key: bytes, expected: bool) -> None:
    assert glob_match(pattern, key) is expected
    assert reference_match(pattern, key) is expected


def test_compiled_matchers_are_cached() -> None:
    assert compile_glob(b"x*y") is compile_glob(b"x*y")


alphabet = st.sampled_from(list(b"ab-^]\\[*?\n\xff"))
patterns = st.lists(alphabet, max_size=8).map(bytes)
texts = st.lists(st.sampled_from(list(b"ab-^]\\[*?\n\xff")), max_size=8).map(bytes)


@settings(max_examples=2000, deadline=None)
@given(patterns, texts)
def test_matches_reference_interpreter(pattern: bytes, key: bytes) -> None:
    assert glob_match(pattern, key) == reference_match(pattern, key)
