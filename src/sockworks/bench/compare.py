"""``sockworks bench compare``: one server per model, a grid of loads, three reports.

For each model the server is started as a real process (``python -m sockworks
serve SERVICE --model M --port 0``, or a baseline script given as
``chapter:PATH``, run as ``python PATH --port 0``), its bound port read from
its start-up line, and ``sockworks bench`` run against it as a separate
process for each connection count. Server and client can be pinned to CPUs
with ``taskset -c`` so they do not compete for a core. The server is stopped
with SIGTERM after its model's runs.

The results go to ``DIR/results.json`` (everything), ``DIR/results.md`` (a
pivot of requests/s, then every row with its latencies and errors) and
``DIR/results.png`` (requests/s and p99 against connections, one line per
model). matplotlib is an optional extra: without it the PNG is skipped with a
warning.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sockworks.bench.workloads import WorkloadSpec

logger = logging.getLogger(__name__)

__all__ = [
    "STARTUP_TIMEOUT",
    "CompareError",
    "CompareReport",
    "CompareSettings",
    "render_markdown",
    "render_plot",
    "run_compare_grid",
]

#: How long a server may take to print its listening line. sockworks aims at
#: 0.5 s; a loaded CI machine importing uvloop can take several.
STARTUP_TIMEOUT = 20.0

#: Time given to a stopped server to exit after SIGTERM before SIGKILL (the
#: servers' default grace is 10 s; these have no requests in flight).
STOP_TIMEOUT = 15.0

#: Extra time a bench run may take beyond its duration (process start-up,
#: opening 10,000 connections, closing them) before it is declared hung.
RUN_SLACK = 60.0

#: Start-up lines: sockworks' own, and the chapter baselines' "... on port N".
LISTENING = re.compile(r"listening on \[?([^\]\s]+?)\]?:(\d+) \(model=([\w-]+)\)")
CHAPTER_PORT = re.compile(r"on port (\d+)")

#: Prefix of a model name that runs a baseline script instead of sockworks.
SCRIPT_PREFIX = "chapter:"

#: How often the server's resident memory is sampled during a run: a run
#: lasts seconds, and idle connections hold their memory throughout.
RSS_SAMPLE_SECONDS = 0.25

#: A bound on the process tree walked for RSS (prefork has a handful).
MAX_TREE_PROCESSES = 1024

#: Tail of a server's output kept for error messages.
OUTPUT_TAIL_LINES = 40


class CompareError(Exception):
    """The comparison cannot go on (bad settings, a server that never starts)."""


@dataclass(slots=True)
class CompareSettings:
    service: str = "echo"
    models: list[str] = field(default_factory=lambda: ["thread", "pool", "asyncio"])
    connections: list[int] = field(default_factory=lambda: [1, 10, 50, 200])
    duration: float = 3.0
    pipeline: int = 1
    workload: WorkloadSpec = field(default_factory=WorkloadSpec)
    idle: int = 0
    procs: int = 1
    warmup: float = 0.0
    timeout: float = 10.0
    connect_timeout: float = 5.0
    server_cpus: str | None = None
    client_cpus: str | None = None
    server_args: list[str] = field(default_factory=list)
    out: str = "bench-results"
    python: str = sys.executable


@dataclass(slots=True)
class CompareReport:
    document: dict[str, Any]
    markdown: str
    written: list[str]
    complete: bool


class _Server:
    """A server process started for one model, its output drained in the background."""

    def __init__(self, argv: list[str], script: bool, listener: int = 0) -> None:
        self.argv = argv
        self.script = script
        self.listener = listener     # which `listening on` line is the target
        self._listeners_seen = 0
        self.tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL_LINES)
        self.host = "127.0.0.1"
        self.port = 0
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env)
        self._drainer: threading.Thread | None = None

    def wait_listening(self, timeout: float) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        pending = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CompareError("server did not report its port in time:\n" + self.output())
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self.proc.wait(5)
                raise CompareError(f"server exited ({self.proc.returncode}) before listening:\n"
                                   + self.output())
            pending += chunk
            *lines, partial = pending.split(b"\n")
            pending = partial
            for number, raw in enumerate(lines):
                line = raw.decode(errors="replace")
                self.tail.append(line)
                if self._match(line):
                    self.tail.extend(r.decode(errors="replace") for r in lines[number + 1:])
                    self._drain_in_background(pending)
                    return

    def _match(self, line: str) -> bool:
        found = LISTENING.search(line)
        if found:
            self._listeners_seen += 1
            if self._listeners_seen <= self.listener:
                return False
            self.host, self.port = found.group(1), int(found.group(2))
            return True
        if self.script:
            chapter = CHAPTER_PORT.search(line)
            if chapter:
                self.port = int(chapter.group(1))
                return True
        return False

    def _drain_in_background(self, pending: bytes) -> None:
        # The chapter's servers print a line per connection: keep reading, or
        # a full pipe would block them mid-benchmark.
        if pending:
            self.tail.append(pending.decode(errors="replace"))

        def drain() -> None:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                self.tail.append(raw.decode(errors="replace").rstrip("\n"))

        self._drainer = threading.Thread(target=drain, name="compare-server-output", daemon=True)
        self._drainer.start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return "\n".join(self.tail)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                logger.warning("server %s ignored SIGTERM for %.0f s: killing it",
                               self.argv, STOP_TIMEOUT)
                self.proc.kill()
                self.proc.wait(5)
        if self._drainer is not None:
            self._drainer.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def model_label(model: str) -> str:
    """How a model is named in the reports: ``chapter:thread_echo`` for a script."""
    if model.startswith(SCRIPT_PREFIX):
        return SCRIPT_PREFIX + Path(model[len(SCRIPT_PREFIX):]).stem
    return model


def _taskset(cpus: str | None) -> list[str]:
    if cpus is None:
        return []
    path = shutil.which("taskset")
    if path is None:
        raise CompareError("--server-cpus/--client-cpus need taskset (util-linux)")
    return [path, "-c", cpus]


#: service -> (the `serve` sub-command, its extra flags, which listener to load).
#: `serve kv` logs its text port first and its RESP port second.
SERVED = {
    "echo": ("echo", [], 0),
    "kv": ("kv", [], 0),
    "resp": ("kv", ["--resp-port", "0"], 1),
}


def server_argv(settings: CompareSettings, model: str) -> tuple[list[str], bool]:
    """The command starting ``model``'s server, and whether it is a baseline script."""
    pin = _taskset(settings.server_cpus)
    if model.startswith(SCRIPT_PREFIX):
        path = model[len(SCRIPT_PREFIX):]
        if not Path(path).is_file():
            raise CompareError(f"baseline script {path} not found")
        return [*pin, settings.python, path, "--port", "0"], True
    return [*pin, settings.python, "-m", "sockworks", *serve_words(settings, model)], False


