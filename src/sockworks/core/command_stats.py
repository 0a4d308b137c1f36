"""Per-command counts, errors and a processing-time histogram for one service.

A session counts what a received chunk ran in local ints (the GET/SET fast
paths add one to a local, the rest to a small dict) and hands the chunk's
figures to :meth:`CommandStats.add` once, with the chunk's processing time:
one lock and one histogram bucket per chunk, nothing per command beyond an
integer add. The histogram is therefore of *per-chunk* service time: a
chunk holding one request measures that request; a pipelined chunk of 100
is one observation of the time all 100 took (docs/operations.md).

The command names are fixed when the service is made (its command table,
plus ``other`` for names outside it), so :meth:`flat` always reports the same
keys: under prefork they are columns of
:class:`~sockworks.core.worker_sums.WorkerSums` and sum exactly over workers.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Mapping

__all__ = ["BUCKETS", "OTHER", "CommandStats"]

#: Histogram upper bounds in seconds (``le``); +Inf is implied.
BUCKETS: tuple[float, ...] = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                              0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: The label of a command name outside the table (unknown, or renamed away).
OTHER = "other"


class CommandStats:
    """Counts per command name, errors per command name, and the histogram."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(sorted({*names, OTHER}))
        self._lock = threading.Lock()
        self._calls = dict.fromkeys(self.names, 0)
        self._errors = dict.fromkeys(self.names, 0)
        self._buckets = [0] * (len(BUCKETS) + 1)
        self._sum = 0.0
        self._received = 0
        self._sent = 0

    def add(self, calls: Mapping[str, int], errors: Mapping[str, int] | None,
            seconds: float, received: int = 0, sent: int = 0) -> None:
        """One chunk: its commands by name, its error replies by name, how
        long it took to process (observed if it ran a command), the bytes
        received since the last call and the reply bytes it produced."""
        slot = bisect.bisect_left(BUCKETS, seconds)
        with self._lock:
            self._received += received
            self._sent += sent
            if not calls:
                return
            known = self._calls
            for name, count in calls.items():
                known[name if name in known else OTHER] += count
            if errors:
                failed = self._errors
                for name, count in errors.items():
                    failed[name if name in failed else OTHER] += count
            self._buckets[slot] += 1
            self._sum += seconds

    def flat(self) -> dict[str, float]:
        """Every figure under a fixed key (``calls.get``, ``errors.get``,
        ``bucket.3``, ``sum``): what prefork publishes to shared memory."""
        with self._lock:
            values: dict[str, float] = {f"calls.{n}": v for n, v in self._calls.items()}
            values.update({f"errors.{n}": v for n, v in self._errors.items()})
            values.update({f"bucket.{i}": v for i, v in enumerate(self._buckets)})
            values["sum"] = self._sum
            values["bytes_in"] = self._received
            values["bytes_out"] = self._sent
        return values
