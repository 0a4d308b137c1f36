"""``sockworks bench``: drive a server with load and report what it sustained.

``sockworks bench echo|kv|resp|udp`` runs one closed-loop load test and prints
requests/s, latency percentiles and errors by kind (a table, or one JSON
document with ``--json``). ``sockworks bench compare`` starts a server per
concurrency model, runs a grid of connection counts, and writes a Markdown
table, a JSON file and a plot.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from typing import Any

from sockworks.bench.workloads import WORKLOADS, WorkloadSpec
from sockworks.cli.args import (
    client_port,
    non_negative_int,
    number,
    positive_int,
    ratio,
    seconds,
)
from sockworks.services.echo import DEFAULT_PORT as ECHO_PORT
from sockworks.services.kv import DEFAULT_PORT as KV_PORT
from sockworks.services.udp import DEFAULT_PORT as UDP_PORT

#: Durations that must be > 0.
positive_seconds = number(above=0)

DESCRIPTION = """\
Closed-loop load generator (asyncio, uvloop when installed).

  sockworks bench echo|kv|resp|udp [--port P] [-c N] [-d S] [-P N] [--json]
      one load test: requests/s, latency p50/p90/p99/p99.9/max, errors by kind
  sockworks bench compare --service echo|kv|resp --models thread,pool,asyncio
      start a server per model, run a grid of connection counts, write
      results.md, results.json and results.png
