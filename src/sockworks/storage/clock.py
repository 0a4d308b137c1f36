"""allkeys-lru's CLOCK hand: one run of slots (the reference, and which runs).

``MemoryStore._evict_clock_now`` (memory.py) moves the hand over the SCAN
slot list (slots.py) a run of slots at a time; :func:`run_reference` is what
one run does, slot by slot from ``hand`` up to ``end``:

* a None slot is dead: skipped;
* a key in ``referenced`` (accessed since the hand last passed it) loses
  its mark and is kept for one more round: its slot stays, and the key and
  its sequence number go to ``kept_keys``/``kept_seqs`` (the stretch
  :meth:`SlotIndex.cut` keeps);
* any other slot is set to None and its key popped from ``data``. A key
  no longer there (deleted since) frees nothing; else it is a victim: its
  TTL (``expires``) and raw mark (``raw``) go too, and the bytes freed are
  ``len(key) + len(value) + overhead`` for a string plus
  ``expiry_overhead`` if it had a TTL. A victim holding anything else (a
  hash, list, set, sorted set or stream) leaves ``aggregates`` and is
  returned in ``others`` as ``(key, value)``: the store accounts for its
  size and signals a stream's blocked readers.

It returns ``(victims, bytes freed, others or None)``. A key with two slots
in the run (deleted and created again) that is referenced keeps its first
slot and loses its mark there, so its second slot evicts it.

The reference does this with C-level builtins over the whole run (slice
copies, ``map(dict.pop, ...)``, ``sum(map(len, ...))``). The compiled
``sockworks.storage._clock`` (setup.py builds it where it can) does it in
one C loop at less than half the cost per victim, which is most of what a
SET costs extra at the limit (benchmarks/README.md, "Memory limit"); it
must match the reference exactly (tests/storage/test_clock_differential.py).
:data:`run` is the compiled one unless ``SOCKWORKS_NO_EXTENSIONS`` is set
(protocols/accel.py) or it was not built.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, cast

__all__ = ["COMPILED", "Run", "run", "run_reference"]

#: ``run(keys, seqs, hand, end, data, referenced, aggregates, kept_keys,
#: kept_seqs, expires, raw, overhead, expiry_overhead)``.
Run = Callable[..., tuple[int, int, list[tuple[bytes, Any]] | None]]

#: A run keeps at most this many keys before it finds their slots with
#: ``list.index`` (C, one pass per key) rather than one Python-level pass.
_FEW_KEPT = 8


def run_reference(keys: list[bytes | None], seqs: list[int], hand: int, end: int,
                  data: dict[bytes, Any], referenced: set[bytes], aggregates: set[bytes],
                  kept_keys: list[bytes], kept_seqs: list[int], expires: dict[bytes, int],
                  raw: set[bytes], overhead: int, expiry_overhead: int
                  ) -> tuple[int, int, list[tuple[bytes, Any]] | None]:
    """One run of the hand over ``keys[hand:end]`` (the module docstring)."""
    run = keys[hand:end]
    keys[hand:end] = itertools.repeat(None, end - hand)
    kept = referenced.intersection(run) if referenced else None
    if kept:
        referenced.difference_update(kept)
        # Each kept key's first slot in the run, in order.
        if len(kept) <= _FEW_KEPT:
            places = sorted(map(run.index, kept))
        else:
            places, pending = [], set(kept)
            for i, key in enumerate(run):
                if key in pending:
                    pending.discard(key)
                    places.append(i)
        for i in places:
            key = cast("bytes", run[i])
            keys[hand + i] = key
            kept_keys.append(key)
            kept_seqs.append(seqs[hand + i])
        for i in reversed(places):
            del run[i]
    # A None slot (dead) pops nothing: the count of keys removed tells
    # whether every slot held a victim (no None comparisons: None == bytes
    # is a slow rich comparison in C).
    victims = cast("list[bytes]", run)
    before = len(data)
    values = list(map(data.pop, victims, itertools.repeat(None)))
    others: list[tuple[bytes, Any]] | None = None
    if before - len(data) != len(victims) or (aggregates and not aggregates.isdisjoint(victims)):
        # Dead slots (None, or a key deleted since) or aggregate values: one by one.
        evicted = freed = 0
        for key, value in zip(victims, values, strict=True):
            if value is None:
                continue
            evicted += 1
            if value.__class__ is bytes:
                freed += len(key) + len(value) + overhead
            else:
                aggregates.discard(key)
                if others is None:
                    others = []
                others.append((key, value))
    else:
        evicted = len(victims)
        freed = sum(map(len, victims)) + sum(map(len, values)) + overhead * evicted
    if raw:
        raw.difference_update(victims)
    if expires:
        gone = list(map(expires.pop, victims, itertools.repeat(None)))
        freed += expiry_overhead * (len(gone) - gone.count(None))
    return evicted, freed, others


def _select() -> tuple[Any, Run]:
    from sockworks.protocols.accel import compiled, disabled

    module = None if disabled() else compiled("sockworks.storage._clock")
    return module, (run_reference if module is None else cast("Run", module.run))


#: The compiled module in use (None: the reference runs).
COMPILED, run = _select()
