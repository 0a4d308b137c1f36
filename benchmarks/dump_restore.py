"""DUMP and RESTORE in process: their cost against building the same value
with one command (RPUSH/SADD/HSET/ZADD of every element) in the same run,
and the CRC64's throughput (the one in use: compiled unless
SOCKWORKS_NO_EXTENSIONS=1; and the pure-Python reference), which bounds how
fast any payload is checked.

    .venv/bin/python benchmarks/dump_restore.py [--elements 100000] [--repeat 3]

Prints, per type, the best of ``--repeat`` runs of: the build command,
DUMP, RESTORE, and RESTORE / build (a ratio: same run, same machine).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from sockworks.protocols import accel, rdb
from sockworks.storage.memory import MemoryStore


def _best(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, repeat = args.elements, args.repeat
    items = [b"member:%d" % i for i in range(n)]
    builds = {
        "list": [b"RPUSH", b"k", *items],
        "set": [b"SADD", b"k", *items],
        "hash": [b"HSET", b"k", *[x for i in items for x in (i, b"v")]],
        "zset": [b"ZADD", b"k", *[x for j, i in enumerate(items) for x in (b"%d" % j, i)]],
    }
    print(f"{n} elements, best of {repeat}")
    print(f"{'type':6} {'build s':>9} {'DUMP s':>9} {'RESTORE s':>10} {'RESTORE/build':>14}")
    for kind, argv in builds.items():
        store = MemoryStore()

        def build(store: MemoryStore = store, argv: list[bytes] = argv) -> None:
            store.delete([b"k"])
            store.execute_command(argv)

        built = _best(build, repeat)
        payload = store.execute_command([b"DUMP", b"k"])
        dumped = _best(lambda s=store: s.execute_command([b"DUMP", b"k"]), repeat)
        restored = _best(lambda s=store, p=payload: s.execute_command(
            [b"RESTORE", b"k", b"0", p, b"REPLACE"]), repeat)
        print(f"{kind:6} {built:9.3f} {dumped:9.3f} {restored:10.3f} {restored / built:14.2f}")
    data = bytes(range(256)) * 4096
    crc = _best(lambda: rdb.crc64(data), repeat)
    which = "pure Python" if accel.CRC64 is None else "compiled"
    print(f"crc64 in use ({which}): {len(data) / crc / 1e6:.1f} MB/s")
    if accel.CRC64 is not None:
        crc = _best(lambda: rdb.crc64_pure(data), repeat)
        print(f"crc64 pure Python: {len(data) / crc / 1e6:.1f} MB/s")


if __name__ == "__main__":
    main()