"""

#: Default reply timeouts. TCP: a reply 10 s late is a stalled server (as
#: lineload's default). UDP: a datagram lost on loopback under load is
#: ordinary; 1 s bounds how long a socket waits for it.
TCP_REPLY_TIMEOUT = 10.0
UDP_REPLY_TIMEOUT = 1.0

#: Default --port of each workload: the port its server listens on by default,
#: taken from the service so that bench, serve and client never disagree.
DEFAULT_PORTS = {"echo": ECHO_PORT, "kv": KV_PORT, "udp": UDP_PORT}

#: Shown under each workload's --help.
WORKLOAD_HELP = {
    "echo": "lines of --value-size bytes; the reply is the line uppercased (the chapter's echo)",
    "kv": ("the KV text protocol: READY greeting, SET key:N value -> OK, "
           "GET key:N -> value|NOT_FOUND"),
    "resp": "RESP (Redis) arrays SET/GET, as redis-benchmark sends them",
    "udp": 'UDP JSON {"type":"ping","id":N} -> {"pong":true,"id":N}; one socket per connection',
}


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers >= 1, got {text!r}")
    return values


def _name_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected at least one name")
    return names


def _add_load_arguments(parser: argparse.ArgumentParser, *, compare: bool) -> None:
    load = parser.add_argument_group("load")
    if not compare:
        load.add_argument("-c", "--connections", type=positive_int, default=50,
                          help="busy connections (UDP: sockets), each closed-loop (default 50)")
    load.add_argument("-d", "--duration", type=positive_seconds,
                      default=5.0 if not compare else 3.0, metavar="SECONDS",
                      help="how long to measure (default %(default)s)")
    load.add_argument("-P", "--pipeline", type=positive_int, default=1, metavar="N",
                      help="requests in flight per connection: send N, read N replies (default 1)")
    load.add_argument("--keys", type=positive_int, default=10_000, metavar="N",
                      help="kv/resp: keys key:0 .. key:N-1, uniform random; requests are "
                           "drawn before the run, at most 262,144 per process (default 10000)")
    load.add_argument("--value-size", type=positive_int, default=16, metavar="BYTES",
                      help="kv/resp: SET value size; echo: line size (default 16)")
    load.add_argument("--set-ratio", type=ratio, default=0.5, metavar="F",
                      help="kv/resp: fraction of SETs, 0..1 (default 0.5)")
    load.add_argument("--idle", type=non_negative_int, default=0, metavar="N",
                      help="extra idle connections, opened first and held open (default 0)")
    load.add_argument("--procs", type=positive_int, default=1, metavar="K",
                      help="client processes sharing the connections (default 1)")
    load.add_argument("--warmup", type=seconds, default=0.0, metavar="SECONDS",
                      help="run this long before measuring (default 0)")
    load.add_argument("--timeout", type=positive_seconds, default=None, metavar="SECONDS",
                      help="reply timeout: the connection is reopened (default 10); UDP: the "
                           "batch is counted lost and resent (default 1)")
    load.add_argument("--connect-timeout", type=positive_seconds, default=5.0, metavar="SECONDS",
                      help="connect + greeting timeout (default 5)")
    load.add_argument("--seed", type=int, default=None,
                      help="seed of the request mix (default: random)")


def register(sub: Any) -> None:
    bench = sub.add_parser(
        "bench", help="load-test a server (or compare concurrency models)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = bench.add_subparsers(dest="workload", metavar="WORKLOAD", required=True)
    for name in WORKLOADS:
        parser = kinds.add_parser(name, help=WORKLOAD_HELP[name],
                                  description=f"Closed-loop load: {WORKLOAD_HELP[name]}.")
        target = parser.add_argument_group("target")
        target.add_argument("--host", default="127.0.0.1",
                            help="server address (default 127.0.0.1)")
        if name in DEFAULT_PORTS:
            target.add_argument("--port", type=client_port, default=DEFAULT_PORTS[name],
                                help="server port (default %(default)s, as 'sockworks serve "
                                     f"{name}')")
        else:  # the RESP port has no default: serve kv opens one only with --resp-port
            target.add_argument("--port", type=client_port, required=True,
                                help="server port (required: the --resp-port of serve kv)")
        _add_load_arguments(parser, compare=False)
        if name == "echo":
            parser.add_argument("--expect", choices=("upper", "same"), default="upper",
                                help="reply is the line uppercased (default) or unchanged "
                                     "(serve echo --transform none)")
        if name == "udp":
            parser.add_argument("--udp-type", choices=("ping", "time"), default="ping",
                                help="request type (default ping; the chapter's service "
                                     "knows only time)")
        parser.add_argument("--json", action="store_true",
                            help="print one JSON document instead of the table")
        parser.set_defaults(func=run_one)

    compare = kinds.add_parser(
        "compare", help="start a server per model, run a grid, write table + JSON + plot",
        description="Start 'sockworks serve SERVICE --model M' for each model in turn, run "
                    "'bench' at each connection count, and write DIR/results.md, "
                    "DIR/results.json and DIR/results.png (the plot needs matplotlib: "
                    "pip install 'sockworks[bench]').")
    compare.add_argument("--service", choices=("echo", "kv", "resp"), default="echo",
                         help="echo, kv (text protocol) or resp (kv with --resp-port) "
                              "(default echo)")
    compare.add_argument("--models", type=_name_list, default=["thread", "pool", "asyncio"],
                         help="comma-separated models; 'chapter:PATH' runs a baseline script "
                              "(python PATH --port 0) instead (default thread,pool,asyncio)")
    compare.add_argument("--connections", type=_int_list, default=[1, 10, 50, 200],
                         metavar="LIST",
                         help="comma-separated connection counts (default 1,10,50,200)")
    _add_load_arguments(compare, compare=True)
    compare.add_argument("--server-cpus", default=None, metavar="CPUS",
                         help="pin the server with taskset -c CPUS (default: not pinned)")
    compare.add_argument("--client-cpus", default=None, metavar="CPUS",
                         help="pin the load generator with taskset -c CPUS (default: not pinned)")
    compare.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                         help="extra argument for 'sockworks serve' (repeatable; default: none)")
    compare.add_argument("--out", default="bench-results", metavar="DIR",
                         help="where results.md, results.json and results.png go, created "
                              "if missing (default %(default)s, ignored by git)")
    compare.add_argument("--json", action="store_true",
                         help="print the JSON results instead of the table")
    compare.set_defaults(func=run_compare)


def _spec(args: argparse.Namespace, name: str) -> WorkloadSpec:
    return WorkloadSpec(name=name, keys=args.keys, value_size=args.value_size,
                        set_ratio=args.set_ratio, expect=getattr(args, "expect", "upper"),
                        request_type=getattr(args, "udp_type", "ping"), seed=args.seed)


def _reply_timeout(args: argparse.Namespace) -> float:
    if args.timeout is not None:
        return float(args.timeout)
    # A lost datagram is normal on UDP: give up on it quickly and go on.
    return UDP_REPLY_TIMEOUT if getattr(args, "workload", None) == "udp" else TCP_REPLY_TIMEOUT


def run_one(args: argparse.Namespace) -> int:
    from sockworks.bench.report import format_result, result_document
    from sockworks.bench.runner import BenchConfig, run_bench

    try:
        config = BenchConfig(
            host=args.host, port=args.port, workload=_spec(args, args.workload),
            connections=args.connections, duration=args.duration, pipeline=args.pipeline,
            idle=args.idle, procs=args.procs, timeout=_reply_timeout(args),
            connect_timeout=args.connect_timeout, warmup=args.warmup)
    except ValueError as exc:
        print(f"sockworks bench: {exc}", file=sys.stderr)
        return 2
    result = run_bench(config, progress_stream=sys.stderr)
    if args.json:
        print(json.dumps(result_document(config, result), indent=2))
    else:
        print(format_result(config, result))
    if result.requests == 0:
        print("sockworks bench: no request completed", file=sys.stderr)
        return 1
    return 0


def _serve_problem(words: list[str]) -> str | None:
    """What ``sockworks serve`` would say about ``words`` before starting, or None.

    The serve command's own parser checks model names, ports and every
    --server-arg, so compare and serve can never disagree about them.
    """
    from sockworks.cli import build_parser

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            build_parser().parse_args(words)
    except SystemExit:
        lines = stderr.getvalue().strip().splitlines()
        reason = lines[-1].partition(": error: ")[2] if lines else "refused"
        return f"sockworks {' '.join(words)}: {reason}"
    return None


def run_compare(args: argparse.Namespace) -> int:
    from sockworks.bench.compare import (
        CompareError,
        CompareSettings,
        run_compare_grid,
        serve_words,
        settings_problems,
    )

    settings = CompareSettings(
        service=args.service, models=args.models, connections=args.connections,
        duration=args.duration, pipeline=args.pipeline, workload=_spec(
            args, "echo" if args.service == "echo" else args.service),
        idle=args.idle, procs=args.procs, warmup=args.warmup, timeout=_reply_timeout(args),
        connect_timeout=args.connect_timeout, server_cpus=args.server_cpus,
        client_cpus=args.client_cpus, server_args=list(args.server_arg), out=args.out)
    # Check everything before the first server starts: a typo in the last
    # model's name or --server-arg must not surface minutes into the grid.
    problems = settings_problems(settings)
    problems += [problem for model in settings.models if not model.startswith("chapter:")
                 if (problem := _serve_problem(serve_words(settings, model))) is not None]
    if problems:
        for problem in problems:
            print(f"sockworks bench compare: {problem}", file=sys.stderr)
        return 2
    try:
        report = run_compare_grid(settings, log=sys.stderr)
    except CompareError as exc:
        print(f"sockworks bench compare: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.document, indent=2))
    else:
        print(report.markdown)
    for path in report.written:
        print(f"wrote {path}", file=sys.stderr)
    return 0 if report.complete else 1
