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

:data:`MODELS` is the one list of model names: the command line's choices,
:class:`sockworks.Server`'s check and the conformance suite's parameters all
come from it, so a model added here is offered, checked and tested everywhere.
"""

from __future__ import annotations

import importlib

from sockworks.models.base import Model

__all__ = ["Model", "MODELS", "FORKING_MODELS", "get_model"]

#: model name -> "module:Class", in the order --help lists them.
MODELS: dict[str, str] = {
    "thread": "sockworks.models.thread:ThreadModel",
    "pool": "sockworks.models.pool:PoolModel",
    "socketserver-thread": "sockworks.models.socketserver_models:SocketServerThreadModel",
    "socketserver-fork": "sockworks.models.socketserver_models:SocketServerForkModel",
    "asyncio": "sockworks.models.asyncio_model:AsyncioModel",
    "prefork": "sockworks.models.prefork:PreforkModel",
}

#: Models that serve connections in child processes: state in the parent's
#: memory (the embedded store) is not shared, and they must be run from the
#: main thread of a process that has no other threads (Server.serve_forever).
FORKING_MODELS: tuple[str, ...] = ("socketserver-fork", "prefork")


def get_model(name: str) -> type[Model]:
    """The class of the model called ``name`` (a key of :data:`MODELS`)."""
    try:
        module_name, _, class_name = MODELS[name].partition(":")
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}") from None
    cls: type[Model] = getattr(importlib.import_module(module_name), class_name)
    return cls
