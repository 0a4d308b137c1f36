# cython: language_level=3, boundscheck=False, wraparound=False
"""allkeys-lru's CLOCK hand, one run of slots, compiled (Cython).

Optional: setup.py builds it where a C compiler is, and storage/clock.py
uses it unless ``SOCKWORKS_NO_EXTENSIONS=1``. ``clock.run_reference`` is the
reference it matches exactly (its docstring says what a run does;
tests/storage/test_clock_differential.py feeds both the same random slot
lists). One loop over the slots instead of the reference's several passes
with builtins: a victim costs one set probe, one dict pop and its
deallocation, and the run's key objects are prefetched first.
"""

from cpython.bytes cimport PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM

cdef extern from *:
    # GCC's and clang's; a hint only (no fault on any address).
    void __builtin_prefetch(const void *addr) noexcept nogil


def run(list keys, list seqs, Py_ssize_t hand, Py_ssize_t end, dict data, set referenced,
        set aggregates, list kept_keys, list kept_seqs, dict expires, set raw,
        Py_ssize_t overhead, Py_ssize_t expiry_overhead):
    """One run of the hand over ``keys[hand:end]`` (clock.run_reference)."""
    cdef Py_ssize_t i, evicted = 0, freed = 0
    cdef object key, value
    cdef list others = None
    cdef bint marks = len(referenced) > 0, ttls = len(expires) > 0, raws = len(raw) > 0
    if end > len(keys) or hand < 0 or end > len(seqs):
        raise IndexError("run outside the slot list")
    # Every slot's key object first (its cached hash, which the set probe
    # and the dict pop read): their cache misses then overlap instead of
    # stalling once per victim (a victim is a key written long ago).
    for i in range(hand, end):
        __builtin_prefetch(PyList_GET_ITEM(keys, i))
    for i in range(hand, end):
        key = <object>PyList_GET_ITEM(keys, i)
        if key is None:
            continue
        if marks and key in referenced:
            referenced.discard(key)
            kept_keys.append(key)
            kept_seqs.append(<object>PyList_GET_ITEM(seqs, i))
            continue
        keys[i] = None
        value = data.pop(key, None)
        if value is None:
            continue
        evicted += 1
        if type(value) is bytes:
            freed += PyBytes_GET_SIZE(key) + PyBytes_GET_SIZE(value) + overhead
        else:
            aggregates.discard(key)
            if others is None:
                others = []
            others.append((key, value))
        if ttls and expires.pop(key, None) is not None:
            freed += expiry_overhead
        if raws:
            raw.discard(key)
    return evicted, freed, others
