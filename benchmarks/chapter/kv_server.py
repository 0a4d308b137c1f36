"""The chapter's key-value store server, copied on purpose as a baseline.

This is NOT production code: it is the book chapter's KV store with its text
protocol (/work/shared/seed/concurrent-servers-chapter.txt: ``READY`` greeting,
``SET``/``GET``/``DEL``/``QUIT``, one global dict behind one lock), kept
verbatim so ``sockworks bench kv`` can measure the real KV server against it.
Its flaws are the point of comparison (one ``sendall`` per reply, so a
pipelined batch stalls on Nagle + delayed ACKs; ``buf += data`` and
``split`` per line; no limits); do not fix them here.

The chapter prints only ``handle_client`` and ``process_command`` and points to
``code/kv_store_server.py`` for the rest; the accept loop below is the chapter's
own thread-per-connection loop from its first server, unchanged.

The only changes from the chapter, for safety and for tests:
- host and port come from the command line (``--host``, default 127.0.0.1
  instead of 0.0.0.0; ``--port``, default the chapter's 9000);
- ``--port 0`` binds a free port, and the start-up line prints the port
  actually bound (flushed, so a parent process reading a pipe sees it).

Run: ``python benchmarks/chapter/kv_server.py --port 0``
"""
import argparse
import socket
import threading

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=9000)
ARGS = parser.parse_args()

store = {}
lock = threading.Lock()


def handle_client(conn, addr):
    with conn:
        conn.sendall(b"READY\n")
        buf = b""
        while True:
            data = conn.recv(4096)
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                response = process_command(line.decode().strip())
                conn.sendall(response.encode() + b"\n")
                if response == "BYE":
                    return


def process_command(cmd: str) -> str:
    parts = cmd.split(None, 2)
    if not parts:
        return "ERROR: empty command"
    op = parts[0].upper()
    if op == "SET" and len(parts) == 3:
        with lock:
            store[parts[1]] = parts[2]
        return "OK"
    elif op == "GET" and len(parts) == 2:
        with lock:
            return store.get(parts[1], "NOT_FOUND")
    elif op == "DEL" and len(parts) == 2:
        with lock:
            return "DELETED" if store.pop(parts[1], None) is not None else "NOT_FOUND"
    elif op == "QUIT":
        return "BYE"
    return "ERROR: unknown command"


def main():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ARGS.host, ARGS.port))
        s.listen(100)
        print(f"KV store server on port {s.getsockname()[1]}", flush=True)
        while True:
            conn, addr = s.accept()
            t = threading.Thread(target=handle_client, args=(conn, addr))
            t.daemon = True
            t.start()


if __name__ == "__main__":
    main()
