"""Measure every performance figure of issue 6 as ratios within one run.

What lives here: starting real server processes (``sockworks serve``,
redis-server, the chapter's baselines in ``benchmarks/chapter``) pinned with
``taskset``, driving them with ``lineload`` (our C load generator, built at
measurement time from ``benchmarks/tools/lineload.c``; the package does not
depend on it) or ``sockworks bench udp``, and writing ``ratios.md`` and
``ratios.json``.

Every figure measures its variants round-robin (A, B, A, B, ...) ``--repeat``
times, each run against a freshly started server, and reports the median of
each side and the ratio of the medians (subject / reference).

    .venv/bin/python benchmarks/ratios.py --out benchmarks/out            # all, ~15 min
    .venv/bin/python benchmarks/ratios.py --only startup --replay-keys 100000 --repeat 1

Defaults (issue 6): server on CPU 0, load generator on CPU 1, 50 connections,
16-byte values, half SETs over 10,000 keys, 5 s per run, 3 runs per side.
Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
#: lineload, vendored from the tools the project's authors share, so a clone
#: of this repository is all the benchmarks need.
LINELOAD_SRC = REPO / "benchmarks" / "tools" / "lineload.c"
CHAPTER = REPO / "benchmarks" / "chapter"
PY = sys.executable
HOST = "127.0.0.1"

#: A server that has not said it is listening within this long is broken
#: (a 1,000,000-key replay is expected in 3 s; 60 s leaves room for a slow box).
READY_TIMEOUT = 60.0
#: SIGTERM gets this long (sockworks' default --grace is 10 s) before SIGKILL.
STOP_TIMEOUT = 15.0
#: A load run may take this long beyond --duration (setting up 10,000 idle
#: connections, 64 at a time, takes a few seconds).
CLIENT_SLACK = 120.0
#: A pipelined batch answered slower than this at p50 is a Nagle/delayed-ACK
#: stall (the chapter's server takes ~40 ms per 16-deep batch).
STALL_P50_US = 20_000.0
#: A load generator busier than this (% of its one CPU) may be the bottleneck.
CLIENT_BUSY_PCT = 90.0
THREAD_MODELS = ["thread", "pool", "socketserver-thread"]
KV_MODELS = ["asyncio", *THREAD_MODELS]
FIGURES = ["kv-text", "kv-resp", "fastpath", "thread-vs-chapter", "idle", "persistence",
           "startup", "echo", "udp"]
#: The environment that selects the pure-Python hot path (services/accel.py).
PURE_ENV = {"SOCKWORKS_NO_EXTENSIONS": "1"}
LISTENING = re.compile(r"listening on \S+:(\d+) \(model=")
CHAPTER_PORT = re.compile(r"on port (\d+)")

_LIVE: set[Server] = set()


class BenchError(Exception):
    """A server or load run did not behave; the message says which and why."""


@dataclass
class Run:
    """One measurement of one variant."""

    variant: str
    value: float
    commands: list[str]
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    """One line of a figure's table: a ratio subject/reference, or a plain value."""

    what: str
    subject: str
    subject_median: float
    reference: str = ""
    reference_median: float | None = None
    ratio: float | None = None
    unit: str = "req/s"
    target: str = ""
    met: bool | None = None


@dataclass
class Figure:
    name: str
    title: str
    notes: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)


@dataclass
class Config:
    lineload: str
    duration: float
    repeat: int
    connections: int
    replay_keys: int
    warmup: float = 0.0
    data_root: str | None = None
    server_cpus: str = "0"
    client_cpus: str = "1"


# -- processes ---------------------------------------------------------------

class Server:
    """A server process whose merged stdout/stderr is drained by a thread."""

    def __init__(self, argv: list[str], cpus: str, label: str,
                 env: dict[str, str] | None = None) -> None:
        self.argv = ["taskset", "-c", cpus, *argv]
        self.env = env or {}
        self.label = label
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, cwd=REPO, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **self.env} if self.env else None,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        _LIVE.add(self)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    @property
    def command(self) -> str:
        return " ".join([*(f"{k}={_quote(v)}" for k, v in self.env.items()),
                         *(_quote(a) for a in self.argv)])

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip())
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: re.Pattern[str], count: int = 1,
                 timeout: float = READY_TIMEOUT) -> list[re.Match[str]]:
        """The first ``count`` matches in the output, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in map(pattern.search, self.lines) if m]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    tail = "\n".join(self.lines[-15:])
                    raise BenchError(f"{self.label}: no {pattern.pattern!r} line "
                                     f"(exit {self.proc.poll()}); output:\n{tail}")
                self._cond.wait(min(left, 0.5))

    def stop(self) -> None:
        """SIGTERM, then SIGKILL of the whole process group after STOP_TIMEOUT."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # forked children, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=STOP_TIMEOUT)
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        _LIVE.discard(self)


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w./:,=@+-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


