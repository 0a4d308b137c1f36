"""In-process cost of the hot path: ``session.on_data`` with pipelined GET/SET.

No sockets: one chunk of 100 pipelined commands is fed to a session of the
text port and of the RESP port, repeatedly (timeit, best of N), so what is
measured is parsing, dispatch and the store call. Run before and after a
change to the store's hot path:

    .venv/bin/python benchmarks/hotpath.py [--maxmemory BYTES] [--policy NAME]

Prints microseconds per command for each port and mix. Loopback-free and
bounded (a few seconds).
"""

from __future__ import annotations

import argparse
import timeit

from sockworks.core.config import ServerSettings
from sockworks.core.stats import ServerStats
from sockworks.protocols.resp import encode_command
from sockworks.services.kv import KvService
from sockworks.storage.embedded import open_embedded_store

PIPELINE = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maxmemory", type=int, default=0)
    parser.add_argument("--policy", default="noeviction")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=300)
    args = parser.parse_args()
    kwargs: dict[str, object] = {}
    if args.maxmemory or args.policy != "noeviction":
        kwargs = {"maxmemory": args.maxmemory, "maxmemory_policy": args.policy}
    store = open_embedded_store(None, active_expiry=False, **kwargs)
    service = KvService(store)
    service.attach(ServerStats(), ServerSettings("asyncio"))
    text = service.new_session("bench")
    resp = service.resp_service()
    resp.attach(ServerStats(), ServerSettings("asyncio"))
    rsession = resp.new_session("bench")
    keys = [b"key:%06d" % i for i in range(10_000)]
    value = b"v" * 64
    mixes = {
        "SET": [(b"SET", k, value) for k in keys[:PIPELINE]],
        "GET": [(b"GET", k) for k in keys[:PIPELINE]],
    }
    for k in keys:
        store.set(k, value)
    for name, commands in mixes.items():
        text_chunk = b"".join(b" ".join(c) + b"\n" for c in commands)
        resp_chunk = b"".join(encode_command(list(c)) for c in commands)
        for port, session, chunk in (("text", text, text_chunk), ("resp", rsession, resp_chunk)):
            best = min(timeit.repeat(lambda s=session, c=chunk: s.on_data(c),
                                     repeat=args.repeat, number=args.number))
            per = best / (args.number * PIPELINE) * 1e6
            print(f"{port:4} {name}: {per:.3f} us/command")
    store.close()


if __name__ == "__main__":
    main()