def serve_words(settings: CompareSettings, model: str) -> list[str]:
    """The ``sockworks`` arguments that start ``model``'s server (not a script's)."""
    # Room for every busy and idle connection, plus reconnects.
    limit = max(settings.connections, default=1) + settings.idle + 64
    command, extra, _ = SERVED[settings.service]
    return ["serve", command, *extra, "--model", model, "--port", "0",
            "--max-connections", str(limit), "--idle-timeout", "0", *settings.server_args]


def client_argv(settings: CompareSettings, host: str, port: int, connections: int) -> list[str]:
    spec = settings.workload
    argv = [*_taskset(settings.client_cpus), settings.python, "-m", "sockworks", "bench",
            settings.service, "--host", host, "--port", str(port),
            "-c", str(connections), "-d", str(settings.duration), "-P", str(settings.pipeline),
            "--keys", str(spec.keys), "--value-size", str(spec.value_size),
            "--set-ratio", str(spec.set_ratio), "--idle", str(settings.idle),
            "--procs", str(min(settings.procs, connections)), "--warmup", str(settings.warmup),
            "--timeout", str(settings.timeout), "--connect-timeout", str(settings.connect_timeout),
            "--json"]
    if settings.service == "echo":
        argv += ["--expect", spec.expect]
    if spec.seed is not None:
        argv += ["--seed", str(spec.seed)]
    return argv


def process_tree_rss(pid: int) -> int | None:
    """Resident memory (KiB) of ``pid`` and its descendants, from /proc; None
    where /proc is not Linux's or the process is gone. Prefork and forking
    models serve from children, so the whole tree is what a model costs."""
    total = 0
    pending = [pid]
    seen: set[int] = set()
    while pending and len(seen) < MAX_TREE_PROCESSES:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            if current == pid:
                return None
            continue  # a child that just exited
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
                break
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(child) for child in children)
        except OSError:
            continue
    return total


