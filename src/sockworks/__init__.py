"""sockworks: production-quality network services on one server core.

The public API (docs/api.md) is what this module exports::

    from sockworks import Server, TlsSettings, Service, Session, Output, LineFramer
    from sockworks import EchoService, KvService, RespService, UdpJsonService
    from sockworks import MODELS, FORKING_MODELS   # the concurrency models' names

Everything else is internal and may change. Layout, from the top layer down
(each imports only the layers below it; ``import-linter`` checks this):

    cli/        the `sockworks` command (argparse lives only here)
    testing     the pytest plugin: real servers in the test process
    services/   echo, key-value (text and RESP), UDP JSON, multicast
    server      Server: run services under a model, in a thread or in main
    models/     the concurrency models, one small module each
    storage/    the key-value store layer (embedded, Redis)
    core/       the Service/Session contract, settings, admission, logging
    protocols/  sans-IO codecs: bytes in, events out, replies to bytes
"""

from sockworks._version import __version__
from sockworks.core.service import Barrier, Output, Service, Session
from sockworks.core.tls import TlsSettings
from sockworks.models import FORKING_MODELS, MODELS
from sockworks.protocols.lines import LineFramer
from sockworks.server import Server
from sockworks.services import EchoService, KvService, RespService, UdpJsonService

__all__ = [
    "__version__",
    "Server",
    "TlsSettings",
    "Service",
    "Session",
    "Output",
    "Barrier",
    "LineFramer",
    "EchoService",
    "KvService",
    "RespService",
    "UdpJsonService",
    "MODELS",
    "FORKING_MODELS",
]
