"""The embedded store: a dict of bytes, expiry, SCAN, counters, one lock.

Thread-safety: one ``threading.RLock`` guards all state; every public method
takes it for its whole duration, so each call is atomic; :meth:`run_grouped`
(and so the default ``execute_batch``, MULTI/EXEC) and :meth:`atomic` hold it
across a function or a block (``isolates_groups`` is True). It is re-entrant
so store methods may be called inside them. ``atomic()`` is this store's own,
not part of the Store contract (the Redis backend cannot offer it).

Expiry: ``_expires`` maps a key to its absolute wall-clock expiry in ms (wall
clock, not monotonic, because persisted expiry must survive a restart). A key
past its time is never returned: every access checks it (lazy expiry, like
Redis's expireIfNeeded). Memory is reclaimed by :meth:`expire_cycle`, run by a
background sweeper thread (:meth:`start_expiry`; stopped by :meth:`close`).
Instead of Redis's random sampling it pops a min-heap of (expire_at, key)
entries, so it finds every due key without scanning; stale heap entries (TTL
changed or key gone) are skipped, and the heap is rebuilt when they pile up.
Each cycle does bounded work (``EXPIRE_BATCH`` keys per lock hold,
``EXPIRE_CYCLE_BUDGET`` seconds in all) so clients are never starved.

SCAN guarantee: every key created gets the next number of a global sequence
and a slot in a list ordered by it; the cursor is the sequence number of the
last slot examined, packed with the sequence number the scan started at:
keys created after that need not be returned (they were not there for the
whole scan), so a scan ends even while new keys keep arriving. COUNT is the
number of live keys examined per call. A key that exists for the whole scan keeps its slot, so
it is returned at least once, whatever else is added or deleted meanwhile. A
key deleted and re-created gets a new slot and may be returned twice (Redis
allows duplicates too). Dead slots are dropped when they outnumber live keys,
keeping sequence numbers, so outstanding cursors stay valid.

Memory limit (eviction.py has the vocabulary): ``_used`` is the store's own
count of bytes: key and value lengths plus a per-entry overhead, and an
expiry overhead per TTL, kept up to date by every change (O(1) per command;
never a scan, except once after a replay). When ``maxmemory`` is set, every
write call first checks it (as Redis checks before a ``denyoom`` command):
over the limit it evicts keys by the policy, or raises OutOfMemory under
``noeviction`` or when nothing evictable is left. Like Redis, the check is
made before the write, so memory may exceed the limit by what one command
adds. Evictions are logged as deletions (write-ahead, like any write), so a
replay gives the same data. Candidates are sampled (``maxmemory-samples``)
from the SCAN slots (allkeys-*) or the expiry heap (volatile-*), through a
pool of the best 16 seen (Redis's eviction pool); volatile-ttl takes the
heap's head, so it evicts the soonest-expiring key exactly, and
allkeys-lru is CLOCK over the SCAN slots (keys in creation order): a key
accessed after its creation is marked (``_referenced``) and kept for one
more round of the hand, which evicts in batches down to a little below the
limit (``_evict_clock``; sampling in Python cost 13 us per eviction).
volatile-lru and the LFU policies keep a stamp per key in ``_access``; the
others pay nothing for either.

WATCH: ``_watchers`` maps each watched key to the client WatchSets watching
it (empty when nobody watches, so a write pays one falsy-dict test). Every
change passes through a few places, and each one touches the key: ``_put``,
``_remove`` (deletion, eviction, lazy and active expiry), ``_set_expiry``,
PERSIST, FLUSHDB, and the data model's ``log`` (every data-model write logs
its effects before applying them, including in-place changes of a hash,
list, set or sorted set). Touching marks the watchers dirty and drops their
registrations (Redis's touchWatchedKey: a dirty client's EXEC fails anyway).

Streams: a stream deleted (DEL, expiry, eviction, FLUSHDB, RENAME away) or
overwritten by another type is signalled like a push (``_stream_gone``), so
clients blocked in XREADGROUP on it are answered at once, as Redis's
signalDeletedKeyAsReady does; WATCH sees only the stream writes Redis
signals (``_UNSIGNALLED``).

Persistence hook: a subclass that sets ``_persistent`` receives every write as
a log payload (records.py format) through :meth:`_log` *before* the change is
applied, under the lock; if ``_log`` raises, nothing changes.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import logging
import random
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from sockworks.storage import clock, eviction, records
from sockworks.storage.base import (
    IntegerOverflow,
    NotAnInteger,
    OutOfMemory,
    SetResult,
    Store,
    StoreError,
    WatchSet,
    WrongType,
)
from sockworks.storage.functions import LOG_PREFIX as FUNCTION_LOG_PREFIX
from sockworks.storage.functions import FunctionLibraries
from sockworks.storage.gate import ExclusiveGate
from sockworks.storage.glob import compile_glob
from sockworks.storage.model.table import COMMANDS as MODEL_COMMANDS
from sockworks.storage.model.table import FREE_SUBCOMMANDS
from sockworks.storage.model.table import PREPARE as MODEL_PREPARE
from sockworks.storage.model.table import REPLAY as MODEL_REPLAY
from sockworks.storage.model.values import (
    Encodings,
    ListValue,
    StreamValue,
    Value,
    ZSetValue,
    type_name,
    value_size,
)
from sockworks.storage.slots import REBUILD_FACTOR, REBUILD_FLOOR, SlotIndex

V = TypeVar("V")

__all__ = ["MemoryStore", "parse_int64", "wall_clock_ms"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1

#: Sweeper period: Redis runs activeExpireCycle at hz=10.
EXPIRE_INTERVAL = 0.1
#: Keys expired per lock hold; bounds the pause a cycle causes a client.
EXPIRE_BATCH = 1000
#: Wall time one cycle may spend (Redis: 25% of a 100 ms tick).
EXPIRE_CYCLE_BUDGET = 0.025
#: SCAN skips at most this many dead slots per requested key (Redis visits
#: up to COUNT*10 empty buckets per call).
SCAN_DEAD_FACTOR = 10
#: SCAN examines at most this many live keys per call whatever COUNT says
#: (plus up to SCAN_DEAD_FACTOR times as many dead slots), so one
#: ``SCAN 0 COUNT 100000000`` cannot stall every other client: about 10 ms
#: of work here; the cursor it returns stays valid.
SCAN_MAX_COUNT = 10_000
#: Keys one command may evict before it goes ahead anyway (Redis's
#: EVICT_RUNNING: progress was made, the next command continues), so a
#: lowered limit does not stall one client for a whole store's eviction.
EVICT_BATCH = 1000
#: allkeys-lru evicts down to limit - limit / 2**this (1/1024: 32 KB at
#: 32 MB, about a hundred small keys) so the eviction loop runs once per
#: that many writes instead of once per write (in-process, a SET at the
#: limit went from 1.76 to 1.33 us). Memory still never exceeds the limit by more
#: than one command added; a few more keys go than Redis would evict.
CLOCK_HYSTERESIS_SHIFT = 10
#: Most slots the allkeys-lru hand takes in one run (_evict_clock_now).
CLOCK_RUN = 256
#: Types whose new keys may serve blocked clients (BLPOP..., BZPOPMIN..., XREAD).
_WAKING = (ListValue, ZSetValue, StreamValue)
#: Logged stream effects that are no change for WATCH: Redis's t_stream.c
#: signals a modified key only for XADD, XDEL, XTRIM and XGROUP CREATE
#: MKSTREAM (group and PEL changes never abort a watcher's EXEC).
_UNSIGNALLED = frozenset((b"XACK", b"XCLAIM", b"XSETID", b"XSTATE"))
#: INFO's avg_ttl is exact up to this many keys with a TTL, else the mean of
#: this many drawn at random (about a millisecond of work under the lock).
AVG_TTL_SAMPLES = 1000
#: Random draws per sample before giving up on a list of mostly dead slots
#: (then it is compacted and tried once more).
_SAMPLE_TRIES = 64
#: _track values: which access stamp keys carry. allkeys-lru keeps only a
#: reference mark for keys accessed after their creation (_CLOCK, see
#: _evict_clock), so a new key costs it nothing.
_NO_TRACKING, _LRU, _LFU, _CLOCK = 0, 1, 2, 3

# Redis's string2ll accepts exactly this: optional '-', no leading zeros,
# no '+', no spaces; "-0" is refused too.
_CANONICAL_INT = re.compile(rb"-?(?:0|[1-9][0-9]{0,19})")
_SET_HEAD = struct.Struct("<BI")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")


def _encode_cursor(pos: int, limit: int) -> int:
    """Pack the last sequence number examined and the scan's end into one
    integer: low 6 bits hold pos's bit length. Below 2**29 keys created in a
    process's life the cursor fits in 64 bits, as Redis clients expect."""
    width = pos.bit_length()
    return (((limit << width) | pos) << 6) | width