def _run_client(settings: CompareSettings, host: str, port: int, connections: int,
                server_pid: int | None = None) -> dict[str, Any]:
    """One bench run as a child process; the server's peak RSS sampled meanwhile."""
    argv = client_argv(settings, host, port, connections)
    budget = settings.duration + settings.warmup + settings.connect_timeout + RUN_SLACK
    peak_rss: int | None = None
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        deadline = time.monotonic() + budget
        while True:
            try:
                stdout, stderr = proc.communicate(timeout=RSS_SAMPLE_SECONDS)
                break
            except subprocess.TimeoutExpired:
                if server_pid is not None:
                    rss = process_tree_rss(server_pid)
                    if rss is not None:
                        peak_rss = rss if peak_rss is None else max(peak_rss, rss)
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.communicate()
                    return {"failed": f"bench did not finish within {budget:.0f} s"}
    try:
        document: dict[str, Any] = json.loads(stdout)
    except ValueError:
        text = stderr.decode(errors="replace").strip()
        return {"failed": f"bench exited {proc.returncode}: {text[-500:]}"}
    document["server_rss_peak_kib"] = peak_rss
    return document


def settings_problems(settings: CompareSettings) -> list[str]:
    """Everything wrong with ``settings`` that can be known before starting a
    server: service, models and baseline scripts, load settings, CPU pinning
    and the output directory. An empty list when the run can start."""
    from sockworks.bench.results import BenchConfig  # the run's own checks

    problems = []
    if settings.service not in SERVED:
        problems.append(f"unknown service {settings.service!r} ({', '.join(SERVED)})")
    if not settings.models:
        problems.append("no models to compare")
    if not settings.connections:
        problems.append("no connection counts")
    for model in settings.models:
        if model.startswith(SCRIPT_PREFIX):
            path = Path(model[len(SCRIPT_PREFIX):])
            if not path.is_file():
                problems.append(f"baseline script {path} not found")
    for connections in settings.connections:
        try:
            BenchConfig(connections=connections, duration=settings.duration,
                        pipeline=settings.pipeline, idle=settings.idle,
                        procs=min(settings.procs, connections), timeout=settings.timeout,
                        connect_timeout=settings.connect_timeout, warmup=settings.warmup,
                        workload=settings.workload)
        except ValueError as exc:
            problems.append(str(exc))
    if (settings.server_cpus or settings.client_cpus) and shutil.which("taskset") is None:
        problems.append("--server-cpus/--client-cpus need taskset (util-linux)")
    out = Path(settings.out)
    if out.exists() and not out.is_dir():
        problems.append(f"--out {out}: exists and is not a directory")
    else:
        # The directory itself, or the nearest ancestor it would be made in.
        existing = next((p for p in (out, *out.parents) if p.exists()), Path("."))
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            problems.append(f"--out {out}: cannot write in {existing}")
    return list(dict.fromkeys(problems))  # one line per problem, not per connection count


def run_compare_grid(settings: CompareSettings, log: TextIO | None = None) -> CompareReport:
    """Run every model over every connection count; write and return the reports.

    Raises CompareError before starting anything when the settings are wrong
    (:func:`settings_problems`).
    """
    problems = settings_problems(settings)
    if problems:
        raise CompareError("; ".join(problems))
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []

    def say(message: str) -> None:
        if log is not None:
            log.write(message + "\n")
            log.flush()

    for model in settings.models:
        argv, script = server_argv(settings, model)
        say(f"== {model}: {' '.join(argv)}")
        server = _Server(argv, script, 0 if script else SERVED[settings.service][2])
        try:
            try:
                server.wait_listening(STARTUP_TIMEOUT)
            except CompareError as exc:
                failures.append({"model": model_label(model), "connections": None,
                                 "error": str(exc)})
                say(f"   {model}: {exc}")
                continue
            for connections in settings.connections:
                if not server.alive():
                    failures.append({"model": model_label(model), "connections": connections,
                                     "error": "server died:\n" + server.output()})
                    say(f"   {model}: server died")
                    break
                document = _run_client(settings, server.host, server.port, connections,
                                       server.proc.pid)
                if "failed" in document:
                    failures.append({"model": model_label(model), "connections": connections,
                                     "error": document["failed"]})
                    say(f"   c={connections:<6} failed: {document['failed']}")
                    continue
                row = _row(model_label(model), connections, document)
                rows.append(row)
                say(f"   c={connections:<6} {row['requests_per_second']:>12,.0f} req/s  "
                    f"p99 {row['latency_us']['p99']:>10,.0f} µs  errors {row['errors_total']}")
        finally:
            code = server.stop()
            if code not in (0, None, -signal.SIGTERM):
                say(f"   {model}: server exited with {code} after SIGTERM")

    document = {
        "service": settings.service,
        "settings": _settings_document(settings),
        "results": rows,
        "failures": failures,
    }
    markdown = render_markdown(document)
    written = []
    json_path = out / "results.json"
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    written.append(str(json_path))
    md_path = out / "results.md"
    md_path.write_text(markdown + "\n")
    written.append(str(md_path))
    png_path = out / "results.png"
    if render_plot(document, png_path):
        written.append(str(png_path))
    complete = not failures and len(rows) == len(settings.models) * len(settings.connections)
    return CompareReport(document, markdown, written, complete)


