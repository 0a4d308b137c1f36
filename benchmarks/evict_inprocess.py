"""In-process CPU cost of a SET at the memory limit vs without one (issue #10).

Two paths, each on a fresh store pre-filled with 100,000 keys (100-byte
values, past a 32 MB limit), then 400,000 SETs of random keys from a 2 M
key space:

* ``store``: ``MemoryStore.set`` called directly (the store's own cost);
* ``session``: the text port's ``KvSession.on_data`` fed 50 pipelined SETs a
  chunk (parsing, dispatch, the store, the replies: what a server spends per
  request, less the sockets and the event loop).

Each side (no limit; ``--maxmemory`` with allkeys-lru evicting) runs
``--repeat`` times, alternating; the figure is CPU time (process_time, so a
busy machine inflates it less than wall time) per SET, the median per side,
and the ratio no-limit cost / limit cost (= requests/s at the limit / without
it for a CPU-bound server). The store path also prints the worst batch of
100 SETs in wall time (a pause every client of a server would wait for).
Bounded: a fixed number of operations.

    .venv/bin/python benchmarks/evict_inprocess.py [--repeat 5] [--paths store,session]

Instruction counts, which other load on the machine does not disturb: run
one side once under cachegrind, and once with ``--sets 0`` to subtract the
pre-fill (``--keyspace 200000000`` makes every SET create a key on both
sides, so they do the same work):

    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        .venv/bin/python benchmarks/evict_inprocess.py --paths store --repeat 1 \
        --sides allkeys-lru --keyspace 200000000 [--sets 0]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time
from collections.abc import Callable

from sockworks.core.config import ServerSettings
from sockworks.core.stats import ServerStats
from sockworks.services.kv import KvService
from sockworks.storage.memory import MemoryStore

VALUE = b"v" * 100
PREFILL = 100_000
CHUNK = 50


def fresh(limit: int) -> MemoryStore:
    store = MemoryStore(maxmemory=limit, maxmemory_policy="allkeys-lru" if limit else "noeviction")
    for i in range(PREFILL):
        store.set(b"key:%d" % i, VALUE)
    return store


def store_path(keys: list[bytes], limit: int) -> tuple[float, float]:
    """(CPU us per SET, worst wall ms per batch of 100)."""
    store = fresh(limit)
    put = store.set
    worst = 0.0
    cpu = time.process_time()
    for j in range(0, len(keys), 100):
        t0 = time.perf_counter()
        for key in keys[j:j + 100]:
            put(key, VALUE)
        worst = max(worst, time.perf_counter() - t0)
    return (time.process_time() - cpu) / max(1, len(keys)) * 1e6, worst * 1e3


def session_path(keys: list[bytes], limit: int) -> tuple[float, float]:
    """(CPU us per SET through the text port's session, nan)."""
    service = KvService(fresh(limit))
    service.attach(ServerStats(), ServerSettings("asyncio"))
    session = service.new_session("bench")
    chunks = [b"".join(b"SET %b %b\n" % (k, VALUE) for k in keys[j:j + CHUNK])
              for j in range(0, len(keys), CHUNK)]
    feed = session.on_data
    cpu = time.process_time()
    for chunk in chunks:
        feed(chunk)
    return (time.process_time() - cpu) / max(1, len(keys)) * 1e6, float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--maxmemory", type=int, default=32 * 1024 * 1024)
    parser.add_argument("--paths", default="store,session")
    parser.add_argument("--sides", default="no limit,allkeys-lru")
    parser.add_argument("--keyspace", type=int, default=2_000_000)
    parser.add_argument("--sets", type=int, default=400_000)
    args = parser.parse_args()
    rng = random.Random(1)
    keys = [b"key:%d" % rng.randrange(args.keyspace) for _ in range(args.sets)]
    paths: dict[str, Callable[[list[bytes], int], tuple[float, float]]] = {
        "store": store_path, "session": session_path}
    sides = {name: limit for name, limit in (("no limit", 0), ("allkeys-lru", args.maxmemory))
             if name in args.sides.split(",")}
    for name in args.paths.split(","):
        run = paths[name]
        cost: dict[str, list[float]] = {side: [] for side in sides}
        worst: dict[str, float] = {side: 0.0 for side in sides}
        for _ in range(args.repeat):
            for side, limit in sides.items():  # alternate the sides
                gc.collect()
                gc.disable()  # the store allocates no cycles: keep the collector out
                try:
                    us, ms = run(keys, limit)
                finally:
                    gc.enable()
                cost[side].append(us)
                worst[side] = max(worst[side], ms)
        for side in sides:
            pause = f", worst batch of 100 {worst[side]:.1f} ms" if name == "store" else ""
            print(f"{name:8} {side:12} {statistics.median(cost[side]):6.3f} us/SET CPU "
                  f"(runs: {', '.join(f'{c:.3f}' for c in cost[side])}){pause}")
        if len(sides) == 2:
            ratio = statistics.median(cost["no limit"]) / statistics.median(cost["allkeys-lru"])
            print(f"{name:8} ratio (SET/s at the limit / no limit, CPU-bound): {ratio:.2f}x")


if __name__ == "__main__":
    main()
