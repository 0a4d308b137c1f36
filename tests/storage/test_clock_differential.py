"""allkeys-lru's compiled eviction run (storage/_clock.pyx) against the
reference (storage/clock.py: ``run_reference``), exactly.

Hypothesis builds random slot lists -- dead slots (None, keys deleted
since), keys with two slots, keys accessed since the hand passed, TTLs,
raw marks, aggregate values -- and both runs must leave the same slots,
data, marks, TTLs and kept stretch and return the same victims, bytes and
aggregates. Then two stores, one evicting through each, take the same
random writes at the limit and must end with the same data, accounting
and slots.

Needs the extension: skipped on a machine that could not build it, and a
failure under CI=true. With SOCKWORKS_NO_EXTENSIONS set, the store must
run the reference.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sockworks.protocols.accel import compiled, disabled
from sockworks.storage import clock, eviction
from sockworks.storage.memory import MemoryStore
from sockworks.storage.model.values import value_size

COMPILED = compiled("sockworks.storage._clock")
if COMPILED is None and os.environ.get("CI") == "true":  # pragma: no cover - CI guard
    raise RuntimeError("the compiled eviction run was not built in CI")
needs_compiled = pytest.mark.skipif(COMPILED is None, reason="the C extension was not built")


def test_the_requested_run_is_the_one_in_use() -> None:
    if disabled() or COMPILED is None:
        assert clock.COMPILED is None and clock.run is clock.run_reference
    else:
        assert clock.COMPILED is COMPILED and clock.run is COMPILED.run


@st.composite
def states(draw: st.DrawFn) -> dict[str, Any]:
    """A slot list and the store state around it, as the store keeps them:
    ``referenced``, ``expires``, ``raw`` and ``aggregates`` hold live keys only."""
    names = [b"k%d" % i for i in range(draw(st.integers(1, 40)))]
    live = draw(st.sets(st.sampled_from(names)))
    keys: list[bytes | None] = draw(st.lists(st.one_of(st.none(), st.sampled_from(names)),
                                             max_size=80))
    aggregates = draw(st.sets(st.sampled_from(sorted(live)))) if live else set()
    data: dict[bytes, Any] = {
        key: (("aggregate", key) if key in aggregates
              else b"v" * draw(st.integers(0, 300)))
        for key in sorted(live)}
    pick = st.sets(st.sampled_from(sorted(live))) if live else st.just(set())
    hand = draw(st.integers(0, len(keys)))
    return {
        "keys": keys,
        "seqs": list(range(1, len(keys) + 1)),
        "hand": hand,
        "end": draw(st.integers(hand, len(keys))),
        "data": data,
        "referenced": draw(pick),
        "aggregates": aggregates,
        "kept_keys": [b"before"],
        "kept_seqs": [0],
        "expires": {key: 1000 for key in draw(pick)},
        "raw": draw(pick),
    }


def run(fn: clock.Run, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    args = copy.deepcopy(state)
    result = fn(args["keys"], args["seqs"], args["hand"], args["end"], args["data"],
                args["referenced"], args["aggregates"], args["kept_keys"], args["kept_seqs"],
                args["expires"], args["raw"], 200, 150)
    return result, args


@needs_compiled
@settings(max_examples=400, deadline=None)
@given(states())
def test_the_compiled_run_matches_the_reference(state: dict[str, Any]) -> None:
    assert COMPILED is not None
    expected, after_reference = run(clock.run_reference, state)
    got, after_compiled = run(COMPILED.run, state)
    assert got == expected
    assert after_compiled == after_reference
    # Dict order too: the store's KEYS and iteration follow it.
    assert list(after_compiled["data"]) == list(after_reference["data"])


@needs_compiled
def test_the_compiled_run_refuses_a_run_outside_the_list() -> None:
    assert COMPILED is not None
    with pytest.raises(IndexError):
        COMPILED.run([b"a"], [1], 0, 2, {}, set(), set(), [], [], {}, set(), 200, 150)


@pytest.fixture(params=["reference", "compiled"])
def evicting_through(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "compiled" and COMPILED is None:
        pytest.skip("the C extension was not built")
    fn = clock.run_reference if request.param == "reference" else COMPILED.run  # type: ignore[union-attr]
    with mock.patch.object(clock, "run", fn):
        yield request.param


OPS = st.lists(st.tuples(st.sampled_from(["set", "ttl", "del", "get", "hash", "setbit", "big"]),
                         st.integers(0, 300)), min_size=1, max_size=800)


def churn(ops: list[tuple[str, int]]) -> MemoryStore:
    store = MemoryStore(maxmemory=30_000, maxmemory_policy="allkeys-lru",
                        clock=lambda: 1_000_000)
    for op, n in ops:
        key = b"k%d" % n
        if op == "set":
            store.set(key, b"v" * (n % 120))
        elif op == "ttl":
            store.set(key, b"t" * 50, px=10**9)
        elif op == "del":
            store.delete([key])
        elif op == "get":
            store.get(key)
        elif op == "setbit":  # an in-place change: a raw string
            store.execute_command([b"SETBIT", key, b"7", b"1"])
        elif op == "big":
            store.set(key, b"x" * 4000)
        else:
            store.execute_command([b"HSET", b"h" + key, b"f", b"v" * 60])
    return store


def snapshot(store: MemoryStore) -> tuple[Any, ...]:
    return (list(store._data.items()), store._expires, store._raw, store._aggregates,
            store._referenced, store.used_memory(), store.info()["evicted_keys"],
            store._slots.keys, store._slots.seqs, store._slots.hand, store._slots.kept_keys)


@needs_compiled
@settings(max_examples=60, deadline=None)
@given(OPS)
def test_a_store_evicts_the_same_keys_through_either_run(ops: list[tuple[str, int]]) -> None:
    assert COMPILED is not None
    with mock.patch.object(clock, "run", clock.run_reference):
        expected = snapshot(churn(ops))
    with mock.patch.object(clock, "run", COMPILED.run):
        assert snapshot(churn(ops)) == expected


def test_eviction_at_the_limit_through_each_run(evicting_through: str) -> None:
    store = churn([("set", i) for i in range(300)] + [("get", i) for i in range(0, 300, 7)]
                  + [("hash", i) for i in range(50)] + [("ttl", i) for i in range(300, 400)]
                  + [("set", i) for i in range(1000, 1600)])
    assert store.info()["evicted_keys"] > 300
    assert store.used_memory() <= 30_000 + 4000
    assert store.used_memory() == (
        sum(len(k) + value_size(v) + eviction.ENTRY_OVERHEAD for k, v in store._data.items())
        + eviction.EXPIRY_OVERHEAD * len(store._expires))
    assert set(store._data) <= set(store._slots.keys)