def _row(model: str, connections: int, document: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": model,
        "connections": connections,
        "requests": document["requests"],
        "requests_per_second": document["requests_per_second"],
        "latency_us": document["latency_us"],
        "errors": document["errors"],
        "errors_total": document["errors_total"],
        "connected": document["connected"],
        "server_rss_peak_kib": document.get("server_rss_peak_kib"),
    }


def _settings_document(settings: CompareSettings) -> dict[str, Any]:
    data = asdict(settings)
    data["workload"] = asdict(settings.workload)
    data.pop("python", None)
    from sockworks.bench.runner import describe_host
    data["host"] = describe_host()
    return data


def render_markdown(document: dict[str, Any]) -> str:
    """A pivot of requests/s (models x connections), then the full rows."""
    rows = document["results"]
    settings = document["settings"]
    models = list(dict.fromkeys(model_label(m) for m in settings["models"]))
    counts = list(settings["connections"])
    by_key = {(row["model"], row["connections"]): row for row in rows}
    lines = [
        f"## `sockworks bench compare --service {document['service']}`",
        "",
        (f"pipeline {settings['pipeline']}, {settings['duration']} s per point, "
        f"server CPUs {settings['server_cpus'] or 'any'}, client CPUs "
        f"{settings['client_cpus'] or 'any'}"),
        "",
        "Requests/s:",
        "",
        "| model | " + " | ".join(f"c={c}" for c in counts) + " |",
        "|---|" + "---:|" * len(counts),
    ]
    for model in models:
        cells = []
        for c in counts:
            row = by_key.get((model, c))
            cells.append(f"{row['requests_per_second']:,.0f}" if row else "failed")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| model | connections | requests/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs "
        "| server RSS MiB | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        latency = row["latency_us"]
        errors = ", ".join(f"{k} {v}" for k, v in row["errors"].items()) or "0"
        lines.append(
            f"| {row['model']} | {row['connections']} | {row['requests_per_second']:,.0f} | "
            f"{latency['p50']:,.0f} | {latency['p90']:,.0f} | {latency['p99']:,.0f} | "
            f"{latency['p99.9']:,.0f} | {latency['max']:,.0f} | {_mib(row)} | {errors} |")
    for failure in document["failures"]:
        where = f"c={failure['connections']}" if failure["connections"] else "start-up"
        first_line = str(failure["error"]).strip().splitlines()[0] if failure["error"] else ""
        lines.append(f"\n**{failure['model']} failed at {where}:** {first_line}")
    return "\n".join(lines)


def _mib(row: dict[str, Any]) -> str:
    rss = row.get("server_rss_peak_kib")
    return "?" if rss is None else f"{rss / 1024:,.1f}"


def render_plot(document: dict[str, Any], path: Path) -> bool:
    """Write the PNG; False (with a warning) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: skipping %s "
                       "(pip install 'sockworks[bench]')", path)
        return False
    rows = document["results"]
    figure, (throughput, tail) = plt.subplots(1, 2, figsize=(12, 4.5))
    for model in dict.fromkeys(row["model"] for row in rows):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["connections"])
        xs = [r["connections"] for r in mine]
        throughput.plot(xs, [r["requests_per_second"] for r in mine], marker="o", label=model)
        tail.plot(xs, [r["latency_us"]["p99"] / 1000.0 for r in mine], marker="o", label=model)
    for axes, title, label in ((throughput, "throughput", "requests/s"),
                               (tail, "p99 latency", "ms")):
        axes.set_xscale("log")
        counts = sorted({r["connections"] for r in rows})
        if counts:
            axes.set_xticks(counts, [str(c) for c in counts])
        axes.set_xlabel("connections")
        axes.set_ylabel(label)
        axes.set_title(f"{document['service']}: {title}")
        axes.grid(True, alpha=0.3)
        if rows:
            axes.legend()
    tail.set_yscale("log")
    throughput.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
