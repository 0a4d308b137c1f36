"""Running a benchmark: one client process, or several started together.

:func:`run_bench` runs the connections of :mod:`sockworks.bench.clients` in
this process, or, with ``procs`` > 1, splits them across client processes
(spawned, not forked: the parent may hold threads) which set up, report
ready, start their clocks together, and send back their counts and histogram
for merging. The live progress line goes to stderr only when it is a terminal.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import queue
import random
import socket
import sys
import time
from importlib import metadata
from typing import Any, TextIO

from sockworks.bench.clients import CONNECT_CONCURRENCY, run_in_loop
from sockworks.bench.results import ERROR_KINDS, BenchConfig, BenchResult
from sockworks.protocols.udpjson import PAD_TO

logger = logging.getLogger(__name__)

__all__ = ["ERROR_KINDS", "BenchConfig", "BenchResult", "describe_host", "run_bench"]

#: How long a client process waits for the others to be set up (and its
#: parent to say go) before giving up: 10,000 connections open in seconds.
START_WAIT_SECONDS = 300.0

#: Asking a UDP server for its counters: attempts, and the first wait
#: (doubled each retry). Right after a run our address's token bucket may be
#: empty; at the default 100 requests/s a token is back within 10 ms.
STATS_ATTEMPTS = 5
STATS_FIRST_WAIT = 0.1


def _split(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def _process_main(config: BenchConfig, index: int, seed: int, results: Any, start: Any,
                  counters: Any) -> None:
    """Entry point of a client process (spawned)."""
    busy = _split(config.connections, config.procs, index)
    idle = _split(config.idle, config.procs, index)

    def ready() -> None:
        results.put(("ready", index, None))
        if not start.wait(START_WAIT_SECONDS):
            raise RuntimeError("the parent never started the run")

    def progress(completed: int, errors: int) -> None:
        counters[2 * index] = completed
        counters[2 * index + 1] = errors

    try:
        result = run_in_loop(config, busy, idle, seed, ready, progress)
    except BaseException as exc:  # report, whatever it is, so the parent does not hang
        results.put(("failed", index, f"{type(exc).__name__}: {exc}"))
        raise
    results.put(("done", index, result.to_wire()))


class _Progress:
    """The live line on stderr: only on a terminal, never into a pipe or file."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream if stream is not None and stream.isatty() else None
        self._last_time = time.monotonic()
        self._last_count = 0
        self._shown = False

    def update(self, completed: int, errors: int) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if now - self._last_time < 1.0 and self._shown:
            return
        rate = (completed - self._last_count) / max(now - self._last_time, 1e-9)
        if completed < self._last_count:
            rate = 0.0
        self._last_time, self._last_count = now, completed
        self.stream.write(f"\r{rate:12,.0f} req/s  {completed:12,} requests  {errors:6,} errors ")
        self.stream.flush()
        self._shown = True

    def finish(self) -> None:
        if self.stream is not None and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def run_bench(config: BenchConfig, progress_stream: TextIO | None = sys.stderr) -> BenchResult:
    """Run the benchmark ``config`` describes and return the merged result."""
    seed = config.workload.seed if config.workload.seed is not None else random.randrange(1 << 62)
    progress = _Progress(progress_stream)
    udp = config.workload.name == "udp"
    before = udp_rate_limited(config.host, config.port) if udp else None
    try:
        if config.procs == 1:
            result = run_in_loop(config, config.connections, config.idle, seed, None,
                                 progress.update)
        else:
            result = _run_processes(config, seed, progress)
    finally:
        progress.finish()
    if before is not None:
        # The server drops a rate-limited request without a word (an answer
        # would be what a reflection attack wants), so the client sees only a
        # timeout; the server's own counter says how many of those it was.
        after = udp_rate_limited(config.host, config.port)
        if after is not None:
            result.rate_limited = max(0, after - before)
    return result


def udp_rate_limited(host: str, port: int) -> int | None:
    """The ``rate_limited`` counter of a sockworks UDP server, or None.

    None when the server does not answer ``stats`` with that counter (the
    chapter's service knows only ``time``). Requests of ours the server
    dropped while answering this are not counted in the figure returned.
    """
    request = json.dumps({"type": "stats", "id": 0}).encode().ljust(PAD_TO)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.connect(address)
            wait = STATS_FIRST_WAIT
            for attempt in range(STATS_ATTEMPTS):
                sock.send(request)
                sock.settimeout(wait)
                try:
                    reply = json.loads(sock.recv(65536))
                except (TimeoutError, ValueError):
                    wait *= 2
                    continue
                counters = reply.get("stats") if isinstance(reply, dict) else None
                if not isinstance(counters, dict) or not isinstance(
                        counters.get("rate_limited"), int):
                    return None
                # Earlier attempts of ours that went unanswered were most
                # likely dropped by that same limit: not the load's.
                return max(0, int(counters["rate_limited"]) - attempt)
    except OSError:
        return None
    return None


def _run_processes(config: BenchConfig, seed: int, progress: _Progress) -> BenchResult:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start = context.Event()
    counters = context.Array("q", 2 * config.procs, lock=False)
    setup_deadline = time.monotonic() + config.connect_timeout * 4 + 30 + (
        (config.connections + config.idle) / CONNECT_CONCURRENCY / config.procs)
    processes = [
        context.Process(target=_process_main, name=f"sockworks-bench-{i}", daemon=True,
                        args=(config, i, seed + i, results, start, counters))
        for i in range(config.procs)
    ]
    for process in processes:
        process.start()
    merged = BenchResult()
    try:
        ready = 0
        finished = 0
        run_deadline: float | None = None
        while finished < config.procs:
            now = time.monotonic()
            deadline = setup_deadline if run_deadline is None else run_deadline
            if now > deadline:
                raise RuntimeError("client processes did not finish in time")
            try:
                kind, index, payload = results.get(timeout=min(0.5, deadline - now))
            except queue.Empty:
                if run_deadline is not None:
                    total = sum(counters[i] for i in range(0, 2 * config.procs, 2))
                    errors = sum(counters[i] for i in range(1, 2 * config.procs, 2))
                    progress.update(total, errors)
                if any(p.exitcode not in (None, 0) for p in processes):
                    raise RuntimeError("a client process died") from None
                continue
            if kind == "failed":
                raise RuntimeError(f"client process {index} failed: {payload}")
            if kind == "ready":
                ready += 1
                if ready == config.procs:
                    start.set()
                    run_deadline = (time.monotonic() + config.warmup + config.duration
                                    + config.connect_timeout + 30)
            elif kind == "done":
                merged.merge(BenchResult.from_wire(payload))
                finished += 1
    finally:
        start.set()  # never leave a child blocked on it
        for process in processes:
            process.join(10)
            if process.is_alive():  # pragma: no cover - only when a child hangs
                process.kill()
                process.join(5)
        results.close()
        results.join_thread()
    return merged


def describe_host() -> dict[str, Any]:
    """Facts that make numbers comparable: CPUs, Python, event loop."""
    try:
        loop_name = f"uvloop {metadata.version('uvloop')}"
    except metadata.PackageNotFoundError:
        loop_name = "asyncio"
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0], "loop": loop_name,
            "affinity": affinity}