@contextlib.contextmanager
def sockworks(service: str, args: list[str], cpus: str = "0",
              port_index: int = 0,
              env: dict[str, str] | None = None) -> Iterator[tuple[Server, int]]:
    """``python -m sockworks serve SERVICE --port 0 ARGS``; yields (server, port)."""
    srv = Server([PY, "-m", "sockworks", "serve", service, "--port", "0", *args], cpus,
                 f"serve {service} {' '.join(args)}", env)
    try:
        port = int(srv.wait_for(LISTENING, port_index + 1)[port_index].group(1))
        yield srv, port
    finally:
        srv.stop()


@contextlib.contextmanager
def chapter(script: str, cpus: str = "0") -> Iterator[tuple[Server, int]]:
    """``python benchmarks/chapter/SCRIPT --port 0``; it prints ``... on port N``."""
    srv = Server([PY, str(CHAPTER / script), "--port", "0"], cpus, f"chapter {script}")
    try:
        yield srv, int(srv.wait_for(CHAPTER_PORT)[0].group(1))
    finally:
        srv.stop()


def free_port() -> int:
    """A port that was free a moment ago (redis-server cannot bind port 0 and
    report it, so there is a small race with other processes binding it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis(extra: list[str], cpus: str = "0") -> Iterator[tuple[Server, int]]:
    port = free_port()
    srv = Server(["redis-server", "--bind", HOST, "--port", str(port), "--save", "",
                  "--daemonize", "no", "--loglevel", "warning", *extra], cpus, "redis-server")
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 1) as s:
                s.settimeout(1)
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
            if srv.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("redis-server did not answer PING:\n" + "\n".join(srv.lines))
            time.sleep(0.05)
        yield srv, port
    finally:
        srv.stop()


def lineload_argv(cfg: Config, port: int, proto: str, *, pipeline: int = 1,
                  connections: int | None = None, set_ratio: float = 0.5,
                  extra: tuple[str, ...] = ()) -> list[str]:
    argv = ["taskset", "-c", cfg.client_cpus, cfg.lineload, "-h", HOST, "-p", str(port),
            "--proto", proto, "-c", str(connections or cfg.connections),
            "-d", str(cfg.duration), "-P", str(pipeline), "-k", "10000", "-s", "16",
            "-r", str(set_ratio), *extra, "--json", "-q"]
    if cfg.warmup > 0:
        argv[-2:-2] = ["--warmup", str(cfg.warmup)]
    if proto == "line":
        argv.append("--greeting")
    return argv


def parse_lineload(out: str, argv: list[str]) -> dict[str, Any]:
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        raise BenchError(f"no JSON from {' '.join(argv)}:\n{out[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def lineload(cfg: Config, argv: list[str]) -> dict[str, Any]:
    done = subprocess.run(argv, capture_output=True, text=True,
                          timeout=cfg.duration + CLIENT_SLACK, check=False)
    return parse_lineload(done.stdout + done.stderr, argv)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads, not its forked children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_pct(pid: int, before: float, seconds: float) -> float:
    with contextlib.suppress(OSError):
        return 100.0 * (cpu_seconds(pid) - before) / max(seconds, 1e-9)
    return float("nan")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


# -- measuring ---------------------------------------------------------------

Measure = Callable[[], Run]
ServerFactory = Callable[[], contextlib.AbstractContextManager[tuple[Server, int]]]


def round_robin(cfg: Config, fig: Figure, variants: dict[str, Measure]) -> dict[str, float]:
    """Run every variant ``repeat`` times, alternating; the median per variant."""
    values: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(cfg.repeat):
        for name, measure in variants.items():
            run = measure()
            run.variant = name
            fig.runs.append(run)
            values[name].append(run.value)
            errs = run.raw.get("errors_total", 0)
            shown = f"{run.value:,.0f}" if run.value >= 100 else f"{run.value:.3f}"
            if "server_cpu_pct" in run.raw:
                shown += (f"  (server CPU {run.raw['server_cpu_pct']:.0f}%, "
                          f"client {run.raw.get('client_cpu_pct', 0.0):.0f}%)")
            print(f"  [{fig.name}] {name} run {i + 1}/{cfg.repeat}: {shown}"
                  + (f"  ({errs} errors)" if errs else ""), file=sys.stderr, flush=True)
            if errs:
                fig.notes.append(f"{name} run {i + 1}: {errs} client errors "
                                 f"{run.raw.get('errors')}")
            if run.raw.get("client_cpu_pct", 0.0) >= CLIENT_BUSY_PCT:
                fig.notes.append(f"{name}: the load generator used "
                                 f"{run.raw['client_cpu_pct']:.0f}% of its CPU: the figure may "
                                 "be the client's limit, not the server's")
    return {name: statistics.median(v) for name, v in values.items()}


def ratio_row(what: str, med: dict[str, float], subject: str, reference: str,
              target: float | None = None, unit: str = "req/s") -> Row:
    ref = med[reference]
    ratio = med[subject] / ref if ref else float("nan")
    return Row(what, subject, med[subject], reference, ref, ratio, unit,
               f">= {target:.2f}" if target is not None else "",
               (ratio >= target) if target is not None else None)


def load_run(cfg: Config, server: ServerFactory, proto: str, **load: Any) -> Run:
    with server() as (srv, port):
        argv = lineload_argv(cfg, port, proto, **load)
        cpu0, t0 = cpu_seconds(srv.proc.pid), time.monotonic()
        raw = lineload(cfg, argv)
        raw["server_cpu_pct"] = server_cpu_pct(srv.proc.pid, cpu0, time.monotonic() - t0)
    return Run("", float(raw["rps"]), [srv.command, " ".join(_quote(a) for a in argv)], raw)


def redis_plain() -> ServerFactory:
    return partial(redis, ["--appendonly", "no"])


def kv_server(model: str, *extra: str, resp: bool = False,
              env: dict[str, str] | None = None) -> ServerFactory:
    args = ["--model", model, "--idle-timeout", "0", *extra]
    if resp:
        args += ["--resp-port", "0"]
    return partial(sockworks, "kv", args, port_index=1 if resp else 0, env=env)


def fig_kv(cfg: Config, resp: bool) -> Figure:
    name = "kv-resp" if resp else "kv-text"
    targets = FASTPATH_TARGETS["resp" if resp else "text"]
    fig = Figure(name, "KV over RESP (--resp-port) vs redis-server" if resp
                 else "KV text protocol vs redis-server (RESP)")
    proto = "resp" if resp else "line"
    for pipeline in (1, 16):
        variants: dict[str, Measure] = {
            "redis-server": partial(load_run, cfg, redis_plain(), "resp", pipeline=pipeline)}
        for model in KV_MODELS:
            variants[model] = partial(load_run, cfg, kv_server(model, resp=resp), proto,
                                      pipeline=pipeline)
        med = round_robin(cfg, fig, variants)
        rows = [ratio_row(f"P{pipeline} {m}", med, m, "redis-server") for m in KV_MODELS]
        best = max(rows, key=lambda r: r.ratio or 0.0)
        fig.rows += rows
        fig.rows.append(ratio_row(f"P{pipeline} best model ({best.subject})", med,
                                  best.subject, "redis-server", targets[pipeline]))
    return fig


#: Issue #15's targets against redis-server, per port and pipeline depth.
FASTPATH_TARGETS = {"text": {1: 0.85, 16: 0.90}, "resp": {1: 0.80, 16: 0.75}}


def fig_fastpath(cfg: Config) -> Figure:
    """The asyncio model with the compiled hot path and with the pure-Python
    one (SOCKWORKS_NO_EXTENSIONS=1) against redis-server, both ports, P1 and
    P16, every variant alternating in one run (issue #15)."""
    fig = Figure("fastpath", "Compiled vs pure-Python hot path vs redis-server (asyncio model)")
    for port, proto, resp in (("text", "line", False), ("resp", "resp", True)):
        for pipeline in (1, 16):
            variants: dict[str, Measure] = {
                "redis-server": partial(load_run, cfg, redis_plain(), "resp", pipeline=pipeline),
                "compiled": partial(load_run, cfg, kv_server("asyncio", resp=resp), proto,
                                    pipeline=pipeline),
                "pure": partial(load_run, cfg, kv_server("asyncio", resp=resp, env=PURE_ENV),
                                proto, pipeline=pipeline)}
            first = len(fig.runs)
            med = round_robin(cfg, fig, variants)
            target = FASTPATH_TARGETS[port][pipeline]
            fig.rows += [
                ratio_row(f"{port} P{pipeline} compiled", med, "compiled", "redis-server", target),
                ratio_row(f"{port} P{pipeline} pure", med, "pure", "redis-server"),
                ratio_row(f"{port} P{pipeline} compiled / pure", med, "compiled", "pure")]
            # Requests per second of server CPU: what each server gets done
            # with the CPU it was given, which other load on a shared machine
            # disturbs far less than requests per wall-clock second.
            per_cpu = {name: statistics.median(
                run.value * 100.0 / run.raw["server_cpu_pct"] for run in fig.runs[first:]
                if run.variant == name and run.raw.get("server_cpu_pct", 0) > 0)
                for name in variants}
            fig.rows += [
                ratio_row(f"{port} P{pipeline} compiled, per server CPU-s", per_cpu, "compiled",
                          "redis-server", unit="req/CPU-s"),
                ratio_row(f"{port} P{pipeline} pure, per server CPU-s", per_cpu, "pure",
                          "redis-server", unit="req/CPU-s")]
    return fig


def fig_thread_vs_chapter(cfg: Config) -> Figure:
    fig = Figure("thread-vs-chapter", "Thread-based models vs the chapter's KV server")

    chap: ServerFactory = partial(chapter, "kv_server.py")
    variants: dict[str, Measure] = {"chapter kv_server.py": partial(load_run, cfg, chap, "line")}
    for model in THREAD_MODELS:
        variants[model] = partial(load_run, cfg, kv_server(model), "line")
    med = round_robin(cfg, fig, variants)
    fig.rows += [ratio_row(f"P1 {m}", med, m, "chapter kv_server.py", 1.0) for m in THREAD_MODELS]
    # Pipelining stall: one connection, 16-deep batches; p50 latency per batch.
    def stall_p50(server: ServerFactory) -> Run:
        run = load_run(cfg, server, "line", pipeline=16, connections=1)
        run.value = float(run.raw["latency_us"]["p50"])
        return run
    stall: dict[str, Measure] = {"stall chapter kv_server.py": partial(stall_p50, chap)}
    for model in THREAD_MODELS:
        stall[f"stall {model}"] = partial(stall_p50, kv_server(model))
    lat = round_robin(cfg, fig, stall)
    for label, p50 in lat.items():
        ours = "chapter" not in label
        target = f"< {STALL_P50_US / 1000:.0f} ms" if ours else "(context)"
        fig.rows.append(Row("-c 1 -P 16 p50 latency", label.removeprefix("stall "), p50,
                            unit="us", target=target,
                            met=(p50 < STALL_P50_US) if ours else None))
    fig.notes.append("Stall check: one connection, 16 requests per batch; the chapter's "
                     "one-sendall-per-reply server waits ~40 ms per batch (Nagle + delayed ACK).")
    return fig


def fig_idle(cfg: Config, idle: int) -> Figure:
    fig = Figure("idle", f"asyncio: {cfg.connections} busy connections with and without "
                         f"{idle:,} idle ones")
    server = kv_server("asyncio", "--max-connections", str(idle + cfg.connections + 1000))
    per_conn: list[float] = []

    def busy_only() -> Run:
        return load_run(cfg, server, "line")

    def with_idle() -> Run:
        with server() as (srv, port):
            time.sleep(0.3)
            before = rss_kb(srv.proc.pid)
            argv = lineload_argv(cfg, port, "line", extra=("--idle", str(idle)))
            client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True)
            try:
                deadline = time.monotonic() + CLIENT_SLACK
                while open_fds(srv.proc.pid) < idle + cfg.connections and client.poll() is None \
                        and time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(min(0.5, cfg.duration / 4))
                during, fds = rss_kb(srv.proc.pid), open_fds(srv.proc.pid)
                out, _ = client.communicate(timeout=cfg.duration + CLIENT_SLACK)
            finally:
                if client.poll() is None:
                    client.kill()
                    client.wait(timeout=STOP_TIMEOUT)
            raw = parse_lineload(out, argv)
        if raw.get("idle_open_at_end", 0) < idle:
            fig.notes.append(f"only {raw.get('idle_open_at_end')} of {idle} idle connections "
                             f"were open at the end of a run: {raw.get('errors')}")
        kb = (during - before) / max(1, idle)
        per_conn.append(kb)
        raw["server_rss_kb"] = {"before": before, "during": during, "open_fds": fds,
                                "kb_per_idle_connection": kb}
        return Run("", float(raw["rps"]), [srv.command, " ".join(_quote(a) for a in argv)], raw)

    med = round_robin(cfg, fig, {"busy only": busy_only, f"+{idle} idle": with_idle})
    fig.rows.append(ratio_row("throughput with idle connections", med, f"+{idle} idle",
                              "busy only", 0.95))
    kb = statistics.median(per_conn)
    fig.rows.append(Row("resident memory per idle connection", "asyncio", kb, unit="KB",
                        target="<= 3.0", met=kb <= 3.0))
    fig.notes.append("RSS: server VmRSS once its open fds reach idle + busy, minus VmRSS "
                     "before lineload started, divided by the idle count.")
    return fig


