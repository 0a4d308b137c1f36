"""The chapter's UDP JSON request/response service, copied on purpose as a baseline.

This is NOT production code: it is the book chapter's stateless UDP service
(/work/shared/seed/concurrent-servers-chapter.txt: one blocking ``recvfrom``
loop, JSON in, JSON out), kept verbatim so ``sockworks bench udp`` can measure
``sockworks serve udp`` against it. It knows only ``{"type": "time"}``; every
other request gets ``{"error": "unknown request"}`` (so benchmark it with
``sockworks bench udp --udp-type time``). Do not fix it here.

The only changes from the chapter, for safety and for tests:
- host and port come from the command line (``--host``, default 127.0.0.1
  instead of 0.0.0.0; ``--port``, default the chapter's 9001);
- ``--port 0`` binds a free port, and the start-up line prints the port
  actually bound (flushed, so a parent process reading a pipe sees it).

Run: ``python benchmarks/chapter/udp_json.py --port 0``
"""
import argparse
import json
import socket

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=9001)
ARGS = parser.parse_args()


def handle_request(data: bytes) -> bytes:
    """Process a JSON request and return a JSON response."""
    try:
        request = json.loads(data)
        if request.get("type") == "time":
            import datetime
            return json.dumps({"time": str(datetime.datetime.now())}).encode()
        return json.dumps({"error": "unknown request"}).encode()
    except json.JSONDecodeError:
        return json.dumps({"error": "invalid JSON"}).encode()


with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.bind((ARGS.host, ARGS.port))
    print(f"UDP service on port {s.getsockname()[1]}", flush=True)
    while True:
        data, addr = s.recvfrom(4096)
        response = handle_request(data)
        s.sendto(response, addr)
