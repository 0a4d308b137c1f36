"""In-process CPU cost of a logged SET: write-through vs the per-iteration batch.

No sockets, so the figure does not depend on what else the machine runs
(throughput ratios on a shared VM do): each "loop iteration" feeds one SET to
each of ``--connections`` text-port sessions, as an event loop does at
pipeline 1, then flushes the held outputs' barriers as the asyncio model does
at the end of the iteration. Variants, alternated, best of ``--repeat``
(process CPU time per SET, so an fsync's wait is not counted, only its call):

* ``memory``: no data dir (the reference);
* ``write-through``: the store on its own (one ``write()`` per SET, what the
  server did before issue #15), ``--fsync everysec``;
* ``batched everysec`` / ``batched always``: what a server runs now (one
  ``write()`` per iteration; under ``always`` the flusher thread's fsync,
  waited for here before the next iteration, so one per iteration).

    .venv/bin/python benchmarks/aof_batch.py [--iterations 2000] [--connections 50]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

from sockworks.core.config import ServerSettings
from sockworks.core.service import Output
from sockworks.core.stats import ServerStats
from sockworks.services.kv import KvService
from sockworks.storage.embedded import open_embedded_store


def run(data_dir: str | None, fsync: str, batched: bool, iterations: int,
        connections: int) -> float:
    """CPU microseconds per SET."""
    store = open_embedded_store(data_dir, fsync, active_expiry=False)
    service = KvService(store)
    if batched:
        service.attach(ServerStats(), ServerSettings("asyncio"))  # batch_log_writes()
    sessions = [service.new_session(f"127.0.0.1:{i}") for i in range(connections)]
    requests = [b"SET key:%d vvvvvvvvvvvvvvvv\n" % i for i in range(10_000)]
    sent: list[bytes] = []
    started = time.process_time()
    n = 0
    for _ in range(iterations):
        held: list[Output] = []
        for session in sessions:
            out = session.on_data(requests[n % 10_000])
            n += 1
            if out.barrier is None:
                sent.append(out.data)
            else:
                held.append(out)
        last = None
        for out in held:
            barrier = out.barrier
            assert barrier is not None
            if barrier is not last:  # as the asyncio model: once per shared barrier
                last = barrier
                if barrier.flush() is None:  # always: the flusher's fsync covers it
                    barrier.wait(30)
            sent.append(out.data)
    elapsed = time.process_time() - started
    service.close()
    return elapsed / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    variants: dict[str, Callable[[str], float]] = {
        "memory": lambda d: run(None, "no", True, args.iterations, args.connections),
        "write-through everysec": lambda d: run(d, "everysec", False, args.iterations,
                                                args.connections),
        "batched everysec": lambda d: run(d, "everysec", True, args.iterations,
                                          args.connections),
        "batched always": lambda d: run(d, "always", True, args.iterations, args.connections),
    }
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(args.repeat):
        for name, measure in variants.items():
            with tempfile.TemporaryDirectory(prefix="aof-batch-") as data_dir:
                best[name] = min(best[name], measure(data_dir))
    base = best["memory"]
    for name, us in best.items():
        print(f"{name:24} {us:6.2f} us CPU per SET  (+{us - base:.2f} over memory)")


if __name__ == "__main__":
    main()