def fig_persistence(cfg: Config) -> Figure:
    fig = Figure("persistence", "All writes (-r 1): persistence vs none")

    def persistent(fsync: str) -> Measure:
        def measure() -> Run:
            with tempfile.TemporaryDirectory(prefix="ratios-kv-", dir=cfg.data_root) as data:
                return load_run(cfg, kv_server("asyncio", "--data-dir", data, "--fsync", fsync),
                                "line", set_ratio=1.0)
        return measure

    def redis_always() -> Run:
        with tempfile.TemporaryDirectory(prefix="ratios-redis-", dir=cfg.data_root) as data:
            server = partial(redis, ["--appendonly", "yes", "--appendfsync", "always",
                                     "--dir", data])
            return load_run(cfg, server, "resp", set_ratio=1.0)

    med = round_robin(cfg, fig, {
        "memory": partial(load_run, cfg, kv_server("asyncio"), "line", set_ratio=1.0),
        "fsync everysec": persistent("everysec"),
        "fsync always": persistent("always"),
        "redis no persistence": partial(load_run, cfg, redis_plain(), "resp", set_ratio=1.0),
        "redis appendfsync always": redis_always,
    })
    # Issue #15: everysec >= 0.90x; always at least the ratio redis-server's
    # appendfsync always makes of its own no-AOF figure in the same run
    # (fsync costs differ between machines, so only that comparison holds).
    redis_row = ratio_row("redis appendfsync always (context)", med,
                          "redis appendfsync always", "redis no persistence")
    fig.rows.append(ratio_row("--fsync everysec", med, "fsync everysec", "memory", 0.90))
    fig.rows.append(ratio_row("--fsync always", med, "fsync always", "memory",
                              redis_row.ratio))
    fig.rows.append(redis_row)
    root = Path(cfg.data_root or tempfile.gettempdir())
    fs = subprocess.run(["df", "-PT", str(root)], capture_output=True, text=True, timeout=10,
                        check=False).stdout.splitlines()[-1:]
    fig.notes.append(f"sockworks: serve kv --model asyncio, a fresh --data-dir per run under "
                     f"{root} ({' '.join(fs[0].split()[:2]) if fs else '?'}); that file "
                     "system decides what fsync costs (--data-root to choose it).")
    return fig


