"""Run units of Redis's own test suite against sockworks and redis-server.

Redis's Tcl harness can test an external server (``--host``/``--port``); it
then skips the tests tagged ``external:skip``. This script starts a
redis-server (no persistence) and ``sockworks serve kv --resp-port`` on
loopback ports, runs each unit against both, one after the other, under the
same harness and options, and prints the passes per unit and their ratio.

The Redis source tree is not part of sockworks: pass its path (on Debian,
``apt-get source redis`` fetches the one matching the installed server).

Options given to the harness, the same for both servers: ``--singledb``
(sockworks has one database), ``--clients 1``, and ``--tags`` excluding
tests that need replication, DEBUG or RDB (``-needs:repl -needs:debug
-needs:save``), which sockworks does not have; pass ``--tags ""`` to run
everything. An exception in a test ends its unit (the harness's rule), so a
missing command costs every test after it.

    python conformance/redis_units.py --redis-src ~/redis-7.0.15 \\
        [--units unit/type/list,unit/multi] [--model asyncio]

Bounded: each unit has a timeout (``--timeout``, default 600 s); servers are
stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

UNITS = ("unit/type/string", "unit/type/incr", "unit/keyspace", "unit/expire", "unit/protocol",
         "unit/type/list", "unit/type/hash", "unit/type/set", "unit/type/zset", "unit/bitops",
         "unit/bitfield", "unit/sort", "unit/pubsub", "unit/multi", "unit/scripting",
         "unit/introspection", "unit/info")
DEFAULT_TAGS = "-needs:repl -needs:debug -needs:save"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def start_redis(workdir: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def start_sockworks(model: str, extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sockworks", "serve", "kv", "--port", "0",
                             "--resp-port", str(port), "--model", model, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def run_unit(tree: Path, port: int, unit: str, tags: str, timeout: float,
             log_dir: Path, label: str, baseport: int) -> tuple[int, int, str]:
    """(passed, failed, the exception that ended the unit or '')."""
    # --baseport: the harness listens for its test clients just below it, so
    # two runs at once (two checkouts) need different ones.
    args = ["./runtest", "--host", "127.0.0.1", "--port", str(port), "--single", unit,
            "--clients", "1", "--singledb", "--timeout", "120", "--baseport", str(baseport)]
    if tags:
        args += ["--tags", tags]
    try:
        out = subprocess.run(args, cwd=tree, capture_output=True, timeout=timeout,
                             check=False).stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode("utf-8", "replace") + "\n[exception]: unit timed out"
    text = _ANSI.sub("", out)
    (log_dir / f"{label}-{unit.replace('/', '_')}.log").write_text(text)
    passed = len(re.findall(r"^\[ok\]", text, re.M))
    failed = len(re.findall(r"^\[err\]", text, re.M))
    exc_line = re.search(r"^\[exception\]: (.*)$", text, re.M)
    return passed, failed, exc_line.group(1)[:100] if exc_line else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-src", required=True, type=Path,
                        help="a Redis source tree (its tests/ and runtest)")
    parser.add_argument("--units", default=",".join(UNITS))
    parser.add_argument("--tags", default=DEFAULT_TAGS)
    parser.add_argument("--model", default="asyncio")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--logs", type=Path, default=Path("conformance/out"))
    parser.add_argument("--baseport", type=int, default=21111,
                        help="the harness's --baseport (Redis's default; change it to run "
                             "two at once)")
    parser.add_argument("sockworks_args", nargs="*", help="extra `serve kv` flags (after --)")
    args = parser.parse_args()
    if shutil.which("redis-server") is None or shutil.which("tclsh") is None:
        sys.exit("needs redis-server and tclsh on PATH")
    args.logs.mkdir(parents=True, exist_ok=True)
    units = [u for u in args.units.split(",") if u]
    with tempfile.TemporaryDirectory() as workdir:
        redis, redis_port = start_redis(workdir)
        ours, our_port = start_sockworks(args.model, args.sockworks_args)
        try:
            print("| unit | redis-server passes | sockworks passes | ratio "
                  "| sockworks stopped at |")
            print("|---|---:|---:|---:|---|")
            total_r = total_s = 0
            for unit in units:
                r_ok, _, _ = run_unit(args.redis_src, redis_port, unit, args.tags,
                                      args.timeout, args.logs, "redis", args.baseport)
                s_ok, _, s_exc = run_unit(args.redis_src, our_port, unit, args.tags,
                                          args.timeout, args.logs, "sockworks", args.baseport)
                total_r += r_ok
                total_s += s_ok
                ratio = f"{s_ok / r_ok:.2f}" if r_ok else "-"
                print(f"| {unit} | {r_ok} | {s_ok} | {ratio} | {s_exc.replace('|', '/')} |",
                      flush=True)
            ratio = f"{total_s / total_r:.2f}" if total_r else "-"
            print(f"| **all** | {total_r} | {total_s} | {ratio} | |")
        finally:
            for proc in (ours, redis):
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
