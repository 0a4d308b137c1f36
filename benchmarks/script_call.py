"""Per-call cost of ``redis.call`` inside a script: the Lua wrapper vs Python direct.

``redis.call`` is a Lua function that counts its arguments and passes
them on to the Python callback (as a table past ``PACK_AT``), so a call
with about 8000 arguments works (services/lua_engine.py). This measures what
the wrapper costs: one engine, one script looping ``redis.call('ping')``
and one looping the bare Python callback (exposed to this run only), the
dispatch a stub returning ``+PONG``; alternating, best of N, in one run:

    .venv/bin/python benchmarks/script_call.py [--calls 100000] [--repeat 5]

Prints microseconds per call for each and their ratio. No sockets, bounded
(a few seconds).
"""

from __future__ import annotations

import argparse
import time

from sockworks.services.lua_engine import LuaEngine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    engine = LuaEngine()
    # The bare callback, as redis.call was before the wrapper.
    engine.env[b"bare_call"] = engine._py_call  # noqa: SLF001 (this measurement only)
    loops = {
        "redis.call": engine.compile(b"for i = 1, %d do redis.call('ping') end" % options.calls),
        "bare Python callback": engine.compile(
            b"for i = 1, %d do bare_call('ping') end" % options.calls),
    }
    best = {name: float("inf") for name in loops}
    for _ in range(options.repeat):
        for name, fn in loops.items():
            start = time.perf_counter()
            reply = engine.run(fn, b"bench", [], [], 2, lambda argv: b"+PONG\r\n",
                               lambda: False)
            elapsed = time.perf_counter() - start
            assert reply == b"$-1\r\n", reply
            best[name] = min(best[name], elapsed)
    for name, seconds in best.items():
        print(f"{name:22} {seconds / options.calls * 1e6:7.3f} us/call")
    ratio = best["redis.call"] / best["bare Python callback"]
    print(f"ratio wrapper/bare     {ratio:7.3f}  ({options.calls} calls, best of "
          f"{options.repeat})")


if __name__ == "__main__":
    main()