def time_to_listen(args: list[str], label: str, keys: int = 0) -> Run:
    """Seconds from process start to 'listening on'; then DBSIZE must say ``keys``
    (a server that loaded its log lazily would not be measured fairly)."""
    with sockworks("kv", args) as (srv, port):
        elapsed = time.perf_counter() - srv.started
        dbsize = kv_dbsize(port)
    if dbsize != keys:
        raise BenchError(f"{label}: DBSIZE {dbsize} after start-up, expected {keys}")
    return Run(label, elapsed, [srv.command], {"seconds": elapsed, "dbsize": dbsize})


def kv_dbsize(port: int) -> int:
    with socket.create_connection((HOST, port), timeout=10) as conn:
        conn.settimeout(10)
        reader = conn.makefile("rb")
        reader.readline()  # READY
        conn.sendall(b"DBSIZE\n")
        reply = reader.readline()
        reader.close()
    return int(reply)


def fig_startup(cfg: Config) -> Figure:
    fig = Figure("startup", "Start-up and log replay (process start until 'listening on')")
    with tempfile.TemporaryDirectory(prefix="ratios-replay-") as data:
        t0 = time.perf_counter()
        build_log(data, cfg.replay_keys)
        fig.notes.append(f"Built a {cfg.replay_keys:,}-key log in {time.perf_counter() - t0:.1f} s "
                         f"({sum(p.stat().st_size for p in Path(data).iterdir()) / 1e6:.1f} MB) "
                         "through the store API in-process.")
        med = round_robin(cfg, fig, {
            "empty": partial(time_to_listen, ["--idle-timeout", "0"], "empty"),
            "replay": partial(time_to_listen, ["--data-dir", data, "--fsync", "no"], "replay",
                              cfg.replay_keys),
        })
    fig.rows.append(Row("serve kv listening", "empty", med["empty"], unit="s",
                        target="<= 0.5", met=med["empty"] <= 0.5))
    fig.rows.append(Row(f"replay {cfg.replay_keys:,}-key log", "replay", med["replay"], unit="s",
                        target="<= 3.0" if cfg.replay_keys >= 1_000_000 else "(keys < 1e6)",
                        met=med["replay"] <= 3.0 if cfg.replay_keys >= 1_000_000 else None))
    return fig


