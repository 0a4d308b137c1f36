"""Prefork: N worker processes share one port through SO_REUSEPORT.

Each worker runs the asyncio model on its own listening socket bound to the
same address; the kernel spreads new connections across them, so the workers
use every core with no accept lock and no thundering herd. The parent holds
the address (a bound, never-listening socket, so a restarted worker can always
re-bind the port), and supervises:

* it logs ``listening on`` only after every worker is listening;
* a worker that dies is reaped at once (SIGCHLD) and replaced; one that dies
  within a second of starting is replaced after a one-second pause, so a
  crashing worker cannot fork-bomb the machine;
* SIGTERM/SIGINT is forwarded to every worker, which shuts down gracefully;
  workers still alive after the grace period get SIGKILL; all are reaped.

``STATS``, ``INFO`` and metrics report sums over the workers: each worker
publishes its counters to :class:`~sockworks.core.worker_sums.WorkerSums`
(shared memory), and the parent keeps an exited worker's totals.

``--max-connections`` is one limit for the whole server: the workers share a
counter in shared memory (one slot per worker, so the parent can give back a
dead worker's connections).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import selectors
import signal
import time
from collections.abc import Sequence
from typing import Any

from sockworks.core.activation import listener_for
from sockworks.core.admission import Admission
from sockworks.core.config import Endpoint, ServerSettings
from sockworks.core.logs import reopen_log_files
from sockworks.core.net import open_listener
from sockworks.core.stats import ServerStats
from sockworks.core.worker_sums import WorkerSums
from sockworks.models.base import STOP_SIGNALS, Model, die_with_parent, kill_quietly
from sockworks.models.blocking import Waker

logger = logging.getLogger(__name__)

__all__ = ["PreforkModel", "SharedAdmission"]

#: How long a new worker gets to bind and report ready.
WORKER_START_TIMEOUT = 15.0
#: A worker dying sooner than this after its start is restarted after a pause.
CRASH_LOOP_WINDOW = 1.0


class SharedAdmission(Admission):
    """Admission over a counter shared by every worker process."""

    def __init__(self, limit: int, stats: ServerStats, counts: Any, slot: int) -> None:
        super().__init__(limit, stats)
        self._counts = counts
        self._slot = slot

    def _acquire(self) -> bool:
        counts = self._counts
        with counts.get_lock():
            if sum(counts.get_obj()) >= self.limit:
                return False
            counts[self._slot] += 1
            return True

    def _release(self) -> None:
        with self._counts.get_lock():
            self._counts[self._slot] -= 1


class PreforkModel(Model):
    name = "prefork"
    forks = True

    def __init__(self, endpoints: Sequence[Endpoint], settings: ServerSettings,
                 stats: ServerStats) -> None:
        super().__init__(endpoints, settings, stats)
        self.workers = settings.workers or os.cpu_count() or 2
        #: The workers' counters, summed for STATS/INFO/metrics (the Server
        #: creates it before forking anything; a bare model makes its own).
        if stats.shared is None or stats.shared.workers != self.workers:
            stats.shared = WorkerSums(self.workers, stats.local_counters())
        self.sums = stats.shared
        self.pids: dict[int, tuple[int, float]] = {}   # pid -> (slot, started)
        self.waker = Waker()
        self.stopping = False
        self.parent_pid = os.getpid()
        self._restart_at: dict[int, float] = {}        # slot -> when to restart
        ctx = multiprocessing.get_context("fork")
        self._counts = ctx.Array("l", self.workers)

    def bind(self) -> list[tuple[object, ...]]:
        for ep in self.endpoints:
            if ep.listener is not None or ep.unix_path is not None:
                # socket activation, or a UNIX socket: the workers share it
                self.listeners.append(listener_for(ep, backlog=self.settings.backlog))
                continue
            # SO_REUSEPORT would let us join another server's port group and
            # silently split its traffic: first prove the port is free with
            # an exclusive bind, then hold it with a shareable one.
            probe = open_listener(ep.host, ep.port, backlog=0, listen=False)
            port = probe.getsockname()[1]
            probe.close()
            self.listeners.append(open_listener(ep.host, port, backlog=0, reuse_port=True,
                                               listen=False))
        return [sock.getsockname() for sock in self.listeners]

    def start(self) -> None:
        signal.signal(signal.SIGCHLD, lambda signum, frame: self.waker.wake())
        for slot in range(self.workers):
            self._spawn(slot, wait=True)

    def request_stop(self) -> None:
        self.stopping = True
        self.waker.wake()

    # -- workers ---------------------------------------------------------------
    def _spawn(self, slot: int, *, wait: bool) -> None:
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(ready_r)
            self._worker_main(slot, ready_w)
        os.close(ready_w)
        self.pids[pid] = (slot, time.monotonic())
        with os.fdopen(ready_r, "rb") as ready:
            if wait:
                with selectors.DefaultSelector() as sel:
                    sel.register(ready, selectors.EVENT_READ)
                    if not sel.select(WORKER_START_TIMEOUT):
                        raise OSError(f"worker {slot} did not start within "
                                      f"{WORKER_START_TIMEOUT:g}s")
                status = ready.read()
                if status != b"ok":
                    raise OSError(status.decode(errors="replace") or f"worker {slot} failed")
        logger.debug("worker %d started (pid %d)", slot, pid)

    def _worker_main(self, slot: int, ready_w: int) -> None:
        """Runs in the child; never returns."""
        status = 1
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            # SIGHUP from the parent: reopen this worker's log file only (the
            # inherited handler would run the parent's hooks and re-signal).
            signal.signal(signal.SIGHUP, lambda signum, frame: self._worker_reload())
            self.waker.close()
            from sockworks.models.asyncio_model import AsyncioModel

            endpoints = [
                Endpoint(ep.host, 0, ep.service, sock, ep.tls, ep.unix_path, ep.unix_perm)
                if ep.listener is not None or ep.unix_path is not None else
                Endpoint(ep.host, sock.getsockname()[1], ep.service, None, ep.tls)
                for ep, sock in zip(self.endpoints, self.listeners)]
            for sock in self.listeners:
                if all(sock is not ep.listener for ep in endpoints):
                    sock.close()
            admission = SharedAdmission(self.settings.max_connections, self.stats,
                                        self._counts, slot)
            model = AsyncioModel(endpoints, self.settings, self.stats, admission=admission,
                                 reuse_port=True, supervised=True)
            model.install_signals()
            die_with_parent(self.parent_pid)  # after: its SIGTERM must stop *this* model
            try:
                model.bind()
            except OSError as exc:
                os.write(ready_w, str(exc).encode())
                raise
            os.write(ready_w, b"ok")
            os.close(ready_w)
            self.sums.start_publishing(slot, self.stats.local_counters)
            try:
                model.serve_forever()
            finally:
                self.sums.stop_publishing(self.stats.local_counters)
            status = 0
        except BaseException:
            logger.exception("worker %d failed", slot)
        finally:
            logging.shutdown()
            os._exit(status)

    def _worker_reload(self) -> None:
        """SIGHUP in a worker: reopen its log file and re-read its TLS files
        (the parent's handler would run the parent's hooks and re-signal)."""
        reopen_log_files()
        for tls in {id(ep.tls): ep.tls for ep in self.endpoints if ep.tls}.values():
            tls.reload()

    # -- supervision -------------------------------------------------------------
    def on_reload(self) -> None:
        # Each worker has its own log file handle: it reopens on its own SIGHUP
        # (the handler the worker inherited from the Server).
        for pid in self.pids:
            kill_quietly(pid, signal.SIGHUP)

    def on_second_signal(self) -> None:
        for pid in self.pids:
            kill_quietly(pid, signal.SIGKILL)

    def serve_forever(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self.waker, selectors.EVENT_READ)
            while not self.stopping:
                timeout = None
                if self._restart_at:
                    timeout = max(0.0, min(self._restart_at.values()) - time.monotonic())
                sel.select(timeout)
                self.waker.drain()
                self._reap()
                self._restart_due()
            self._shutdown(sel)
        self.waker.close()
        for sock in self.listeners:
            sock.close()
        logger.info("server stopped")

    def _reap(self) -> None:
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot, started = self.pids.pop(pid, (-1, 0.0))
            if slot < 0:
                continue
            with self._counts.get_lock():
                self._counts[slot] = 0  # its connections died with it
            self.sums.retire(slot)      # its totals stay in the sums
            if self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            logger.warning("worker %d (pid %d) exited with %s; restarting", slot, pid,
                           f"signal {-code}" if code < 0 else f"status {code}")
            delay = CRASH_LOOP_WINDOW if time.monotonic() - started < CRASH_LOOP_WINDOW else 0.0
            self._restart_at[slot] = time.monotonic() + delay

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot, when in list(self._restart_at.items()):
            if when <= now and not self.stopping:
                del self._restart_at[slot]
                try:
                    self._spawn(slot, wait=True)
                except OSError as exc:
                    logger.error("cannot restart worker %d: %s", slot, exc)
                    self._restart_at[slot] = now + CRASH_LOOP_WINDOW

    def _shutdown(self, sel: selectors.BaseSelector) -> None:
        logger.info("stopping %d worker(s)", len(self.pids))
        for pid in self.pids:
            kill_quietly(pid, signal.SIGTERM)
        # Workers use the same grace; give them a moment more to exit after it.
        deadline = time.monotonic() + self.settings.grace + 2.0
        while self.pids:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sel.select(remaining)
            self.waker.drain()
            self._reap()
        if self.pids:
            logger.warning("killing %d worker(s) still running after the grace period",
                           len(self.pids))
            for pid in self.pids:
                kill_quietly(pid, signal.SIGKILL)
            for pid in list(self.pids):
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
            self.pids.clear()
