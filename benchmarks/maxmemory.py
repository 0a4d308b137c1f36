"""SET-heavy load at ``--maxmemory`` with allkeys-lru evicting, vs no limit.

For each model (asyncio, thread) and each side (no limit; ``--maxmemory``
with ``--maxmemory-policy allkeys-lru``), alternately, ``--repeat`` times:
start ``sockworks serve kv`` on a loopback port 0, pre-fill it past the
limit (so every later SET evicts), then for ``--duration`` seconds run
``--writers`` client processes, each pipelining batches of SET of random
keys (100-byte values) on the text port, while a second client sends one
PING every 5 ms and records its round trip. Prints requests/s per side, the
ratio limit / no limit (target >= 0.9) and the PING p50/p99, and the
server's own CPU time per SET (utime + stime of its process from /proc over
the measured window, all threads): on a shared machine, or when the writers
rather than the server are the bottleneck, requests/s flatter or blur the
ratio, while CPU per request is what a CPU-bound server's requests/s is the
inverse of. Bounded: every run stops by itself; loopback only.

``--models redis`` runs the same workload against ``redis-server`` (no
persistence; the limit side with ``--maxmemory``/``--maxmemory-policy
allkeys-lru``; the SETs as inline commands, so the same bytes are sent) as a
reference for what eviction costs Redis itself.

    .venv/bin/python benchmarks/maxmemory.py [--duration 5] [--repeat 3] [--models redis]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

VALUE = b"v" * 100
PIPELINE = 50
#: The reply to one SET: sockworks's text port, redis-server's inline commands.
OK_LENGTH = {False: len(b"OK\n"), True: len(b"+OK\r\n")}


def free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis(extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if b"Ready to accept connections" in line:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # drain
            return proc, port
        if not line:
            break
    proc.kill()
    raise RuntimeError("redis-server did not start")


def start(model: str, extra: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    if model == "redis":
        return start_redis(extra)
    proc = subprocess.Popen([sys.executable, "-m", "sockworks", "serve", "kv", "--port", "0",
                             "--model", model, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        found = re.search(rb"listening on [^ ]+:(\d+)", line)
        if found:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # drain
            return proc, int(found.group(1))
    proc.kill()
    raise RuntimeError("server did not start")


def connect(port: int, redis: bool) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not redis:
        assert sock.recv(16) == b"READY\n"
    return sock


def pipelined_sets(sock: socket.socket, keys: list[bytes], redis: bool) -> None:
    sock.sendall(b"".join(b"SET %b %b\n" % (k, VALUE) for k in keys))
    want = OK_LENGTH[redis] * len(keys)
    got = 0
    while got < want:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("server closed")
        if b"ERROR" in chunk or chunk.startswith(b"-"):
            raise RuntimeError(chunk[:200].decode())
        got += len(chunk)


def writer(port: int, redis: bool, seconds: float, seed: int,
           out: multiprocessing.Queue[int]) -> None:
    rng = random.Random(seed)
    sock = connect(port, redis)
    done = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pipelined_sets(sock, [b"key:%d" % rng.randrange(2_000_000) for _ in range(PIPELINE)],
                       redis)
        done += PIPELINE
    sock.close()
    out.put(done)


def pinger(port: int, redis: bool, stop: threading.Event, samples: list[float]) -> None:
    sock = connect(port, redis)
    while not stop.wait(0.005):
        started = time.perf_counter()
        sock.sendall(b"PING\n")
        reply = b""
        while not reply.endswith(b"\n"):
            reply += sock.recv(64)
        samples.append(time.perf_counter() - started)
    sock.close()


def run(model: str, extra: list[str],
        args: argparse.Namespace) -> tuple[float, float, list[float]]:
    """(SET/s, server CPU us per SET, PING round trips)."""
    proc, port = start(model, extra)
    redis = model == "redis"
    try:
        fill = connect(port, redis)
        for base in range(0, args.prefill, 1000):
            pipelined_sets(fill, [b"fill:%d" % i for i in range(base, base + 1000)], redis)
        fill.close()
        samples: list[float] = []
        stop = threading.Event()
        ping = threading.Thread(target=pinger, args=(port, redis, stop, samples))
        ping.start()
        queue: multiprocessing.Queue[int] = multiprocessing.Queue()
        workers = [multiprocessing.Process(target=writer,
                                           args=(port, redis, args.duration, i, queue))
                   for i in range(args.writers)]
        started = time.monotonic()
        cpu = cpu_seconds(proc.pid)
        for w in workers:
            w.start()
        total = sum(queue.get(timeout=args.duration + 60) for _ in workers)
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(proc.pid) - cpu
        for w in workers:
            w.join(30)
        stop.set()
        ping.join(30)
        return total / elapsed, cpu / total * 1e6, samples
    finally:
        proc.terminate()
        proc.wait(30)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="asyncio,thread")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--maxmemory", default="32mb")
    parser.add_argument("--prefill", type=int, default=200_000,
                        help="keys written before measuring (past a 32mb limit at 200,000)")
    args = parser.parse_args()
    sides = {"no limit": [],
             "allkeys-lru": ["--maxmemory", args.maxmemory, "--maxmemory-policy", "allkeys-lru"]}
    for model in args.models.split(","):
        rates: dict[str, list[float]] = {name: [] for name in sides}
        costs: dict[str, list[float]] = {name: [] for name in sides}
        pings: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.repeat):
            for name, extra in sides.items():  # alternate the sides
                rate, cost, samples = run(model, extra, args)
                rates[name].append(rate)
                costs[name].append(cost)
                pings[name].extend(samples)
        for name in sides:
            print(f"{model:8} {name:12} {statistics.median(rates[name]):9.0f} SET/s "
                  f"(runs: {', '.join(f'{r:.0f}' for r in rates[name])}); PING p50 "
                  f"{percentile(pings[name], 0.5) * 1e3:.2f} ms, p99 "
                  f"{percentile(pings[name], 0.99) * 1e3:.2f} ms ({len(pings[name])} pings); "
                  f"server CPU {statistics.median(costs[name]):.2f} us/SET "
                  f"(runs: {', '.join(f'{c:.2f}' for c in costs[name])})")
        ratio = statistics.median(rates["allkeys-lru"]) / statistics.median(rates["no limit"])
        by_cpu = statistics.median(costs["no limit"]) / statistics.median(costs["allkeys-lru"])
        print(f"{model:8} ratio at the limit / no limit: {ratio:.2f}x in SET/s, "
              f"{by_cpu:.2f}x by server CPU per SET (target >= 0.9)")


if __name__ == "__main__":
    main()
