"""In-process cost of a SET at the memory limit vs without one (issue #10).

Pre-fills a ``MemoryStore`` with 100,000 keys (100-byte values), then times
400,000 SETs of random keys from a 2 M key space in batches of 100, without
a limit and at ``--maxmemory`` (32 MB) with allkeys-lru evicting one key per
SET. Prints microseconds per SET and the 99.9th percentile / worst batch (a
long batch is a pause every client of a server would have waited for).
Bounded: a fixed number of operations.

    .venv/bin/python benchmarks/evict_inprocess.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import random
import time

from sockworks.storage.memory import MemoryStore

VALUE = b"v" * 100


def run(keys: list[bytes], limit: int) -> tuple[float, float, float]:
    store = MemoryStore(maxmemory=limit, maxmemory_policy="allkeys-lru" if limit else "noeviction")
    for i in range(100_000):
        store.set(b"key:%d" % i, VALUE)
    batches = []
    start = time.perf_counter()
    for j in range(0, len(keys), 100):
        t0 = time.perf_counter()
        for key in keys[j:j + 100]:
            store.set(key, VALUE)
        batches.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - start
    batches.sort()
    return (elapsed / len(keys) * 1e6, batches[int(len(batches) * 0.999)] * 1e3,
            batches[-1] * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--maxmemory", type=int, default=32 * 1024 * 1024)
    args = parser.parse_args()
    rng = random.Random(1)
    keys = [b"key:%d" % rng.randrange(2_000_000) for _ in range(400_000)]
    gc.disable()  # the store allocates no cycles; keep the collector out of the figure
    for _ in range(args.repeat):
        for label, limit in (("no limit", 0), ("allkeys-lru", args.maxmemory)):
            us, p999, worst = run(keys, limit)
            print(f"{label:12} {us:6.2f} us/SET   batch of 100: p99.9 {p999:6.2f} ms, "
                  f"worst {worst:6.1f} ms")


if __name__ == "__main__":
    main()
