"""sockworks: production-quality network services on one server core.

Layout:
    protocols/  sans-IO codecs: bytes in, events out, replies to bytes
    core/       what every TCP server shares: the Service/Session contract,
                configuration, admission control, logging, signals
    models/     the concurrency models, one small module each
    services/   echo, key-value, UDP JSON, multicast
    storage/    the key-value store layer (embedded, Redis)
    cli/        the `sockworks` command
"""

from sockworks._version import __version__

__all__ = ["__version__"]