def build_log(data_dir: str, keys: int) -> None:
    """Write ``keys`` SETs through the store ``serve kv`` uses: a real log."""
    sys.path.insert(0, str(REPO / "src"))
    from sockworks.storage.embedded import open_embedded_store

    store = open_embedded_store(data_dir, "no", active_expiry=False)
    try:
        value = b"v" * 16
        for i in range(keys):
            store.set(b"key:%d" % i, value)
    finally:
        store.close()


ECHO_PAIRS = [("thread", "thread_echo.py"), ("pool", "pool_echo.py"),
              ("socketserver-thread", "socketserver_echo.py"),
              ("socketserver-fork", "socketserver_fork_echo.py"),
              ("asyncio", "thread_echo.py"), ("prefork", "thread_echo.py")]


def fig_echo(cfg: Config) -> Figure:
    fig = Figure("echo", "serve echo per model vs the chapter's echo servers")
    variants: dict[str, Measure] = {}
    for script in dict.fromkeys(s for _, s in ECHO_PAIRS):
        variants[f"chapter {script}"] = partial(load_run, cfg, partial(chapter, script), "echo",
                                                extra=("--expect-upper",))
    for model, _ in ECHO_PAIRS:
        args = ["--model", model, "--idle-timeout", "0"]
        cpus = cfg.server_cpus
        if model == "prefork":
            args += ["--workers", "2"]
            cpus = f"{cfg.server_cpus},{cfg.client_cpus}"
        variants[model] = partial(load_run, cfg, partial(sockworks, "echo", args, cpus=cpus),
                                  "echo", extra=("--expect-upper",))
    med = round_robin(cfg, fig, variants)
    fig.rows += [ratio_row(f"echo {m}", med, m, f"chapter {s}") for m, s in ECHO_PAIRS]
    fig.notes.append("asyncio and prefork have no chapter counterpart: compared with "
                     "thread_echo.py, the chapter's first server.")
    fig.notes.append(f"prefork --workers 2 is pinned to CPUs {cfg.server_cpus},{cfg.client_cpus} "
                     "(one core would make it pointless), so it shares a core with lineload: "
                     "not comparable with the single-core rows.")
    return fig


