"""The chapter's socketserver forking echo server, copied on purpose as a baseline.

This is NOT production code: the book chapter
(/work/shared/seed/concurrent-servers-chapter.txt) shows ``ForkingTCPServer``
(``ForkingMixIn``, ``max_children = 50``) as the drop-in alternative to its
threading ``socketserver`` example; this file is that example with the forking
class, so ``sockworks bench`` can measure against it. Do not fix it here.

The only changes from the chapter, for safety and for tests:
- host and port come from the command line (``--host``, default 127.0.0.1
  instead of the chapter's 0.0.0.0; ``--port``, default the chapter's 9000);
- ``--port 0`` binds a free port, and the start-up line prints the port
  actually bound (flushed, so a parent process reading a pipe sees it).

Run: ``python benchmarks/chapter/socketserver_fork_echo.py --port 0``
"""
import argparse
import socketserver

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=9000)
ARGS = parser.parse_args()


class EchoHandler(socketserver.StreamRequestHandler):
    def handle(self):
        print(f"[+] Connected: {self.client_address}")
        while True:
            line = self.rfile.readline()
            if not line:
                break
            self.wfile.write(line.upper())
        print(f"[-] Disconnected: {self.client_address}")


class ForkingTCPServer(socketserver.ForkingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    max_children = 50


if __name__ == "__main__":
    with ForkingTCPServer((ARGS.host, ARGS.port), EchoHandler) as server:
        print(f"socketserver (forking) on port {server.server_address[1]}", flush=True)
        server.serve_forever()
