"""SET-only throughput of this tree against an older commit's, alternating.

A change's effect measured in one run, as the other ratios are: the older
source is exported with ``git archive`` and put first on PYTHONPATH for its
servers (same interpreter, same venv), and each round runs before/now for
each fsync policy on a fresh data dir: server pinned to CPU 0, lineload
(``-r 1``, 50 connections) to CPU 1. Prints each run and the medians.

    .venv/bin/python benchmarks/before_after.py --commit 5100625 [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINELOAD = REPO / "benchmarks" / "lineload"


def run(src: str | None, fsync: str, duration: float, lineload: str) -> float:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    with tempfile.TemporaryDirectory(prefix="before-after-") as data, \
            tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, "-m", "sockworks", "serve", "kv", "--port",
             "0", "--idle-timeout", "0", "--data-dir", data, "--fsync", fsync],
            stdout=log, stderr=log, env=env)
        try:
            port = None
            deadline = time.monotonic() + 30
            while port is None and time.monotonic() < deadline:
                log.seek(0)
                found = re.search(rb"listening on [0-9.]+:(\d+)", log.read())
                port = found.group(1).decode() if found else None
                time.sleep(0.05)
            if port is None:
                raise SystemExit("the server did not start")
            out = subprocess.run(
                ["taskset", "-c", "1", lineload, "-p", port, "--proto", "line", "-c", "50",
                 "-d", str(duration), "-r", "1", "--greeting", "--json", "-q"],
                capture_output=True, text=True, check=True, timeout=duration + 60).stdout
        finally:
            server.terminate()
            server.wait(30)
    return float(json.loads(out.strip().splitlines()[-1])["rps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", required=True, help="the older commit to compare with")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--fsync", default="everysec,always", help="policies to compare")
    parser.add_argument("--lineload", default=str(LINELOAD),
                        help="lineload binary (ratios.py builds benchmarks/lineload)")
    args = parser.parse_args()
    policies = [p for p in args.fsync.split(",") if p]
    with tempfile.TemporaryDirectory(prefix="before-src-") as old:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.commit, "src"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.repeat):
            for fsync in policies:
                for label, src in (("before", os.path.join(old, "src")), ("now", None)):
                    rps = run(src, fsync, args.duration, args.lineload)
                    results.setdefault((fsync, label), []).append(rps)
                    print(f"{label:6} --fsync {fsync:8} {rps:10,.0f} SET/s", flush=True)
    for fsync in policies:
        before = statistics.median(results[(fsync, "before")])
        now = statistics.median(results[(fsync, "now")])
        print(f"--fsync {fsync}: before {before:,.0f}, now {now:,.0f}, "
              f"now/before {now / before:.2f}")


if __name__ == "__main__":
    main()
