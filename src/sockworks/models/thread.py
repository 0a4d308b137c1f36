"""Thread per connection: the chapter's first server, with a hard cap.

Each admitted connection gets its own thread running blocking recv/send.
Simple and fast for tens to hundreds of clients; each thread costs a stack
(8 MiB of address space, little resident), so the number of live connection
threads is capped by ``--max-connections`` through admission control: the
connection over the cap gets the busy reply instead of a new thread.
"""

from __future__ import annotations

import logging
import socket
import threading

from sockworks.core.config import Endpoint
from sockworks.models.blocking import BlockingModel, serve_socket

logger = logging.getLogger(__name__)

__all__ = ["ThreadModel"]

#: Connection threads mostly sit in recv(); a small stack lets thousands of
#: them fit without reserving 8 MiB of address space each.
THREAD_STACK_SIZE = 512 * 1024


class ThreadModel(BlockingModel):
    name = "thread"

    def start(self) -> None:
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()

    def handle(self, sock: socket.socket, peer: str, endpoint: Endpoint) -> None:
        thread = threading.Thread(target=self._run, args=(sock, peer, endpoint),
                                  name=f"conn {peer}", daemon=True)
        with self._threads_lock:
            self._threads.add(thread)
        # stack_size() is process-wide: set it around our own start() only,
        # so a program embedding the server keeps its threads' default.
        previous = threading.stack_size(THREAD_STACK_SIZE)
        try:
            thread.start()
        finally:
            threading.stack_size(previous)

    def _run(self, sock: socket.socket, peer: str, endpoint: Endpoint) -> None:
        try:
            serve_socket(self, sock, peer, endpoint)
        finally:
            with self._threads_lock:
                self._threads.discard(threading.current_thread())

    def join(self) -> None:
        with self._threads_lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(5.0)