def udp_run(cfg: Config, server: ServerFactory, udp_type: str) -> Run:
    with server() as (srv, port):
        argv = ["taskset", "-c", cfg.client_cpus, PY, "-m", "sockworks", "bench", "udp",
                "--host", HOST, "--port", str(port), "-c", str(cfg.connections),
                "-d", str(cfg.duration), "--udp-type", udp_type, "--json"]
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        server0, t0 = cpu_seconds(srv.proc.pid), time.monotonic()
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True,
                              timeout=cfg.duration + CLIENT_SLACK, check=False)
        server_pct = server_cpu_pct(srv.proc.pid, server0, time.monotonic() - t0)
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        raw: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        raise BenchError("bench udp printed no JSON:\n"
                         f"{done.stdout[-1000:]}{done.stderr[-1000:]}") from None
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    raw["client_cpu_pct"] = 100.0 * cpu / max(cfg.duration, 1e-9)  # includes its start-up
    raw["server_cpu_pct"] = server_pct  # over the client's whole life, start-up included
    return Run("", float(raw["requests_per_second"]), [srv.command, " ".join(argv)], raw)


def fig_udp(cfg: Config) -> Figure:
    fig = Figure("udp", "serve udp per model vs the chapter's UDP service")
    variants: dict[str, Measure] = {
        "chapter udp_json.py": partial(udp_run, cfg, partial(chapter, "udp_json.py"), "time")}
    for model in ("blocking", "asyncio"):
        args = ["--model", model, "--rate", "1000000000", "--burst", "1000000000"]
        variants[model] = partial(udp_run, cfg, partial(sockworks, "udp", args), "ping")
    med = round_robin(cfg, fig, variants)
    fig.rows += [ratio_row(f"udp {m}", med, m, "chapter udp_json.py")
                 for m in ("blocking", "asyncio")]
    fig.notes.append("Load: sockworks bench udp (lineload has no UDP), ping for sockworks, "
                     "--udp-type time for the chapter's service (it knows only time).")
    return fig


