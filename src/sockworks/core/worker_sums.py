"""Server-wide sums of per-process counters, for prefork (STATS, INFO, metrics).

Under ``prefork`` every worker keeps its own counters (connections,
commands, hits, errors...), so a figure read in one process is that worker's
share. :class:`WorkerSums` is a table of doubles in shared memory, created by
the parent before it forks: one row per worker slot, one row for workers
that have exited (the parent folds a dead worker's row into it, so totals
survive restarts), and one column per counter (the names the server's
counter sources report, fixed at creation).

Each worker publishes its own row from a daemon thread every
:data:`PUBLISH_INTERVAL` seconds and once more when it stops; the hot path
writes nothing shared. A reader (a worker answering ``STATS``, or the
metrics process) takes its *own* figures live and every other row as last
published, so a sum lags another worker's traffic by at most one interval
and is exact once that traffic has been published — a scrape, or a STATS
sent after the load, sees exactly the requests the load made.
``docs/operations.md`` says why this and not prometheus_client's
multiprocess mode.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

__all__ = ["PUBLISH_INTERVAL", "WorkerSums"]

#: How often a worker copies its counters to shared memory (seconds).
PUBLISH_INTERVAL = 0.05

#: Counters that fall back to 0 when their worker exits (the others are totals).
LEVELS = frozenset({"connections_current"})


class WorkerSums:
    """``workers`` rows of the counters named ``names``, plus a retired row."""

    def __init__(self, workers: int, names: Iterable[str]) -> None:
        self.names = tuple(names)
        self.columns = {name: index for index, name in enumerate(self.names)}
        self.workers = workers
        ctx = multiprocessing.get_context("fork")
        width = len(self.names)
        # rows 0..workers-1: live slots; row `workers`: exited workers' totals
        self._table: Any = ctx.Array("d", (workers + 1) * width)
        self._ready: Any = ctx.Value("b", 0)
        #: This process's slot (a worker's), or None (parent, metrics process).
        self.slot: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: Per reading thread: the rows read once for a whole scrape (held()).
        self._held = threading.local()

    # -- readiness (for /readyz in a separate metrics process) ------------------
    @property
    def ready(self) -> bool:
        return bool(self._ready.value)

    @ready.setter
    def ready(self, value: bool) -> None:
        self._ready.value = int(value)

    # -- writing -----------------------------------------------------------------
    def publish(self, values: Mapping[str, float]) -> None:
        """Copy this worker's counters into its row (one lock, one copy)."""
        if self.slot is None:
            return
        width = len(self.names)
        base = self.slot * width
        row = [float(values.get(name, 0)) for name in self.names]
        with self._table.get_lock():
            self._table[base:base + width] = row

    def start_publishing(self, slot: int, source: Callable[[], Mapping[str, float]]) -> None:
        """In a worker: publish ``source()`` every interval from a daemon thread."""
        self.slot = slot

        def run() -> None:
            while not self._stop.wait(PUBLISH_INTERVAL):
                try:
                    self.publish(source())
                except Exception:  # a counter read racing shutdown
                    continue

        self._thread = threading.Thread(target=run, daemon=True, name="sockworks-sums")
        self._thread.start()

    def stop_publishing(self, source: Callable[[], Mapping[str, float]]) -> None:
        """In a worker that stops: the last, final figures."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        self.publish(source())

    def retire(self, slot: int) -> None:
        """In the parent, when the worker in ``slot`` has exited: keep its
        totals in the retired row, zero its levels, free the row."""
        width = len(self.names)
        base, retired = slot * width, self.workers * width
        with self._table.get_lock():
            for index, name in enumerate(self.names):
                if name not in LEVELS:
                    self._table[retired + index] += self._table[base + index]
                self._table[base + index] = 0.0

    # -- reading -----------------------------------------------------------------
    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Within it, :meth:`others` in this thread reads the table once: a
        scrape's families are then one consistent view (a worker publishing
        mid-scrape cannot make connections lag commands)."""
        self._held.rows = self.others()
        try:
            yield
        finally:
            self._held.rows = None

    def others(self) -> dict[str, float]:
        """Every row but this process's own (exited workers included)."""
        held = getattr(self._held, "rows", None)
        if held is not None:
            return dict(held)
        width = len(self.names)
        with self._table.get_lock():
            table = list(self._table)
        sums = [0.0] * width
        for row in range(self.workers + 1):
            if row == self.slot:
                continue
            for index in range(width):
                sums[index] += table[row * width + index]
        return dict(zip(self.names, sums, strict=True))

    def add_others(self, fields: dict[str, object], prefix: str = "") -> dict[str, object]:
        """``fields`` (this process's live figures) with every other row's
        added to those named ``prefix + field`` in the table; in place."""
        others = self.others()
        for field, value in fields.items():
            other = others.get(prefix + field)
            if other is not None and isinstance(value, int) and not isinstance(value, bool):
                fields[field] = value + int(other)
        return fields
