"""The SCAN slot index: every key in creation order, compacted a little at a time.

``MemoryStore`` appends a slot (the key and a sequence number that only
grows) when a key is created. A SCAN cursor is the last sequence number it
examined, so it stays valid whatever happens to the list; random sampling
(eviction's allkeys-* candidates, RANDOMKEY) draws slots. A deleted key
leaves a dead slot behind, and a key deleted and created again leaves a
second slot, so the list needs compacting: keep each live key's newest slot
and every surviving slot's sequence number.

Compacting a list of n slots is an O(n) Python loop: about 50 ms for 300,000
slots, which every other client waited for while the store lock was held
(issue #10: PING p99 48 ms while ``allkeys-lru`` evicted one key per SET).
So it is incremental, as Redis rehashes its dicts: when dead slots outnumber
live keys (``REBUILD_FACTOR`` plus a floor), a compaction job takes the
list's current length as its end and walks backwards from there, a few slots
(``STEP``) per key created, into new lists; slots appended meanwhile stay in
the old list, which SCAN and sampling keep using unchanged. When the walk
reaches the start, the new lists plus the old list's tail (C-speed copies,
about 1 ms per million pointers) replace the old ones. A key the walk found
live and that was deleted and created again before the end keeps two slots
until the next compaction: SCAN may return a key twice, as Redis's may.

allkeys-lru's CLOCK hand (memory.py) walks the same list: ``hand`` is the
position of the next slot it examines, kept on the same slot when a
compaction or reset replaces the lists. A slot whose key it evicted is set
to None (so the key's bytes are freed at once); SCAN, sampling and
compaction treat None as dead. The hand compacts what it passes, so at the
memory limit the Python-level job above rarely runs: since ``kept_from`` it
records the slots it kept (``kept_keys``, ``kept_seqs``: the keys it gave a
second chance), and :meth:`cut` replaces the slots between ``kept_from`` and
the hand with those (two C-speed slice assignments). The memory limit cuts
once the hand has dropped more slots than there are live keys, so the list
stays under about twice the live keys and a cut's copy is paid for by as
many evictions. A job or a reset replacing the lists ends the stretch (the
job drops the same dead slots).

``STEP`` = 4 finishes a job started at ``3n`` slots within ``0.75n`` more
creations, so the list never holds more than about ``3.75n + floor`` slots.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection
from typing import Final

__all__ = ["REBUILD_FACTOR", "REBUILD_FLOOR", "STEP", "SlotIndex"]

#: Compact when the slots exceed live keys by this factor plus the floor (so
#: a small store does not compact constantly).
REBUILD_FACTOR: Final = 2
REBUILD_FLOOR: Final = 1024
#: Old slots a compaction job examines per key created.
STEP: Final = 4


class _Job:
    """One compaction: the slots before ``end`` walked back from ``next``."""

    __slots__ = ("end", "next", "seen", "keys", "seqs")

    def __init__(self, end: int) -> None:
        self.end = end
        self.next = end - 1
        self.seen: set[bytes] = set()
        self.keys: list[bytes | None] = []  # newest first
        self.seqs: list[int] = []


class SlotIndex:
    """Slots (``keys[i]`` created with sequence number ``seqs[i]``, ascending)
    over the live keys in ``live``, which the store owns and mutates."""

    __slots__ = ("keys", "seqs", "next_seq", "hand", "kept_from", "kept_keys", "kept_seqs",
                 "_live", "_job")

    def __init__(self, live: Collection[bytes]) -> None:
        #: None: a dead slot (its key was evicted by the CLOCK hand).
        self.keys: list[bytes | None] = []
        self.seqs: list[int] = []
        self.next_seq = 1
        #: allkeys-lru's CLOCK hand: the next position it examines.
        self.hand = 0
        #: The hand's stretch: the slots it kept since position kept_from.
        self.kept_from = 0
        self.kept_keys: list[bytes] = []
        self.kept_seqs: list[int] = []
        self._live = live
        self._job: _Job | None = None

    def add(self, key: bytes) -> None:
        """A key was created (it is already in ``live``)."""
        self.keys.append(key)
        self.seqs.append(self.next_seq)
        self.next_seq += 1
        if self._job is not None:
            self._advance(STEP)
        elif len(self.keys) > REBUILD_FACTOR * len(self._live) + REBUILD_FLOOR:
            self._job = _Job(len(self.keys))
            self._advance(STEP)

    def compact(self) -> None:
        """Compact now, all at once (a sampler that found only dead slots)."""
        if self._job is None:
            self._job = _Job(len(self.keys))
        self._advance(len(self.keys))

    def reset(self, keys: list[bytes | None]) -> None:
        """Replace every slot with ``keys``, numbered from ``next_seq`` on
        (the hand starts over)."""
        self._job = None
        self.restart(0)
        self.keys = keys
        self.seqs = list(range(self.next_seq, self.next_seq + len(keys)))
        self.next_seq += len(keys)

    @property
    def compacting(self) -> bool:
        return self._job is not None

    @property
    def dropped(self) -> int:
        """Slots the hand passed since kept_from and did not keep."""
        return self.hand - self.kept_from - len(self.kept_keys)

    def cut(self) -> None:
        """Replace the slots the hand passed since kept_from with the ones it
        kept (not while a job walks the lists: positions would shift)."""
        if self._job is not None:
            return
        start, kept = self.kept_from, self.kept_keys
        self.keys[start:self.hand] = kept
        self.seqs[start:self.hand] = self.kept_seqs
        self.restart(start + len(kept))

    def wrap(self) -> None:
        """The hand reached the end: cut, then start over at the front."""
        self.cut()
        self.restart(0)

    def restart(self, hand: int) -> None:
        """A new stretch from ``hand`` (what the old one kept is dropped)."""
        self.hand = self.kept_from = hand
        self.kept_keys = []
        self.kept_seqs = []

    def _advance(self, budget: int) -> None:
        job = self._job
        assert job is not None
        live, keys, seqs = self._live, self.keys, self.seqs
        seen, new_keys, new_seqs = job.seen, job.keys, job.seqs
        i = job.next
        stop = max(-1, i - budget)
        while i > stop:
            key = keys[i]
            if key is not None and key in live and key not in seen:
                seen.add(key)
                new_keys.append(key)
                new_seqs.append(seqs[i])
            i -= 1
        job.next = i
        if i < 0:
            new_keys.reverse()
            new_seqs.reverse()
            new_keys += keys[job.end:]
            new_seqs += seqs[job.end:]
            # The hand stays on the first slot at or after the one it was on.
            hand = self.hand
            self.restart(bisect_left(new_seqs, seqs[hand]) if hand < len(seqs)
                          else len(new_seqs))
            self.keys, self.seqs = new_keys, new_seqs
            self._job = None
