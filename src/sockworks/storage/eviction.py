"""The memory limit's vocabulary: policies, Redis's size units, the per-entry
overhead, and the LFU counter (pure functions, no store state).

``MemoryStore`` (memory.py) keeps ``used_memory`` incrementally: each key
costs ``len(key) + len(value) + ENTRY_OVERHEAD``, and each key with a TTL
``EXPIRY_OVERHEAD`` more. The overheads are CPython's real costs, measured
with tracemalloc (tests/storage/test_eviction.py checks the accounting
against it; docs/storage.md shows the figures):

* ``ENTRY_OVERHEAD``: two bytes objects' headers (key and value: 33 bytes
  each, rounded up by the allocator), the dict entry and its share of the
  index (the table is at most 2/3 full), the SCAN slot (two list pointers
  and the sequence number, an int object) and the access stamp of the
  volatile-lru and LFU policies (one more dict entry);
* ``EXPIRY_OVERHEAD``: the ``_expires`` dict entry, the expiry time (an int
  object) and the heap entry (a 2-tuple and its list pointer).

Policies are Redis's eight ``maxmemory-policy`` names. allkeys-lru is
CLOCK over the keys in creation order (memory.py); volatile-lru uses a logical clock (a
counter bumped on every access) instead of Redis's 24-bit seconds clock:
the same "least recently used first" ordering, exact between accesses less
than a second apart. LFU is Redis's: an 8-bit logarithmic
counter (``lfu-log-factor`` 10) that new keys start at 5, decremented by
one per ``lfu-decay-time`` minute (1) without access, packed with the
16-bit minute of its last decrement.
"""

from __future__ import annotations

import random
from typing import Final

from sockworks.core.limits import memtoull

__all__ = [
    "DEFAULT_SAMPLES",
    "ENTRY_OVERHEAD",
    "EVICTION_POOL_SIZE",
    "EXPIRY_OVERHEAD",
    "LFU_INIT_VAL",
    "MAX_SAMPLES",
    "POLICIES",
    "bytes_to_human",
    "check_policy",
    "check_samples",
    "lfu_counter",
    "lfu_new",
    "lfu_touch",
    "parse_memory",
]

#: Every ``maxmemory-policy`` (Redis's names; ``noeviction`` is the default).
POLICIES: Final = ("noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random",
                   "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl")
#: Keys sampled per eviction (Redis's ``maxmemory-samples`` default).
DEFAULT_SAMPLES: Final = 5
#: Redis accepts 1..64 samples.
MAX_SAMPLES: Final = 64
#: Best candidates kept between evictions (Redis's EVPOOL_SIZE).
EVICTION_POOL_SIZE: Final = 16

#: Bytes a key costs beyond its key and value bytes (see the docstring).
ENTRY_OVERHEAD: Final = 200
#: Bytes a TTL costs (see the docstring).
EXPIRY_OVERHEAD: Final = 150

#: Redis's LFU_INIT_VAL, lfu-log-factor and lfu-decay-time (minutes).
LFU_INIT_VAL: Final = 5
LFU_LOG_FACTOR: Final = 10
LFU_DECAY_MINUTES: Final = 1



#: A memory size as Redis's memtoull reads it (one implementation, in core).
parse_memory = memtoull


def bytes_to_human(n: int) -> str:
    """Redis's bytesToHuman: 1023B, 1.00K, 1.50M, 2.00G ... (powers of 1024)."""
    if n < 1024:
        return f"{n}B"
    for power, suffix in ((2, "K"), (3, "M"), (4, "G"), (5, "T"), (6, "P")):
        if n < 1024**power:
            return f"{n / 1024 ** (power - 1):.2f}{suffix}"
    return f"{n}B"


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"maxmemory-policy must be one of {', '.join(POLICIES)}")
    return policy


def check_samples(samples: int) -> int:
    if not 1 <= samples <= MAX_SAMPLES:
        raise ValueError(f"maxmemory-samples must be 1..{MAX_SAMPLES}")
    return samples


# -- LFU: (last decrement minute << 8) | counter --------------------------------------

def lfu_new(minute: int) -> int:
    """A new key's packed LFU state (counter LFU_INIT_VAL, so it is not the
    first thing evicted before it had a chance to be read)."""
    return ((minute & 0xFFFF) << 8) | LFU_INIT_VAL


def lfu_counter(packed: int, minute: int) -> int:
    """The counter after decay (Redis's LFUDecrAndReturn), not stored."""
    counter = packed & 0xFF
    elapsed = ((minute & 0xFFFF) - (packed >> 8)) & 0xFFFF
    periods = elapsed // LFU_DECAY_MINUTES
    return max(0, counter - periods)


def lfu_touch(packed: int, minute: int, rand: float | None = None) -> int:
    """An access: decay, then a logarithmic increment (Redis's LFULogIncr:
    probability 1 / ((counter - 5) * 10 + 1), saturating at 255)."""
    counter = lfu_counter(packed, minute)
    if counter < 255:
        base = max(0, counter - LFU_INIT_VAL)
        if (random.random() if rand is None else rand) < 1.0 / (base * LFU_LOG_FACTOR + 1):
            counter += 1
    return ((minute & 0xFFFF) << 8) | counter