def _decode_cursor(cursor: int) -> tuple[int, int]:
    width = cursor & 63
    rest = cursor >> 6
    return rest & ((1 << width) - 1), rest >> width


#: The result of every plain SET (SetResult is frozen: safe to share).
_WRITTEN = SetResult(True)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_int64(value: bytes) -> int:
    """Parse a canonical base-10 signed 64-bit integer, as Redis does."""
    if _CANONICAL_INT.fullmatch(value) is None or value == b"-0":
        raise NotAnInteger()
    number = int(value)
    if not I64_MIN <= number <= I64_MAX:
        raise NotAnInteger()
    return number


class MemoryStore(Store):
    """In-memory store; see the module docstring for the contracts."""

    isolates_groups = True
    supports_watch = True

    def __init__(self, *, clock: Callable[[], int] = wall_clock_ms, maxmemory: int = 0,
                 maxmemory_policy: str = "noeviction",
                 maxmemory_samples: int = eviction.DEFAULT_SAMPLES) -> None:
        self._lock = threading.RLock()
        self.script_gate = ExclusiveGate()
        self.function_libraries: FunctionLibraries = FunctionLibraries(self._lock, self._log,
                                                                        self._account)
        self._clock = clock
        self._data: dict[bytes, Value] = {}
        #: Keys holding an aggregate (hash, list, set, zset): a log rewrite
        #: copies those values under the lock (strings are immutable).
        self._aggregates: set[bytes] = set()
        #: Called with a key that got list/zset elements (blocking pops).
        self.on_push: Callable[[bytes], None] | None = None
        #: Called (lock held) when the outermost command or group that
        #: pushed has finished: blocked clients are served then, as Redis
        #: serves them after the command or EXEC, before any other client.
        self.on_settle: Callable[[], None] | None = None
        self._depth = 0
        self._signalled = False
        self._expires: dict[bytes, int] = {}
        #: Watched key -> the WatchSets watching it (module docstring).
        self._watchers: dict[bytes, set[WatchSet]] = {}
        self._heap: list[tuple[int, bytes]] = []
        #: OBJECT ENCODING's thresholds (CONFIG SET hash-max-listpack-entries ...).
        self.encodings = Encodings()
        #: SCAN cursors and random sampling (slots.py).
        self._slots = SlotIndex(self._data)
        self._hits = 0
        self._misses = 0
        self._expired = 0
        #: Told of every key expired or evicted, ("expired" | "evicted", key),
        #: and of stream events (``notify``), with the lock held (keyspace
        #: notifications); None: nobody asks.
        self.key_events: Callable[[str, bytes], None] | None = None
        self._closed = False
        #: True while the log replays: nothing expires then (Redis's
        #: keyIsExpired while loading), since a later record may have kept
        #: the key (PERSIST, a new TTL); what is past due goes at the end.
        self._loading = False
        self._persistent = False
        self._sweeper: threading.Thread | None = None
        self._sweeper_stop = threading.Event()
        self._used = 0
        self._evicted = 0
        #: key -> LRU tick or packed LFU state (only under those policies).
        self._access: dict[bytes, int] = {}
        self._tick = 0
        #: allkeys-lru: keys accessed since the CLOCK hand last passed them.
        self._referenced: set[bytes] = set()
        #: Eviction pool: candidate key -> score (higher: evict sooner).
        self._pool: dict[bytes, int] = {}
        #: Strings changed in place: OBJECT ENCODING "raw" (mark_raw).
        self._raw: set[bytes] = set()
        self._maxmemory = 0
        #: memory_limit_lifted(): an allow-oom script is running (lock held).
        self._lifted = False
        self._policy = "noeviction"
        self._samples = eviction.DEFAULT_SAMPLES
        self._track = _NO_TRACKING
        self._stamp_new = False
        self.configure_memory(maxmemory=maxmemory, policy=maxmemory_policy,
                              samples=maxmemory_samples)

    def configure_memory(self, *, maxmemory: int | None = None, policy: str | None = None,
                         samples: int | None = None) -> None:
        """Set the limit, policy or sample count (CONFIG SET); ValueError if invalid."""
        if maxmemory is not None and maxmemory < 0:
            raise ValueError("maxmemory must be >= 0")
        if policy is not None:
            eviction.check_policy(policy)
        if samples is not None:
            eviction.check_samples(samples)
        with self._lock:
            if maxmemory is not None:
                self._maxmemory = maxmemory
            if samples is not None:
                self._samples = samples
            if policy is not None and policy != self._policy:
                self._policy = policy
                track = (_CLOCK if policy == "allkeys-lru" else
                         _LRU if policy.endswith("-lru") else
                         _LFU if policy.endswith("-lfu") else _NO_TRACKING)
                if track != self._track:
                    self._access = {}
                    self._referenced = set()
                    self._track = track
                    # A new key's age under allkeys-lru is its slot.
                    self._stamp_new = track in (_LRU, _LFU)
                self._pool = {}
    # -- hooks for the persistent subclass -------------------------------
    def _log(self, payload: bytes) -> None:
        """Make ``payload`` durable-as-configured before it is applied."""

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    # -- internal state changes (lock held) ------------------------------
    def _live(self, key: bytes, now: int) -> Value | None:
        value = self._data.get(key)
        if value is not None and self._expires:
            at = self._expires.get(key)
            if at is not None and at <= now and not self._loading:
                self._remove(key)
                self._expired += 1
                if self.key_events is not None:
                    self.key_events("expired", key)
                return None
        return value

    def _touch_watched(self, key: bytes, gone: bool = False) -> None:
        """``key`` changed: its watchers' EXEC must fail (Redis's
        touchWatchedKey). ``gone``: the change removes it; a key that was
        already expired when watched and is now removed is no change
        (Redis 7): its flag is cleared instead."""
        watchers = self._watchers.get(key)
        if watchers is None:
            return
        for watch in list(watchers):
            if gone and watch.keys.get(key):
                watch.keys[key] = False
                continue
            watch.dirty = True
            self._forget_watch(watch)

    def _forget_watch(self, watch: WatchSet) -> None:
        for key in watch.keys:
            watchers = self._watchers.get(key)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._watchers[key]
        watch.keys.clear()

    def _set_expiry(self, key: bytes, at: int) -> None:
        if self._watchers:
            self._touch_watched(key)
        old = self._expires.get(key)
        if old == at:
            return
        if old is None:
            self._used += eviction.EXPIRY_OVERHEAD
        self._expires[key] = at
        heapq.heappush(self._heap, (at, key))
        if len(self._heap) > REBUILD_FACTOR * len(self._expires) + REBUILD_FLOOR:
            self._heap = [(t, k) for k, t in self._expires.items()]
            heapq.heapify(self._heap)

    def _put(self, key: bytes, value: Value, at: int) -> None:
        if self._watchers:
            self._touch_watched(key)
        if self._raw:
            self._raw.discard(key)
        data = self._data
        old = data.get(key)
        data[key] = value
        if value.__class__ is bytes:
            # A string (the hot path): sizes are plain lengths.
            if old is None:
                # After the assignment: a slot compaction keeps live keys only.
                self._slots.add(key)
                self._used += len(key) + len(value) + eviction.ENTRY_OVERHEAD
            elif old.__class__ is bytes:
                self._used += len(value) - len(old)
            else:
                self._used += len(value) - value_size(old)
                self._aggregates.discard(key)
        else:
            if old is None:
                self._slots.add(key)
                self._used += len(key) + value_size(value) + eviction.ENTRY_OVERHEAD
            else:
                self._used += value_size(value) - value_size(old)
            self._aggregates.add(key)
        if at:
            self._set_expiry(key, at)
        elif self._expires and self._expires.pop(key, None) is not None:
            self._used -= eviction.EXPIRY_OVERHEAD
        if old is None:
            if self._stamp_new:
                self._touch(key)
        elif self._track:
            self._touch(key)
        if old.__class__ is StreamValue and value.__class__ is not StreamValue:
            self._stream_gone(key)  # overwritten by another type (SET, COPY ... REPLACE)

    def _stream_gone(self, key: bytes) -> None:
        """A stream was deleted or overwritten: clients blocked in
        XREADGROUP on it are answered (Redis's signalDeletedKeyAsReady), at
        once when no command or group is running, else when it ends."""
        if self.on_push is not None:
            self.signal(key)
            if not self._depth:
                self._settle()

    def _remove(self, key: bytes) -> None:
        value = self._data.pop(key)
        if self._watchers:
            self._touch_watched(key, gone=True)
        if self._raw:
            self._raw.discard(key)
        if value.__class__ is not bytes:
            self._aggregates.discard(key)
            self._used -= len(key) + value_size(value) + eviction.ENTRY_OVERHEAD
        else:
            self._used -= len(key) + len(value) + eviction.ENTRY_OVERHEAD
        if self._expires and self._expires.pop(key, None) is not None:
            self._used -= eviction.EXPIRY_OVERHEAD
        if self._track:
            if self._track == _CLOCK:
                if self._referenced:
                    self._referenced.discard(key)
            else:
                self._access.pop(key, None)
        if value.__class__ is StreamValue:
            self._stream_gone(key)  # last: the bookkeeping above is done

    def _touch(self, key: bytes) -> None:
        """Stamp an access (LRU: the next tick; LFU: Redis's counter;
        allkeys-lru: mark the key referenced for the CLOCK hand)."""
        track = self._track
        if track == _CLOCK:
            self._referenced.add(key)
        elif track == _LRU:
            self._tick += 1
            self._access[key] = self._tick
        else:
            minute = self._clock() // 60_000
            packed = self._access.get(key)
            self._access[key] = (eviction.lfu_new(minute) if packed is None
                                 else eviction.lfu_touch(packed, minute))

    # -- eviction (lock held) ----------------------------------------------
    def _surely_refused(self) -> bool:
        """Whether a write would now be refused as over maxmemory (read
        without the lock: only a hint, so that work done before the lock
        is not done for a command the lock's check then refuses)."""
        return (bool(self._maxmemory) and not self._lifted and self._policy == "noeviction"
                and self._used > self._maxmemory)

    def _check_memory(self) -> None:
        """Before a write: evict by the policy; OutOfMemory if still over."""
        if not self._make_room():
            raise OutOfMemory()

    def _make_room(self, reserve: int = 0) -> bool:
        """Evict until ``reserve`` more bytes fit under the limit (see
        make_room); False if they cannot."""
        if not self._maxmemory or self._lifted:
            return True
        limit = self._maxmemory - reserve
        if self._used <= limit:
            return True
        if self._policy == "noeviction":
            return False
        if self._track == _CLOCK:
            return self._evict_clock(limit - (limit >> CLOCK_HYSTERESIS_SHIFT))
        for _ in range(EVICT_BATCH):
            key = self._pick_victim()
            if key is None:
                return False
            if self._persistent:
                self._log(records.encode_del([key]))
            self._remove(key)
            self._evicted += 1
            if self.key_events is not None:
                self.key_events("evicted", key)
            if self._used <= limit:
                return True
        return True  # progress made: the next write continues (EVICT_RUNNING)

    def _evict_clock(self, limit: int) -> bool:
        """allkeys-lru: CLOCK (second chance) over the SCAN slot list, which
        holds the keys in creation order. The hand walks it from where it
        stopped last time, wrapping at the end: a dead slot is skipped, a
        key accessed since its creation or the hand's last pass
        (``_referenced``) loses its mark and is kept for one more round, any
        other key is evicted, until memory is under ``limit`` (at most
        EVICT_BATCH keys). So a key goes only once the hand has passed
        every older key, and a key read or written since then survives the
        round: least recently used first, approximated as Redis's sampling
        approximates it, for about the cost of one dict deletion per victim
        (a new key costs the policy nothing: its slot is its age). The hand
        compacts what it passed (slots.py: :meth:`SlotIndex.cut`).

        With a log, the victims are chosen before anything changes, so the
        record (write-ahead, like any write) names exactly the keys removed;
        one record for them all."""
        data = self._data
        if not data:
            return False
        slots = self._slots
        # Two rounds examine every slot twice: every mark is cleared by then.
        steps = 2 * len(slots.keys) + 1
        if not self._persistent and self.key_events is None and not self._watchers:
            evicted = self._evict_clock_now(limit, steps)
        else:
            evicted = self._evict_clock_logged(limit, steps)
        if slots.dropped > len(data) + REBUILD_FLOOR:
            slots.cut()
        self._evicted += evicted
        return evicted > 0 or self._used <= limit

    def _evict_clock_now(self, limit: int, steps: int) -> int:
        """_evict_clock with nothing to log or tell: the victims are removed
        as the hand reaches them, a run of slots at a time (clock.py: one
        call, compiled where it was built, so a victim costs about one dict
        deletion rather than a dozen interpreted lines). A run is as many
        slots as the excess over ``limit`` needs at the average entry size
        (dead slots and kept keys free nothing, so another run follows), at
        most CLOCK_RUN."""
        data, expires, referenced = self._data, self._expires, self._referenced
        aggregates = self._aggregates
        slots = self._slots
        overhead = eviction.ENTRY_OVERHEAD
        run = clock.run
        used = self._used
        evicted = 0
        while used > limit and steps > 0 and evicted < EVICT_BATCH and data:
            keys, hand = slots.keys, slots.hand
            size = len(keys)
            if hand >= size:
                slots.wrap()
                steps -= 1
                continue
            average = used // len(data) or 1
            end = min(size, hand + min(CLOCK_RUN, EVICT_BATCH - evicted,
                                       (used - limit) // average + 1))
            steps -= end - hand
            slots.hand = end
            victims, freed, others = run(keys, slots.seqs, hand, end, data, referenced,
                                         aggregates, slots.kept_keys, slots.kept_seqs, expires,
                                         self._raw, overhead, eviction.EXPIRY_OVERHEAD)
            evicted += victims
            used -= freed
            if others:
                # Aggregates: their size, and a stream's blocked group readers.
                for key, value in others:
                    used -= len(key) + value_size(value) + overhead
                    if value.__class__ is StreamValue:
                        self._used = used
                        self._stream_gone(key)
                        used = self._used
        self._used = used
        return evicted

    def _evict_clock_logged(self, limit: int, steps: int) -> int:
        """_evict_clock choosing the victims first, logging them as one
        deletion, then removing them (WATCH, keyspace events)."""
        data, expires, referenced = self._data, self._expires, self._referenced
        slots = self._slots
        keys, seqs, size = slots.keys, slots.seqs, len(slots.keys)
        start = hand = slots.hand
        kept_keys, kept_seqs = slots.kept_keys, slots.kept_seqs
        overhead = eviction.ENTRY_OVERHEAD
        excess = self._used - limit
        victims: dict[bytes, int] = {}  # key -> its slot (a key may have two)
        while excess > 0 and steps and len(victims) < EVICT_BATCH:
            steps -= 1
            if hand >= size:
                # Positions must stay valid until the victims are removed:
                # start over without cutting (the stretch is given up).
                slots.restart(0)
                hand = 0
                kept_keys, kept_seqs = slots.kept_keys, slots.kept_seqs
                continue
            key = keys[hand]
            hand += 1
            if key is None or key in victims:
                continue
            value = data.get(key)
            if value is None:
                keys[hand - 1] = None  # dead: free the key now
                continue
            if referenced and key in referenced:
                referenced.discard(key)
                kept_keys.append(key)
                kept_seqs.append(seqs[hand - 1])
                continue
            excess -= (len(key) + overhead
                       + (len(value) if value.__class__ is bytes else value_size(value))
                       + (eviction.EXPIRY_OVERHEAD if key in expires else 0))
            victims[key] = hand - 1
        slots.hand = hand
        if not victims:
            return 0
        if self._persistent:
            try:
                self._log(records.encode_del(list(victims)))
            except BaseException:
                # Nothing was removed: the hand goes back, and the stretch
                # restarts there so no cut drops a victim's slot.
                slots.restart(start)
                raise
        remove, events = self._remove, self.key_events
        for key, i in victims.items():
            keys[i] = None
            remove(key)
            if events is not None:
                events("evicted", key)
        return len(victims)

    def _pick_victim(self) -> bytes | None:
        policy = self._policy
        volatile = policy.startswith("volatile-")
        if policy == "volatile-ttl":
            heap, expires = self._heap, self._expires
            while heap:
                at, key = heap[0]
                if expires.get(key) == at:
                    return key
                heapq.heappop(heap)  # stale: TTL changed or key gone
            return None
        if policy.endswith("-random"):
            return self._sample(volatile)
        # LRU / LFU: refill the pool with fresh samples, evict its best.
        pool = self._pool
        now_minute = self._clock() // 60_000
        for _ in range(self._samples):
            sampled = self._sample(volatile)
            if sampled is None:
                break
            pool[sampled] = self._score(sampled, now_minute)
        while pool:
            if len(pool) > eviction.EVICTION_POOL_SIZE:
                ranked = sorted(pool.items(), key=lambda item: item[1], reverse=True)
                pool = self._pool = dict(ranked[:eviction.EVICTION_POOL_SIZE])
            best = max(pool, key=pool.__getitem__)
            del pool[best]
            if best in self._data and (not volatile or best in self._expires):
                return best
        return None

    def _score(self, key: bytes, minute: int) -> int:
        """Eviction score: idle ticks (LRU), 255 - decayed counter (LFU)."""
        stamp = self._access.get(key)
        if self._track == _LRU:
            return self._tick - (stamp or 0)
        if stamp is None:
            return 255 - eviction.LFU_INIT_VAL
        return 255 - eviction.lfu_counter(stamp, minute)

    def _sample(self, volatile: bool) -> bytes | None:
        """A random live key (volatile: one with a TTL), or None if none."""
        for attempt in (0, 1):
            if volatile:
                heap, expires = self._heap, self._expires
                for _ in range(_SAMPLE_TRIES if heap else 0):
                    at, key = heap[random.randrange(len(heap))]
                    if expires.get(key) == at:
                        return key
                if attempt == 0 and expires:
                    self._heap = [(t, k) for k, t in expires.items()]
                    heapq.heapify(self._heap)
                    continue
                return None
            slots, data = self._slots.keys, self._data
            for _ in range(_SAMPLE_TRIES if slots else 0):
                slot = slots[random.randrange(len(slots))]
                if slot is not None and slot in data:
                    return slot
            if attempt == 0 and data:
                self._slots.compact()
                continue
            return None
        return None

    def _expire_due(self, now: int, limit: int) -> tuple[int, bool]:
        """Reclaim up to ``limit`` due heap entries; (expired, more due)."""
        heap, expires = self._heap, self._expires
        done = 0
        steps = 0
        while heap and heap[0][0] <= now and steps < limit:
            at, key = heapq.heappop(heap)
            steps += 1
            if expires.get(key) == at:
                self._remove(key)
                self._expired += 1
                done += 1
                if self.key_events is not None:
                    self.key_events("expired", key)
        return done, bool(heap) and heap[0][0] <= now

    # -- reads -------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            if self._closed:
                self._check_open()
            value = self._data.get(key)
            # The clock is read only for keys that have a TTL (hot path).
            if value is not None and self._expires and key in self._expires:
                value = self._live(key, self._clock())
            if value is None:
                self._misses += 1
            else:
                self._hits += 1
                if self._track:
                    self._touch(key)
                if value.__class__ is not bytes:
                    raise WrongType()
            return value

    def mget(self, keys: Sequence[bytes]) -> list[bytes | None]:
        with self._lock:
            self._check_open()
            now = self._clock()
            # MGET answers nil for a key of another type, as Redis does.
            values: list[bytes | None] = [
                v if v.__class__ is bytes else None
                for v in (self._live(k, now) for k in keys)]
            found = sum(v is not None for v in values)
            if self._track and found:
                for key, value in zip(keys, values, strict=True):
                    if value is not None:
                        self._touch(key)
            self._hits += found
            self._misses += len(values) - found
            return values

    def exists(self, keys: Sequence[bytes]) -> int:
        with self._lock:
            self._check_open()
            now = self._clock()
            return sum(self._live(k, now) is not None for k in keys)

    def pttl(self, key: bytes) -> int:
        with self._lock:
            self._check_open()
            now = self._clock()
            if self._live(key, now) is None:
                return -2
            at = self._expires.get(key)
            return -1 if at is None else at - now

    def dbsize(self) -> int:
        with self._lock:
            self._check_open()
            # Reclaim every due key first so the count is exact (Redis's
            # DBSIZE may count expired keys not yet reclaimed; ours does not).
            now = self._clock()
            while self._expire_due(now, EXPIRE_BATCH)[1]:
                pass
            return len(self._data)

    def keys(self, pattern: bytes) -> list[bytes]:
        match = compile_glob(pattern)
        with self._lock:
            self._check_open()
            now = self._clock()
            expires = self._expires
            return [
                k for k in self._data if match(k) and not (k in expires and expires[k] <= now)
            ]

    def scan(self, cursor: int, match: bytes | None, count: int) -> tuple[int, list[bytes]]:
        if cursor < 0:
            raise StoreError("invalid cursor")
        if count < 1:
            raise StoreError("syntax error")
        matcher = compile_glob(match) if match is not None else None
        count = min(count, SCAN_MAX_COUNT)
        with self._lock:
            self._check_open()
            now = self._clock()
            index = self._slots
            pos, limit = _decode_cursor(cursor) if cursor else (0, index.next_seq)
            slot_keys, slot_seqs = index.keys, index.seqs
            end = bisect.bisect_left(slot_seqs, limit)
            i = bisect.bisect_right(slot_seqs, pos)
            data, expires = self._data, self._expires
            found: list[bytes] = []
            live = dead = 0
            # COUNT counts live keys examined (matching or not), as Redis's
            # counts elements; dead slots are skipped up to SCAN_DEAD_FACTOR
            # times as many, so a call's work stays bounded.
            while i < end and live < count and dead < SCAN_DEAD_FACTOR * count:
                key = slot_keys[i]
                i += 1
                if key is None or key not in data or (key in expires and expires[key] <= now):
                    dead += 1
                    continue
                live += 1
                if matcher is None or matcher(key):
                    found.append(key)
            return (_encode_cursor(slot_seqs[i - 1], limit) if i < end else 0), found

    # -- writes ------------------------------------------------------------
    def set(
        self,
        key: bytes,
        value: bytes,
        *,
        px: int | None = None,
        nx: bool = False,
        xx: bool = False,
        get: bool = False,
        keepttl: bool = False,
    ) -> SetResult:
        if px is None and not (nx or xx or get or keepttl):
            # Plain SET (the hot path): no old value, TTL or condition to look at.
            with self._lock:
                if self._closed:
                    self._check_open()
                if self._maxmemory and self._used > self._maxmemory and not self._make_room():
                    raise OutOfMemory()
                if self._persistent:
                    self._log(records.encode_set(key, value, 0))
                self._put(key, value, 0)
            return _WRITTEN
        if (nx and xx) or (px is not None and keepttl):
            raise StoreError("syntax error")
        if px is not None and px <= 0:
            raise StoreError("invalid expire time in 'set' command")
        with self._lock:
            self._check_open()
            self._check_memory()
            now = self._clock()
            old = self._live(key, now)
            if get and old is not None and old.__class__ is not bytes:
                raise WrongType()
            shown: bytes | None = old if get else None  # type: ignore[assignment]
            if (nx and old is not None) or (xx and old is None):
                return SetResult(False, shown)
            if px is not None:
                at = now + px
                if at > I64_MAX:
                    raise StoreError("invalid expire time in 'set' command")
            elif keepttl and old is not None:
                at = self._expires.get(key, 0)
            else:
                at = 0
            if self._persistent:
                self._log(records.encode_set(key, value, at))
            self._put(key, value, at)
            return SetResult(True, shown)

    def mset(self, pairs: Sequence[tuple[bytes, bytes]]) -> None:
        with self._lock:
            self._check_open()
            if not pairs:
                return
            self._check_memory()
            if self._persistent:
                self._log(records.encode_sets(list(pairs)))
            for key, value in pairs:
                self._put(key, value, 0)

    def delete(self, keys: Sequence[bytes]) -> int:
        with self._lock:
            self._check_open()
            now = self._clock()
            found = [k for k in dict.fromkeys(keys) if self._live(k, now) is not None]
            if found:
                if self._persistent:
                    self._log(records.encode_del(found))
                for key in found:
                    self._remove(key)
            return len(found)

    def incrby(self, key: bytes, delta: int) -> int:
        if not I64_MIN <= delta <= I64_MAX:
            raise NotAnInteger()
        with self._lock:
            self._check_open()
            self._check_memory()
            old = self._live(key, self._clock())
            if old is not None and old.__class__ is not bytes:
                raise WrongType()
            result = (0 if old is None else parse_int64(old)) + delta
            if not I64_MIN <= result <= I64_MAX:
                raise IntegerOverflow()
            value = b"%d" % result
            at = self._expires.get(key, 0) if old is not None else 0
            if self._persistent:
                self._log(records.encode_set(key, value, at))
            self._put(key, value, at)
            return result

    def pexpire(self, key: bytes, ms: int) -> bool:
        with self._lock:
            self._check_open()
            now = self._clock()
            if self._live(key, now) is None:
                return False
            if ms <= 0:
                if self._persistent:
                    self._log(records.encode_del([key]))
                self._remove(key)
                return True
            at = now + ms
            if at > I64_MAX:
                raise StoreError("invalid expire time in 'expire' command")
            if self._persistent:
                self._log(records.encode_expireat(key, at))
            self._set_expiry(key, at)
            return True

    def persist(self, key: bytes) -> bool:
        with self._lock:
            self._check_open()
            if self._live(key, self._clock()) is None or key not in self._expires:
                return False
            if self._persistent:
                self._log(records.encode_persist(key))
            if self._watchers:
                self._touch_watched(key)
            del self._expires[key]
            self._used -= eviction.EXPIRY_OVERHEAD
            return True

    def flushdb(self) -> None:
        with self._lock:
            self._check_open()
            if self._persistent:
                self._log(records.encode_flush())
            # Redis's touchAllWatchedKeysInDb: only watched keys that exist.
            for key in [k for k in self._watchers if k in self._data]:
                self._touch_watched(key, gone=True)
            streams = ([k for k, v in self._data.items() if v.__class__ is StreamValue]
                       if self.on_push is not None else [])
            self._clear()
            self._depth += 1
            try:
                for key in streams:
                    self._stream_gone(key)
            finally:
                self._depth -= 1
            if self._signalled:
                self._settle()

    def _clear(self) -> None:
        self._data.clear()
        self._raw.clear()
        self._aggregates.clear()
        self._expires.clear()
        self._heap.clear()
        self._slots.reset([])
        self._access.clear()
        self._referenced.clear()
        self._pool.clear()
        self._used = self.function_libraries.size  # FLUSHALL keeps them

    def _account(self, delta: int) -> None:
        """FUNCTION libraries' code counts as used memory (as in Redis)."""
        self._used += delta

    # -- the data model (storage/model) ----------------------------------------
    def execute_command(self, argv: Sequence[bytes]) -> Any:
        name = argv[0].lower()
        entry = MODEL_COMMANDS.get(name)
        if entry is None:
            return super().execute_command(argv)
        fn, denyoom = entry
        prepare = MODEL_PREPARE.get(name)
        if prepare is not None and not (denyoom and self._surely_refused()):
            # Work on the arguments alone (RESTORE's CRC64 and decoding)
            # runs before the lock: it stalls no other client.
            fn = prepare(argv, self.encodings)
        with self._lock:
            self._check_open()
            if denyoom and not (len(argv) > 1 and argv[1].lower() in FREE_SUBCOMMANDS.get(
                    name, ())):
                self._check_memory()
            self._depth += 1
            try:
                return fn(self, argv)
            finally:
                self._depth -= 1
                if self._signalled and not self._depth:
                    self._settle()

    # The Keyspace protocol (storage/model/keyspace.py); lock held.
    def now(self) -> int:
        return self._clock()

    def lookup(self, key: bytes) -> Value | None:
        value = self._live(key, self._clock())
        if value is not None and self._track:
            self._touch(key)
        return value

    def typed(self, key: bytes, kind: type[V]) -> V | None:
        value = self._live(key, self._clock())
        if value is None:
            self._misses += 1
            return None
        if value.__class__ is not kind:
            raise WrongType()
        self._hits += 1
        if self._track:
            self._touch(key)
        return value

    def expire_at(self, key: bytes) -> int:
        return self._expires.get(key, 0)

    def put(self, key: bytes, value: Value, at: int = 0) -> None:
        self._put(key, value, at)
        if self.on_push is not None and value.__class__ in _WAKING:
            # A new list or sorted set, however made (ZADD, ZUNIONSTORE,
            # COPY...): Redis's dbAdd signals it for blocked clients.
            self.signal(key)

    def drop(self, key: bytes) -> None:
        self._remove(key)

    def grow(self, value: Value, delta: int) -> None:
        value.nbytes += delta  # type: ignore[union-attr]
        self._used += delta

    def log(self, *commands: Sequence[bytes]) -> None:
        if self._watchers:
            # Every data-model write logs its effects first: the keys they
            # name (RENAME's two) are the keys it changes.
            for cmd in commands:
                if cmd[0] in _UNSIGNALLED:
                    continue
                if cmd[0] == b"XGROUP":
                    if cmd[-1] == b"MKSTREAM":
                        self._touch_watched(cmd[2])
                    continue
                self._touch_watched(cmd[1])
                if cmd[0] == b"RENAME":
                    self._touch_watched(cmd[2])
        if self._persistent:
            self._log(b"".join(
                records.encode_del([cmd[1]]) if cmd[0] == b"DEL" and len(cmd) == 2
                else records.encode_command(cmd) for cmd in commands))

    def mark_raw(self, key: bytes) -> None:
        with self._lock:
            if key in self._data:
                self._raw.add(key)

    def is_raw(self, key: bytes) -> bool:
        return key in self._raw

    def set_string(self, key: bytes, value: bytes, at: int = 0) -> None:
        if self._persistent:
            self._log(records.encode_set(key, value, at))
        self._put(key, value, at)

    def set_expiry(self, key: bytes, at: int) -> None:
        if self._watchers:
            self._touch_watched(key)
        if self._persistent:
            self._log(records.encode_expireat(key, at) if at else records.encode_persist(key))
        if at:
            self._set_expiry(key, at)
        elif self._expires.pop(key, None) is not None:
            self._used -= eviction.EXPIRY_OVERHEAD

    def scan_keys(self, cursor: int, match: bytes | None, count: int,
                  kind: str | None) -> tuple[int, list[bytes]]:
        nxt, keys = self.scan(cursor, match, count)
        if kind is not None:
            data = self._data
            keys = [k for k in keys if k in data and type_name(data[k]) == kind]
        return nxt, keys

    def random_key(self) -> bytes | None:
        now = self._clock()
        for _ in range(100):
            key = self._sample(False)
            if key is None:
                return None
            if self._live(key, now) is not None:
                return key
        return None

    def notify(self, event: str, key: bytes) -> None:
        if self.key_events is not None:
            self.key_events(event, key)

    def signal(self, key: bytes) -> None:
        if self.on_push is not None:
            self._signalled = True
            self.on_push(key)

    def _settle(self) -> None:
        """The pushing command or group is over (lock held): on_settle."""
        self._signalled = False
        if self.on_settle is not None:
            self.on_settle()

    # -- administration -------------------------------------------------------
    def _avg_ttl(self) -> int:
        """INFO keyspace's avg_ttl (ms): the mean time left of the keys with
        a TTL, exact up to AVG_TTL_SAMPLES of them, else over that many
        drawn at random (Redis's own figure is an estimate from its expiry
        cycle's samples too). Lock held."""
        expires = self._expires
        if not expires:
            return 0
        now = self._clock()
        if len(expires) <= AVG_TTL_SAMPLES:
            ats = list(expires.values())
        else:
            ats = [at for at in (expires.get(key) for key in (
                self._sample(True) for _ in range(AVG_TTL_SAMPLES)) if key is not None)
                   if at is not None]
        left = [at - now for at in ats if at > now]
        return sum(left) // len(left) if left else 0

    def info(self) -> dict[str, Any]:
        with self._lock:
            return {
                "keys": len(self._data),
                "expires": len(self._expires),
                "avg_ttl": self._avg_ttl(),
                "expired_keys": self._expired,
                "keyspace_hits": self._hits,
                "keyspace_misses": self._misses,
                "persistence": "off",
                "used_memory": self._used,
                "maxmemory": self._maxmemory,
                "maxmemory_policy": self._policy,
                "maxmemory_samples": self._samples,
                "evicted_keys": self._evicted,
            }

    @contextlib.contextmanager
    def memory_limit_lifted(self) -> Iterator[None]:
        with self._lock:
            lifted, self._lifted = self._lifted, True
            try:
                yield
            finally:
                self._lifted = lifted

    def make_room(self, reserve: int = 0) -> bool:
        if not self._maxmemory:
            return True
        with self._lock:
            self._check_open()
            return self._make_room(reserve)

    def used_memory(self) -> int:
        """The store's own count of the bytes it holds (module docstring)."""
        return self._used

    # -- optimistic locking (WATCH) --------------------------------------------
    def watch(self, watch: WatchSet, keys: Sequence[bytes]) -> None:
        with self._lock:
            self._check_open()
            if watch.dirty:
                return  # Redis: no point watching more, EXEC will fail
            now = self._clock()
            for key in keys:
                if key in watch.keys:
                    continue
                at = self._expires.get(key)
                watch.keys[key] = at is not None and at <= now and key in self._data
                self._watchers.setdefault(key, set()).add(watch)

    def watch_broken(self, watch: WatchSet) -> bool:
        with self._lock:
            if watch.dirty:
                return True
            # Redis 7's isWatchedKeyExpired: a key that expired since WATCH
            # counts as changed even before anything reclaims it.
            now, expires, data = self._clock(), self._expires, self._data
            return any(not was_expired and key in data and expires.get(key, now + 1) <= now
                       for key, was_expired in watch.keys.items())

    def unwatch(self, watch: WatchSet) -> None:
        with self._lock:
            self._forget_watch(watch)
            watch.dirty = False

    def run_grouped(self, fn: Callable[[Store], T]) -> T:
        with self._lock:
            self._depth += 1
            try:
                return fn(self)
            finally:
                self._depth -= 1
                if self._signalled and not self._depth:
                    self._settle()

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """The calls in the block as one unit (nesting allowed)."""
        with self._lock:
            yield

    def close(self) -> None:
        if self.script_gate is not None:  # a running script holds the lock
            self.script_gate.stop()
        self.stop_expiry()
        with self._lock:
            self._closed = True

    # -- active expiry ----------------------------------------------------------
    def expire_cycle(self, budget: float = EXPIRE_CYCLE_BUDGET) -> int:
        """Reclaim due keys for up to ``budget`` seconds; returns how many."""
        deadline = time.monotonic() + budget
        total = 0
        while True:
            with self._lock:
                if self._closed:
                    return total
                done, more = self._expire_due(self._clock(), EXPIRE_BATCH)
            total += done
            if not more or time.monotonic() >= deadline:
                return total

    def start_expiry(self, interval: float = EXPIRE_INTERVAL) -> None:
        """Start the background sweeper (idempotent)."""
        with self._lock:
            self._check_open()
            if self._sweeper is not None:
                return
            self._sweeper_stop.clear()
            self._sweeper = threading.Thread(
                target=self._sweep, args=(interval,), name="sockworks-expiry", daemon=True
            )
            self._sweeper.start()

    def stop_expiry(self) -> None:
        with self._lock:
            sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            self._sweeper_stop.set()
            sweeper.join()

    def _sweep(self, interval: float) -> None:
        while not self._sweeper_stop.wait(interval):
            expired = self.expire_cycle()
            if expired:
                logger.debug("expired %d keys", expired)

    # -- bulk load (replay) -----------------------------------------------------
    def _replay(self, image: bytes, spans: list[tuple[int, int]]) -> None:
        """Apply logged records (payload offset, length) from ``image``.

        The loop is kept tight because a restart replays the whole log: the
        common record (one SET) is decoded inline; anything else goes
        through records.iter_ops. Raises records.RecordError (with the
        record's offset as ``args[1]``) for a payload that does not parse.
        """
        self._loading = True
        try:
            self._replay_spans(image, spans)
        finally:
            self._loading = False
        # What is past due now goes, as Redis expires it after loading.
        now, data, expires = self._clock(), self._data, self._expires
        for key in [k for k, at in expires.items() if at <= now]:
            del expires[key]
            data.pop(key, None)
        self._rebuild_indexes()

    def _replay_spans(self, image: bytes, spans: list[tuple[int, int]]) -> None:
        data, expires = self._data, self._expires
        head, u32, i64 = _SET_HEAD.unpack_from, _U32.unpack_from, _I64.unpack_from
        op_set = records.OP_SET
        for p, length in spans:
            if image[p] == op_set:
                try:
                    _, klen = head(image, p)
                    ke = p + 5 + klen
                    (vlen,) = u32(image, ke)
                    ve = ke + 4 + vlen
                    if ve + 8 == p + length:
                        (at,) = i64(image, ve)
                        key = image[p + 5 : ke]
                        data[key] = image[ke + 4 : ve]
                        if at:
                            expires[key] = at
                        elif key in expires:
                            del expires[key]
                        continue
                except struct.error:
                    pass  # let iter_ops give the precise error
            try:
                self._apply_ops(image[p : p + length])
            except records.RecordError as exc:
                raise records.RecordError(str(exc), p - records.HEADER.size) from None

    def _apply_ops(self, payload: bytes) -> None:
        data, expires = self._data, self._expires
        for op, key, value, at in records.iter_ops(payload):
            if op == records.OP_SET:
                data[key] = value
                if at:
                    expires[key] = at
                else:
                    expires.pop(key, None)
            elif op == records.OP_DEL:
                data.pop(key, None)
                expires.pop(key, None)
            elif op == records.OP_EXPIREAT:
                if key in data:
                    expires[key] = at
            elif op == records.OP_PERSIST:
                expires.pop(key, None)
            elif op == records.OP_CMD:
                self._replay_command(records.decode_args(value))
            else:  # OP_FLUSH
                data.clear()
                expires.clear()
                self._aggregates.clear()

    def _replay_command(self, argv: list[bytes]) -> None:
        """Run one logged data-model command (logging is off during replay).
        An error means the command failed the same way when it was logged:
        it changed nothing then, and changes nothing now."""
        entry = MODEL_REPLAY.get(argv[0].lower())
        if entry is None and argv[0].lower().startswith(FUNCTION_LOG_PREFIX):
            assert self.function_libraries is not None
            self.function_libraries.replay(argv)
            return
        if entry is None:
            raise records.RecordError(f"unknown command {argv[0]!r} in the log")
        try:
            entry[0](self, argv)
        except StoreError:
            pass

    def _rebuild_indexes(self) -> None:
        # After a replay every string is encoded by its content again (the
        # log holds values, not how they were made).
        self._raw.clear()
        self._slots.reset(list(self._data))
        self._heap = [(t, k) for k, t in self._expires.items()]
        heapq.heapify(self._heap)
        # The one full pass: after a replay, which wrote the dicts directly.
        self._aggregates = {k for k, v in self._data.items() if v.__class__ is not bytes}
        self._used = (sum(len(k) + value_size(v) for k, v in self._data.items())
                      + eviction.ENTRY_OVERHEAD * len(self._data)
                      + eviction.EXPIRY_OVERHEAD * len(self._expires)
                      + self.function_libraries.size)
        self._access.clear()
        self._pool.clear()
        self._referenced.clear()
