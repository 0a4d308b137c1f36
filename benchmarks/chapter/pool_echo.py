"""The chapter's ThreadPoolExecutor echo server, copied on purpose as a baseline.

This is NOT production code: it is the book chapter's thread-pool server
(/work/shared/seed/concurrent-servers-chapter.txt, "use a thread pool to cap
concurrency"), kept verbatim so ``sockworks bench`` can measure against it.
Its flaws are the point of comparison (the 51st client waits forever with no
answer; idle clients hold workers); do not fix them here.

The only changes from the chapter, for safety and for tests:
- host and port come from the command line (``--host``, default 127.0.0.1
  instead of the chapter's 0.0.0.0; ``--port``, default the chapter's 9000);
- ``--port 0`` binds a free port, and the start-up line prints the port
  actually bound (flushed, so a parent process reading a pipe sees it).

Run: ``python benchmarks/chapter/pool_echo.py --port 0``
"""
import argparse
import socket
from concurrent.futures import ThreadPoolExecutor

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=9000)
ARGS = parser.parse_args()


def handle_client(conn: socket.socket, addr: tuple) -> None:
    with conn:
        print(f"[+] Connected: {addr}")
        while True:
            data = conn.recv(4096)
            if not data:
                break
            conn.sendall(data.upper())
        print(f"[-] Disconnected: {addr}")


def main():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ARGS.host, ARGS.port))
        s.listen(100)
        print(f"Thread pool server on port {s.getsockname()[1]}", flush=True)
        with ThreadPoolExecutor(max_workers=50) as pool:
            while True:
                conn, addr = s.accept()
                pool.submit(handle_client, conn, addr)


if __name__ == "__main__":
    main()
