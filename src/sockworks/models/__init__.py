"""The concurrency models: one small module each, one interface (:class:`Model`).

The registry :data:`MODELS` names them; the echo server's ``--model``
choices and the conformance suite read it:

    thread               a thread per connection (the chapter's first server)
    pool                 a fixed pool of worker threads; idle connections wait
                         in a selector, not in a worker
    socketserver-thread  socketserver.ThreadingMixIn + StreamRequestHandler
    socketserver-fork    socketserver.ForkingMixIn + StreamRequestHandler
    asyncio              one event loop (uvloop when installed), asyncio.Protocol
    prefork              N processes on one port (SO_REUSEPORT), each asyncio
"""

from __future__ import annotations

import importlib

from sockworks.models.base import Model

__all__ = ["Model", "MODELS", "get_model", "FORKING_MODELS", "SHARED_MEMORY_MODELS"]

#: model name -> "module:Class"
MODELS = {
    "thread": "sockworks.models.thread:ThreadModel",
    "pool": "sockworks.models.pool:PoolModel",
    "socketserver-thread": "sockworks.models.socketserver_models:SocketServerThreadModel",
    "socketserver-fork": "sockworks.models.socketserver_models:SocketServerForkModel",
    "asyncio": "sockworks.models.asyncio_model:AsyncioModel",
    "prefork": "sockworks.models.prefork:PreforkModel",
}

#: Models that serve connections from separate processes: they cannot share
#: an in-memory store (each process would see its own data).
FORKING_MODELS = ("socketserver-fork", "prefork")

#: Models whose connections share one address space (an in-memory store works):
#: every registered model that does not fork, so a new model lands here unless
#: it is listed in FORKING_MODELS.
SHARED_MEMORY_MODELS = tuple(name for name in MODELS if name not in FORKING_MODELS)


def get_model(name: str) -> type[Model]:
    module_name, _, class_name = MODELS[name].partition(":")
    cls: type[Model] = getattr(importlib.import_module(module_name), class_name)
    return cls
