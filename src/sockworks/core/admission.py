"""Admission control: the connection over the limit gets a reply, not a hang.

memcached and Redis both answer the connection over their limit with an error
line and close it; a client then knows to back off instead of waiting on a
connection nobody will serve. Refusals are counted and logged at a limited
rate (a flood must not turn into a flood of log lines).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sockworks.core.logs import RateLimitedLog
from sockworks.core.stats import ServerStats

logger = logging.getLogger(__name__)

__all__ = ["Admission"]


class Admission:
    """A counting gate over live connections, safe from any thread."""

    def __init__(self, limit: int, stats: ServerStats,
                 live_limit: Callable[[], int] | None = None) -> None:
        self._limit = limit
        #: Where the limit in force is read (CONFIG SET maxclients changes it).
        self._live_limit = live_limit
        self.stats = stats
        self.active = 0
        self._lock = threading.Lock()
        self._log_refusal = RateLimitedLog(logger, logging.WARNING)

    @property
    def limit(self) -> int:
        return self._live_limit() if self._live_limit is not None else self._limit

    def _acquire(self) -> bool:
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def _release(self) -> None:
        with self._lock:
            self.active -= 1

    def try_admit(self, peer: str) -> bool:
        admitted = self._acquire()
        if admitted:
            self.stats.opened()
        else:
            self.stats.rejected()
            self._log_refusal("refused connection from %s: server busy (limit %d)",
                              peer, self.limit)
        return admitted

    def release(self) -> None:
        self._release()
        self.stats.closed()
