"""Redis glob patterns (KEYS, SCAN MATCH) compiled to a byte matcher.

Sans-IO and pure: :func:`compile_glob` turns a pattern into a function
``bytes -> bool``. The syntax and its corner cases follow Redis's
``stringmatchlen`` (util.c), so a pattern means the same thing on the embedded
store and on a Redis backend:

* ``*`` any run of bytes (also empty), ``?`` exactly one byte;
* ``[abc]`` one of the listed bytes, ``[^abc]`` any other byte, ``[a-z]`` a
  range (a reversed range ``[z-a]`` is swapped, as Redis does). Range ends
  compare as C ``char``: signed on x86-64 Linux, where Redis runs, so bytes
  0x80-0xFF sort *below* 0x00 (``[\xff-a]`` matches 0xFF and 0x00-'a'; a real
  redis-server agrees, see tests/storage/test_glob.py);
* ``\\x`` the byte ``x`` literally, outside and inside brackets; a trailing
  lone ``\\`` matches a backslash;
* quirks kept on purpose: the empty key matches only ``*`` and the empty
  pattern (Redis's loop never runs for it: ``**`` does not match it);
  ``]`` right after ``[`` closes an empty class (which
  matches nothing; ``[^]`` matches any byte); an unclosed ``[`` extends the
  class to the end of the pattern;
* more than ``MAX_NESTING`` stars with pattern after them match nothing
  (Redis's limit on its matcher's recursion).

Each run between stars is translated into a ``re`` bytes pattern where
every bracket class is rendered as an explicit set of byte values, so no
regex syntax from the glob can leak through; the runs are placed without
backtracking (:func:`compile_glob`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

__all__ = ["compile_glob", "glob_match"]

#: Compiled patterns kept: clients repeat the same few MATCH patterns.
GLOB_CACHE_SIZE = 256
#: Redis's stringmatchlen gives up past this many nested stars ("protection
#: against abusive patterns", util.c): each star with more pattern after it
#: recurses once, so a pattern with more such stars matches no key at all.
MAX_NESTING = 1000

_ALL_BYTES = frozenset(range(256))


def _signed(byte: int) -> int:
    """The byte as a C ``char`` on x86-64, where Redis compares range ends."""
    return byte - 256 if byte >= 0x80 else byte


def _byte_class(members: set[int]) -> bytes:
    """A regex atom matching exactly one byte from ``members``."""
    if not members:
        return rb"(?!)"  # matches nothing, like Redis's empty class
    if len(members) == 256:
        return rb"."  # compiled with DOTALL: any byte
    return b"[" + b"".join(re.escape(bytes([b])) for b in sorted(members)) + b"]"


def _parse_class(pattern: bytes, i: int) -> tuple[set[int], int]:
    """Parse a bracket class whose ``[`` is at ``i - 1``.

    Returns the matching byte set and the index just past the class. Mirrors
    the loop in Redis's stringmatchlen so every quirk agrees.
    """
    n = len(pattern)
    negate = i < n and pattern[i] == 0x5E  # '^'
    if negate:
        i += 1
    members: set[int] = set()
    while i < n:
        c = pattern[i]
        if c == 0x5C and i + 1 < n:  # '\\' escapes the next byte
            members.add(pattern[i + 1])
            i += 2
        elif c == 0x5D:  # ']'
            i += 1
            break
        elif i + 2 < n and pattern[i + 1] == 0x2D:  # 'a-z'
            start, end = _signed(c), _signed(pattern[i + 2])
            if start > end:
                start, end = end, start
            members.update(b & 0xFF for b in range(start, end + 1))
            i += 3
        else:
            members.add(c)
            i += 1
    if negate:
        members = set(_ALL_BYTES - members)
    return members, i


def _segments(pattern: bytes) -> list[list[bytes]]:
    """The pattern's runs of one-byte regex atoms between its stars: a
    pattern with k stars has k + 1 segments (some possibly empty)."""
    segments: list[list[bytes]] = [[]]
    out = segments[0]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x2A:  # '*' (a run of stars is one star)
            while i < n and pattern[i] == 0x2A:
                i += 1
            out = []
            segments.append(out)
            continue
        if c == 0x3F:  # '?'
            out.append(rb".")
            i += 1
        elif c == 0x5B:  # '['
            members, i = _parse_class(pattern, i + 1)
            out.append(_byte_class(members))
        elif c == 0x5C and i + 1 < n:  # '\\x'
            out.append(re.escape(pattern[i + 1 : i + 2]))
            i += 2
        else:
            out.append(re.escape(bytes([c])))
            i += 1
    return segments


@lru_cache(maxsize=GLOB_CACHE_SIZE)
def compile_glob(pattern: bytes) -> Callable[[bytes], bool]:
    """Compile ``pattern``; the result tells whether a whole key matches.

    No backtracking: every segment between stars matches a fixed number of
    bytes, so the first is anchored at the start, the last at the end, and
    each middle one is placed at its leftmost match after the one before
    (leftmost is never worse when a star absorbs whatever lies between).
    A key costs O(len(key) x len(pattern)) at worst, never exponential
    (``KEYS a*a*a*...b`` once held the store lock for minutes, as a regex).
    """
    if pattern == b"*":
        return _match_all
    if not pattern:
        return lambda key: not key
    segments = _segments(pattern)
    if len(segments) - 1 - (not segments[-1]) > MAX_NESTING:
        return _match_none
    parts = [(re.compile(b"".join(seg), re.DOTALL), len(seg)) for seg in segments]
    if len(parts) == 1:
        fullmatch = parts[0][0].fullmatch

        def exact(key: bytes) -> bool:
            return bool(key) and fullmatch(key) is not None

        return exact
    (first, first_len), (last, last_len) = parts[0], parts[-1]
    middle = [(regex.search, length) for regex, length in parts[1:-1] if length]
    least = sum(length for _, length in parts)

    def match(key: bytes) -> bool:
        # Redis's matcher never enters its loop for an empty key, so the
        # empty key matches only "" and (through KEYS/SCAN's own shortcut)
        # "*"; "**" or "*?" do not match it. Kept so both backends agree.
        size = len(key)
        if not key or size < least:
            return False
        if first_len and first.match(key, 0, first_len) is None:
            return False
        end = size - last_len
        if last_len and last.match(key, end) is None:
            return False
        pos = first_len
        for search, _length in middle:
            found = search(key, pos, end)
            if found is None:
                return False
            pos = found.end()
        return True

    return match


def _match_all(key: bytes) -> bool:
    return True


def _match_none(key: bytes) -> bool:
    return False


def glob_match(pattern: bytes, key: bytes) -> bool:
    """One-off convenience: does ``key`` match ``pattern``?"""
    return compile_glob(pattern)(key)
