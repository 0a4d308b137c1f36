"""Streams' costs as the stream grows: XADD, XRANGE with COUNT 10 from a
random start, XDEL from the middle, on the embedded store in process
(``MemoryStore.execute_command``, the lock included).

    .venv/bin/python benchmarks/stream_structure.py [--sizes 10000,100000,1000000]

For each size: the time per XADD while filling it, then per XRANGE
``(id + COUNT 10`` at 10,000 random starts, then per XDEL of 1,000 random
entries. The ratio of the largest size to the smallest says whether a call
depends on the stream's length (a ratio near 1: it does not). Bounded: the
largest default size fills in about a minute.
"""

from __future__ import annotations

import argparse
import random
import time

from sockworks.storage.memory import MemoryStore


def run(size: int) -> tuple[float, float, float]:
    store = MemoryStore()
    x = store.execute_command
    started = time.perf_counter()
    for i in range(1, size + 1):
        x([b"XADD", b"s", b"%d-1" % i, b"f", b"v"])
    added = (time.perf_counter() - started) / size
    rng = random.Random(size)
    started = time.perf_counter()
    for _ in range(10_000):
        x([b"XRANGE", b"s", b"(%d-1" % rng.randrange(1, size), b"+", b"COUNT", b"10"])
    ranged = (time.perf_counter() - started) / 10_000
    started = time.perf_counter()
    for sid in rng.sample(range(1, size + 1), 1000):
        x([b"XDEL", b"s", b"%d-1" % sid])
    deleted = (time.perf_counter() - started) / 1000
    return added, ranged, deleted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    print("| entries | XADD us | XRANGE COUNT 10 us | XDEL us |")
    print("|---:|---:|---:|---:|")
    results = {size: run(size) for size in sizes}
    for size, (a, r, d) in results.items():
        print(f"| {size:,} | {a * 1e6:.1f} | {r * 1e6:.1f} | {d * 1e6:.1f} |")
    first, last = results[sizes[0]], results[sizes[-1]]
    print(f"\nratio {sizes[-1]:,} / {sizes[0]:,}: XADD {last[0] / first[0]:.2f}, "
          f"XRANGE {last[1] / first[1]:.2f}, XDEL {last[2] / first[2]:.2f}")


if __name__ == "__main__":
    main()
