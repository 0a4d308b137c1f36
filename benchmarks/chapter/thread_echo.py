"""The chapter's thread-per-connection echo server, copied on purpose as a baseline.

This is NOT production code: it is the book chapter's first concurrent server
(/work/shared/seed/concurrent-servers-chapter.txt, "spawn a new thread for each
client connection"), kept verbatim so ``sockworks bench`` can measure how far
the real models are from it. Its flaws (no connection cap, print per client,
no shutdown) are the point of comparison; do not fix them here.

The only changes from the chapter, for safety and for tests:
- host and port come from the command line (``--host``, default 127.0.0.1
  instead of the chapter's 0.0.0.0; ``--port``, default the chapter's 9000);
- ``--port 0`` binds a free port, and the start-up line prints the port
  actually bound (flushed, so a parent process reading a pipe sees it).

Run: ``python benchmarks/chapter/thread_echo.py --port 0``
"""
import argparse
import socket
import threading

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=9000)
ARGS = parser.parse_args()


def handle_client(conn: socket.socket, addr: tuple) -> None:
    """Handle a single client connection."""
    print(f"[+] Connected: {addr}")
    try:
        while True:
            data = conn.recv(4096)
            if not data:
                break
            response = data.upper()
            conn.sendall(response)
    except ConnectionResetError:
        pass
    finally:
        conn.close()
        print(f"[-] Disconnected: {addr}")


def main():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ARGS.host, ARGS.port))
        s.listen(100)
        print(f"Threaded server on port {s.getsockname()[1]}", flush=True)
        while True:
            conn, addr = s.accept()
            t = threading.Thread(target=handle_client, args=(conn, addr))
            t.daemon = True
            t.start()


if __name__ == "__main__":
    main()
