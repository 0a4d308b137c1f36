"""One exclusive run on a store (a Lua script) while every session stays served.

A script holds the store's lock for as long as it runs, as Redis's does the
whole server. Before its time passes ``busy-reply-threshold`` other clients
wait, as in Redis; after it they must be answered ``-BUSY`` at once, and
``SCRIPT KILL`` must get through. A session that blocked on the store lock
could answer nothing (and on an event loop it would block every connection),
so sessions pass this gate before they touch the store:

* a session calls :meth:`ExclusiveGate.enter` before it runs a chunk of
  requests and :meth:`~ExclusiveGate.leave` after. With no exclusive run this
  costs two list operations (atomic under the GIL) and one attribute read;
* :meth:`~ExclusiveGate.begin` (the script runner's thread) announces the run,
  then waits until every session inside has left, then runs: no session is
  ever inside while it runs, so none can block on its lock;
* while a run is announced, ``enter`` waits (at most until the run's start
  plus the caller's threshold) for it to end; past that it returns False and
  the session answers BUSY without touching the store.

The ordering argument: a session appends itself *then* reads ``_run``; the
runner sets ``_run`` *then* reads the list. Whichever comes second sees the
other, so either the session backs off or the runner waits for it.
"""

from __future__ import annotations

import threading
import time
from typing import Final

__all__ = ["DEFAULT_BUSY_REPLY_THRESHOLD_MS", "ExclusiveGate", "ExclusiveRun"]

#: Redis's busy-reply-threshold (formerly lua-time-limit) default, in ms.
DEFAULT_BUSY_REPLY_THRESHOLD_MS: Final = 5000

#: How often the runner re-checks for sessions still inside (they normally
#: wake it when they leave; this only bounds a missed wake-up).
_DRAIN_POLL: Final = 0.05


class ExclusiveRun:
    """One exclusive run: when it started, and what SCRIPT KILL may do to it."""

    __slots__ = ("started", "killed", "wrote", "function")

    def __init__(self) -> None:
        self.started = time.monotonic()
        #: SCRIPT KILL asked it to stop (its Lua hook raises at the next check).
        self.killed = False
        #: It already made a write: it cannot be killed (Redis: UNKILLABLE).
        self.wrote = False
        #: FCALL's function name and command line (None: EVAL), for
        #: FUNCTION STATS/KILL (services/resp_functions.py).
        self.function: tuple[bytes, list[bytes]] | None = None


class ExclusiveGate:
    """See the module docstring."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inside: list[None] = []
        self._run: ExclusiveRun | None = None
        #: Seconds a run may go on before sessions answer BUSY (the RESP
        #: service sets it from --busy-reply-threshold).
        self.threshold = DEFAULT_BUSY_REPLY_THRESHOLD_MS / 1000

    @property
    def running(self) -> ExclusiveRun | None:
        """The run in progress (or announced), None when there is none."""
        return self._run

    def enter(self) -> bool:
        """True: use the store, then call :meth:`leave`. False: a run has
        gone on for more than :attr:`threshold` seconds: answer BUSY (do
        not call leave)."""
        if self.try_enter():
            return True
        inside = self._inside
        with self._cond:
            while True:
                run = self._run
                if run is None:
                    inside.append(None)
                    return True
                remaining = run.started + self.threshold - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)

    def try_enter(self) -> bool:
        """:meth:`enter` without waiting: False at once while a run is
        announced or in progress (do not call leave then)."""
        inside = self._inside
        inside.append(None)
        if self._run is None:
            return True
        inside.pop()
        with self._cond:
            self._cond.notify_all()  # the runner may be waiting for us
        return False

    def leave(self) -> None:
        self._inside.pop()
        if self._run is not None:
            with self._cond:
                self._cond.notify_all()

    def begin(self) -> ExclusiveRun:
        """Announce a run, wait for the sessions inside to leave; the run."""
        with self._cond:
            while self._run is not None:
                self._cond.wait()
            run = self._run = ExclusiveRun()
            while self._inside:
                self._cond.wait(_DRAIN_POLL)
        run.started = time.monotonic()
        return run

    def stop(self) -> None:
        """Shutdown: stop the run in progress, whether it wrote or not (its
        Lua hook raises at its next check; the store's lock comes free)."""
        run = self._run
        if run is not None:
            run.killed = True

    def end(self) -> None:
        with self._cond:
            self._run = None
            self._cond.notify_all()