# -- report ------------------------------------------------------------------

def machine() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in
                Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown")
    info: dict[str, Any] = {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(),
                            "python": platform.python_version()}
    for pkg in ("uvloop", "hiredis"):
        try:
            info[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            info[pkg] = "not installed"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["redis-server"] = subprocess.run(["redis-server", "--version"], capture_output=True,
                                              text=True, timeout=10).stdout.strip()
        info["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                     capture_output=True, text=True, timeout=10).stdout.strip()
    return info


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "KB":
        return f"{value:.2f} KB"
    if unit == "us":
        return f"{value / 1000:.2f} ms"
    return f"{value:,.0f}"


def markdown(figures: list[Figure], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    out = ["# sockworks performance ratios", "",
           f"{meta['date']} · {m['cpu']}, {m['cpus']} CPUs · Linux {m['kernel']} · "
           f"Python {m['python']} · uvloop {m['uvloop']} · hiredis {m['hiredis']} · "
           f"{m.get('redis-server', 'redis-server ?')} · git {m.get('git', '?')}", "",
           f"Server on CPU {meta['server_cpus']}, load on CPU {meta['client_cpus']}, "
           f"{meta['connections']} connections, 16-byte values, -r 0.5 over 10,000 keys unless "
           f"stated; {meta['repeat']} runs per side of {meta['duration']} s "
           f"(warm-up {meta['warmup']} s), alternating, each on a fresh server; medians; "
           "ratio = subject / reference. Load average at start "
           f"{meta['loadavg_start'][0]:.2f}, at end {meta['loadavg_end'][0]:.2f}.", "",
           f"Command: `{' '.join(_quote(a) for a in meta['argv'])}`", ""]
    for fig in figures:
        out += [f"## {fig.name}: {fig.title}", ""]
        if fig.rows:
            out += ["| what | subject | median | reference | median | ratio | target | met |",
                    "|---|---|---:|---|---:|---:|---|---|"]
        for r in fig.rows:
            met = "" if r.met is None else ("yes" if r.met else "**no**")
            ratio = "" if r.ratio is None else f"{r.ratio:.3f}"
            out.append(f"| {r.what} | {r.subject} | {_fmt(r.subject_median, r.unit)} | "
                       f"{r.reference} | {_fmt(r.reference_median, r.unit)} | {ratio} | "
                       f"{r.target} | {met} |")
        out.append("")
        for note in dict.fromkeys(fig.notes):
            first, _, rest = note.partition("\n")
            out.append(f"- {first}")
            if rest:  # a failure's output
                out += ["", "  ```", *[f"  {ln}" for ln in rest.splitlines()], "  ```"]
        seen: dict[str, list[str]] = {}
        for run in fig.runs:
            seen.setdefault(run.variant, run.commands)
        out += ["", "<details><summary>commands (first run of each variant)</summary>", ""]
        for variant, commands in seen.items():
            out.append(f"- {variant}: " + " then ".join(f"`{c}`" for c in commands))
        out += ["", "</details>", ""]
    return "\n".join(out)


def ensure_lineload(path: str | None, src: str) -> str:
    if path:
        if not os.access(path, os.X_OK):
            sys.exit(f"ratios: --lineload {path} is not an executable")
        return path
    source = Path(src)
    if not source.is_file():
        sys.exit(f"ratios: lineload source {source} not found; pass --lineload PATH or "
                 "--lineload-src PATH (lineload is a measurement-time tool, not a dependency)")
    target = REPO / "benchmarks" / "lineload"
    if not target.exists() or target.stat().st_mtime < source.stat().st_mtime:
        # The flags its header gives (-pthread: it runs one loop per thread).
        subprocess.run(["gcc", "-O2", "-Wall", "-pthread", "-o", str(target), str(source)],
                       check=True, timeout=120)
    return str(target)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(FIGURES), help=f"figures: {','.join(FIGURES)}")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per side (default 3)")
    ap.add_argument("--connections", type=int, default=50, help="busy connections (default 50)")
    ap.add_argument("--idle", type=int, default=10_000, help="idle connections (default 10000)")
    ap.add_argument("--replay-keys", type=int, default=1_000_000,
                    help="keys in the replayed log (default 1000000)")
    ap.add_argument("--warmup", type=float, default=0.0,
                    help="lineload --warmup seconds before each measured run (default 0)")
    ap.add_argument("--data-root", help="where persistence data dirs go (default: $TMPDIR)")
    ap.add_argument("--lineload", help="lineload binary (default: build it with gcc -O2)")
    ap.add_argument("--lineload-src", default=str(LINELOAD_SRC),
                    help="lineload's C source (default benchmarks/tools/lineload.c)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out"), help="output directory")
    args = ap.parse_args(argv)
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(only) - set(FIGURES)
    if unknown:
        ap.error(f"unknown figure(s) {', '.join(sorted(unknown))}; known: {', '.join(FIGURES)}")
    if args.repeat < 1 or args.duration <= 0:
        ap.error("--repeat must be >= 1 and --duration > 0")
    needs_lineload = bool(set(only) - {"startup", "udp"})
    tools = ["taskset"]
    if set(only) & {"kv-text", "kv-resp", "fastpath", "persistence"}:
        tools.append("redis-server")
    if needs_lineload and not args.lineload:
        tools.append("gcc")
    for tool in tools:
        if shutil.which(tool) is None:
            sys.exit(f"ratios: {tool} not found on PATH")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # lineload inherits it
    if hard < args.idle + args.connections + 100 and "idle" in only:
        sys.exit(f"ratios: RLIMIT_NOFILE hard limit {hard} is too low for --idle {args.idle}")
    if args.data_root:
        Path(args.data_root).mkdir(parents=True, exist_ok=True)
    cfg = Config(ensure_lineload(args.lineload, args.lineload_src) if needs_lineload else "",
                 args.duration, args.repeat, args.connections, args.replay_keys,
                 args.warmup, args.data_root)
    builders: dict[str, Callable[[], Figure]] = {
        "kv-text": lambda: fig_kv(cfg, resp=False), "kv-resp": lambda: fig_kv(cfg, resp=True),
        "fastpath": lambda: fig_fastpath(cfg),
        "thread-vs-chapter": lambda: fig_thread_vs_chapter(cfg),
        "idle": lambda: fig_idle(cfg, args.idle), "persistence": lambda: fig_persistence(cfg),
        "startup": lambda: fig_startup(cfg), "echo": lambda: fig_echo(cfg),
        "udp": lambda: fig_udp(cfg)}
    meta: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                            "machine": machine(), "lineload": cfg.lineload,
                            "server_cpus": cfg.server_cpus, "client_cpus": cfg.client_cpus,
                            "connections": cfg.connections, "duration": cfg.duration,
                            "repeat": cfg.repeat, "warmup": cfg.warmup, "argv": sys.argv,
                            "loadavg_start": os.getloadavg()}
    if meta["loadavg_start"][0] > 0.5:
        print(f"ratios: warning: load average {meta['loadavg_start'][0]:.2f}; the machine "
              "is not quiet and ratios will be noisy", file=sys.stderr)
    figures: list[Figure] = []

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)
    # Explicit: a shell's background job inherits SIGINT ignored, and SIGTERM
    # would otherwise leave the servers (own sessions) running.
    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    try:
        for name in FIGURES:
            if name not in only:
                continue
            print(f"ratios: {name} ...", file=sys.stderr, flush=True)
            try:
                figures.append(builders[name]())
            except (BenchError, OSError, ValueError, KeyError,
                    subprocess.SubprocessError) as exc:  # report it, measure the rest
                print(f"ratios: {name} failed: {exc}", file=sys.stderr, flush=True)
                figures.append(Figure(name, "FAILED", notes=[f"{type(exc).__name__}: {exc}"]))
    except KeyboardInterrupt:
        print("ratios: interrupted; writing what was measured", file=sys.stderr)
        meta["interrupted"] = True
    finally:
        for srv in list(_LIVE):
            srv.stop()
    meta["loadavg_end"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = markdown(figures, meta)
    (out / "ratios.md").write_text(report + "\n")
    (out / "ratios.json").write_text(json.dumps(
        {**meta, "figures": [asdict(f) for f in figures]}, indent=2, default=str) + "\n")
    print(report)
    print(f"ratios: wrote {out / 'ratios.md'} and {out / 'ratios.json'}", file=sys.stderr)
    return 130 if meta.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
