"""Measure the RESP request parser: pure Python against the hiredis path.

    python benchmarks/resp_parser.py [--commands N]

Feeds pipelined ``SET key:NNNNNN <16-byte value>`` requests (what
redis-benchmark -P sends) through :class:`sockworks.protocols.resp.RespParser`
in 64 KiB chunks, and one command per chunk (no pipelining), and prints
commands per second for each back end. Prints numbers only: no assertions.
"""

from __future__ import annotations

import argparse
import time

from sockworks.protocols.resp import HIREDIS_AVAILABLE, RespParser, encode_command


def make_stream(count: int) -> bytes:
    return b"".join(encode_command([b"SET", b"key:%06d" % i, b"v" * 16]) for i in range(count))


def run(stream: bytes, chunk: int, use_hiredis: bool, repeat: int = 3) -> float:
    best = 0.0
    for _ in range(repeat):
        parser = RespParser(use_hiredis=use_hiredis)
        parsed = 0
        start = time.perf_counter()
        for offset in range(0, len(stream), chunk):
            parser.receive_data(stream[offset:offset + chunk])
            commands, violation = parser.next_commands()
            assert violation is None
            parsed += len(commands)
        elapsed = time.perf_counter() - start
        best = max(best, parsed / elapsed)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", type=int, default=200_000)
    args = ap.parse_args()
    stream = make_stream(args.commands)
    single = len(encode_command([b"SET", b"key:000000", b"v" * 16]))
    backends = [False, True] if HIREDIS_AVAILABLE else [False]
    for label, chunk in (("pipelined, 64 KiB chunks", 65536), ("one command per chunk", single)):
        for use_hiredis in backends:
            rate = run(stream, chunk, use_hiredis)
            name = "hiredis" if use_hiredis else "python "
            print(f"{label:26s} {name} {rate / 1e6:6.2f} M commands/s")


if __name__ == "__main__":
    main()
