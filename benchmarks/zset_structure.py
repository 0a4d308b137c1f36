"""Why sorted sets use sortedcontainers: ZADD and ZRANGE costs on a
SortedList of (score, member) against a plain list kept sorted with bisect.

    .venv/bin/python benchmarks/zset_structure.py [--sizes 10000,100000,1000000]

For each size: the time of N inserts of random scores, then of 10,000
rank-range reads of 10 elements and of 1,000 deletes by rank (ZPOPMIN).
Bounded: the largest default size runs in a few seconds per structure.
"""

from __future__ import annotations

import argparse
import bisect
import random
import time

from sortedcontainers import SortedList  # type: ignore[import-untyped]


def run(size: int) -> None:
    rng = random.Random(size)
    items = [(rng.random(), b"m%d" % i) for i in range(size)]
    for name in ("SortedList", "bisect list"):
        started = time.perf_counter()
        if name == "SortedList":
            structure: object = SortedList()
            for item in items:
                structure.add(item)  # type: ignore[attr-defined]
        else:
            plain: list[tuple[float, bytes]] = []
            for item in items:
                bisect.insort(plain, item)
            structure = plain
        inserted = time.perf_counter() - started
        started = time.perf_counter()
        for i in range(10_000):
            start = i % max(1, size - 10)
            structure[start:start + 10]  # type: ignore[index]
        ranged = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(1000):
            del structure[0]  # type: ignore[attr-defined]
        popped = time.perf_counter() - started
        print(f"{size:>9} {name:<12} ZADD {inserted / size * 1e6:6.2f} us each   "
              f"ZRANGE(10) {ranged / 10_000 * 1e6:6.2f} us   ZPOPMIN {popped / 1000 * 1e6:7.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    for size in map(int, parser.parse_args().sizes.split(",")):
        run(size)


if __name__ == "__main__":
    main()
