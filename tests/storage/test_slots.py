"""The SCAN slot index compacts a little at a time (storage/slots.py).

Invariants checked after every step of random create/delete churn: the
sequence numbers ascend, every live key has a slot, the list stays within
the bound the module docstring promises, and no single creation examines
more than ``STEP`` old slots (the pause that issue #10 measured at 48 ms).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sockworks.storage import slots as slots_module
from sockworks.storage.memory import MemoryStore
from sockworks.storage.slots import REBUILD_FACTOR, REBUILD_FLOOR, STEP, SlotIndex


def check(index: SlotIndex, live: dict[bytes, None]) -> None:
    assert all(a < b for a, b in zip(index.seqs, index.seqs[1:], strict=False))
    assert len(index.keys) == len(index.seqs)
    assert set(live) <= set(index.keys)
    # A job starts past 2n + floor and needs n_slots / STEP creations.
    bound = (REBUILD_FACTOR + 1) * (len(live) + REBUILD_FLOOR) * (1 + 1 / STEP) + 1
    assert len(index.keys) <= bound


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 300)), max_size=6000))
def test_churn_keeps_the_invariants(ops: list[tuple[bool, int]]) -> None:
    live: dict[bytes, None] = {}
    index = SlotIndex(live)
    for create, n in ops:
        key = b"k%d" % n
        if create and key not in live:
            live[key] = None
            index.add(key)
        elif not create:
            live.pop(key, None)
        check(index, live)
    index.compact()
    assert not index.compacting
    assert None not in index.keys
    # compacted: live keys once each
    assert sorted(k for k in index.keys if k is not None) == sorted(live)


class CountingIndex(SlotIndex):
    """Records each compaction step's budget."""

    def __init__(self, live: dict[bytes, None]) -> None:
        super().__init__(live)
        self.budgets: list[int] = []

    def _advance(self, budget: int) -> None:
        self.budgets.append(budget)
        super()._advance(budget)


def test_one_creation_examines_at_most_step_old_slots() -> None:
    live: dict[bytes, None] = {}
    index = CountingIndex(live)
    for i in range(50_000):
        live[b"%d" % i] = None
        index.add(b"%d" % i)
    for i in range(50_000):
        del live[b"%d" % i]
    started = False
    for i in range(60_000):
        key = b"new%d" % i
        live[key] = None
        index.add(key)
        started = started or index.compacting
        if started and not index.compacting:
            break
    assert started and not index.compacting, "the compaction job never finished"
    assert index.budgets and max(index.budgets) == STEP
    assert len(index.keys) == len(live)  # the 50,000 dead slots are gone


def test_store_scan_sees_every_key_across_incremental_compactions() -> None:
    # A scan that runs while jobs start and finish still returns every key
    # present for the whole scan (the SCAN guarantee).
    store = MemoryStore()
    stable = {b"stable:%d" % i for i in range(500)}
    for key in stable:
        store.set(key, b"v")
    seen: set[bytes] = set()
    cursor, churn, jobs = 0, 0, 0
    was_compacting = False
    for _ in range(10_000):
        cursor, found = store.scan(cursor, None, 10)
        seen.update(found)
        for _ in range(200):
            store.set(b"churn:%d" % churn, b"v")
            store.delete([b"churn:%d" % churn])
            churn += 1
            now = store._slots.compacting
            jobs += was_compacting and not now
            was_compacting = now
        if cursor == 0:
            break
    assert cursor == 0
    assert jobs >= 2, "the churn should have run whole compactions mid-scan"
    assert stable <= seen
    assert slots_module.STEP == STEP
