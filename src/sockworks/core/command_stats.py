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

INFO commandstats (Redis's ``calls``, ``usec``, ``rejected_calls``,
``failed_calls``) reads the same figures: ``errors`` counts every error
reply, ``rejected`` the part of them refused before the command ran (arity,
ACL, out of memory; Redis's rejected calls), and ``usec`` the microseconds
spent running each command. A session times each command off its GET/SET
fast path on its own; the fast path is not timed per command (two clock
reads would cost a measurable share of a GET), so what is left of the
chunk's time is shared among its fast-path GETs and SETs by count.
"""

from __future__ import annotations

import bisect
import collections
import threading
from collections.abc import Iterable, Mapping

__all__ = ["BUCKETS", "OTHER", "CommandStats", "OpsRate"]

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
        self._rejected = dict.fromkeys(self.names, 0)
        self._usec = dict.fromkeys(self.names, 0.0)
        self._buckets = [0] * (len(BUCKETS) + 1)
        self._sum = 0.0
        self._received = 0
        self._sent = 0

    def add(self, calls: Mapping[str, int], errors: Mapping[str, int] | None,
            seconds: float, received: int = 0, sent: int = 0,
            rejected: Mapping[str, int] | None = None,
            spent: Mapping[str, float] | None = None) -> None:
        """One chunk: its commands by name, its error replies by name, how
        long it took to process (observed if it ran a command), the bytes
        received since the last call, the reply bytes it produced, the
        error replies that were refusals (by name) and the seconds each
        command name took."""
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
            if rejected:
                refused = self._rejected
                for name, count in rejected.items():
                    refused[name if name in refused else OTHER] += count
            if spent:
                usec = self._usec
                for name, seconds in spent.items():
                    usec[name if name in usec else OTHER] += seconds * 1e6
            self._buckets[slot] += 1
            self._sum += seconds

    def add_nested(self, name: str, failed: bool, rejected: bool, seconds: float) -> None:
        """One command a script (``redis.call``) or EXEC ran: counted as
        Redis's call() counts it, but no chunk of its own (the histogram
        observes the chunk of the script or EXEC)."""
        with self._lock:
            if name not in self._calls:
                name = OTHER
            self._calls[name] += 1
            self._usec[name] += seconds * 1e6
            if failed or rejected:
                self._errors[name] += 1
            if rejected:
                self._rejected[name] += 1

    def add_failure(self, name: str) -> None:
        """A call counted already answered an error later (a blocking
        command unblocked with an error): a failed call."""
        with self._lock:
            self._errors[name if name in self._errors else OTHER] += 1

    def flat(self) -> dict[str, float]:
        """Every figure under a fixed key (``calls.get``, ``errors.get``,
        ``rejected.get``, ``usec.get``, ``bucket.3``, ``sum``): what
        prefork publishes to shared memory."""
        with self._lock:
            values: dict[str, float] = {f"calls.{n}": v for n, v in self._calls.items()}
            values.update({f"errors.{n}": v for n, v in self._errors.items()})
            values.update({f"rejected.{n}": v for n, v in self._rejected.items()})
            values.update({f"usec.{n}": v for n, v in self._usec.items()})
            values.update({f"bucket.{i}": v for i, v in enumerate(self._buckets)})
            values["sum"] = self._sum
            values["bytes_in"] = self._received
            values["bytes_out"] = self._sent
        return values


#: Redis samples instantaneous_ops_per_sec every 100 ms and averages the
#: last 16 samples (STATS_METRIC_SAMPLES): the rate over about 1.6 s.
RATE_PERIOD = 0.1
RATE_WINDOW = 1.6


class OpsRate:
    """INFO's ``instantaneous_ops_per_sec``: commands per second over the
    last :data:`RATE_WINDOW` seconds, from a running total.

    :meth:`observe` is given the total whenever it changes (once per
    received chunk, under the caller's lock) and keeps a point at most every
    :data:`RATE_PERIOD`; :meth:`rate` compares the total now with the newest
    point at least a window old. Not thread-safe: the caller holds its lock.
    """

    def __init__(self, now: float) -> None:
        self._points: collections.deque[tuple[float, int]] = collections.deque([(now, 0)])

    def observe(self, now: float, total: int) -> None:
        points = self._points
        if now - points[-1][0] >= RATE_PERIOD:
            points.append((now, total))
            # Keep one point older than the window (the anchor) and drop the rest.
            while len(points) > 2 and points[1][0] <= now - RATE_WINDOW:
                points.popleft()

    def rate(self, now: float, total: int) -> int:
        """Commands per second since the newest point at least RATE_WINDOW
        old (so over RATE_WINDOW, or a little more; over an idle spell that
        ended recently, the spell is part of the time)."""
        points = self._points
        while len(points) > 1 and points[1][0] <= now - RATE_WINDOW:
            points.popleft()
        then, before = points[0]
        return round((total - before) / max(now - then, RATE_PERIOD))
