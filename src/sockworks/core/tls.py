"""TLS for the listeners: settings in Redis's terms, and a context that reloads.

:class:`TlsSettings` holds Redis's options (``tls-cert-file``,
``tls-key-file``, ``tls-ca-cert-file``, ``tls-auth-clients``,
``tls-protocols``, ``tls-ciphers``, ``tls-ciphersuites``) and builds a
server-side :class:`ssl.SSLContext` from them. :class:`TlsContext` is what an
endpoint holds: the context in force, swapped whole by :meth:`TlsContext.reload`
(SIGHUP) only once the new certificate and key have loaded and matched, so a
bad new pair leaves the old one serving. Connections already open keep the
context they were accepted with.

Python's ssl module has no call for TLS 1.3 cipher suites; ``ciphersuites``
is applied with OpenSSL's own ``SSL_CTX_set_ciphersuites`` through ctypes
(the library the ssl module is linked to), and refused with a clear error
where that is unavailable.
"""

from __future__ import annotations

import ctypes
import logging
import ssl
import threading
from dataclasses import dataclass

__all__ = ["AUTH_CLIENTS", "TLS_PROTOCOLS", "TlsContext", "TlsSettings", "handshake_failure"]

logger = logging.getLogger(__name__)

#: tls-auth-clients values -> the verify mode they mean.
AUTH_CLIENTS: dict[str, ssl.VerifyMode] = {
    "yes": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "no": ssl.CERT_NONE,
}

#: tls-protocols names (Redis's spelling) -> versions, oldest first.
TLS_PROTOCOLS: dict[str, ssl.TLSVersion] = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}

DEFAULT_PROTOCOLS = "TLSv1.2 TLSv1.3"


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Redis's TLS options for the server's TLS listeners.

    ``auth_clients`` (``yes``, ``optional``, ``no``) asks clients for a
    certificate signed by ``ca_cert_file``; None means ``yes`` when a CA
    file is given, else ``no``. ``protocols`` lists the versions allowed,
    space-separated (``"TLSv1.2 TLSv1.3"``, the default). ``ciphers`` is an
    OpenSSL cipher list for TLS 1.2, ``ciphersuites`` the TLS 1.3 suites.
    """

    cert_file: str
    key_file: str
    ca_cert_file: str | None = None
    auth_clients: str | None = None
    protocols: str = DEFAULT_PROTOCOLS
    ciphers: str | None = None
    ciphersuites: str | None = None

    def __post_init__(self) -> None:
        if self.auth_clients is not None and self.auth_clients not in AUTH_CLIENTS:
            raise ValueError(f"tls-auth-clients must be yes, no or optional, "
                             f"got {self.auth_clients!r}")
        if self.verify_mode != ssl.CERT_NONE and not self.ca_cert_file:
            raise ValueError(f"tls-auth-clients {self.auth_clients} needs a CA file to check "
                             "client certificates against (tls-ca-cert-file)")
        self.versions()  # checks the names

    @property
    def verify_mode(self) -> ssl.VerifyMode:
        """What is asked of clients: the rule of ``auth_clients``."""
        if self.auth_clients is None:
            return ssl.CERT_REQUIRED if self.ca_cert_file else ssl.CERT_NONE
        return AUTH_CLIENTS[self.auth_clients]

    def versions(self) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
        """The oldest and newest protocol version allowed."""
        names = self.protocols.split()
        unknown = [n for n in names if n not in TLS_PROTOCOLS]
        if not names or unknown:
            raise ValueError(f"tls-protocols must list some of {', '.join(TLS_PROTOCOLS)}, "
                             f"got {self.protocols!r}")
        versions = sorted(TLS_PROTOCOLS[n] for n in names)
        return versions[0], versions[-1]

    def context(self) -> ssl.SSLContext:
        """A new server context from the files as they are now. Raises
        OSError (missing file) or ssl.SSLError (bad or mismatched pair)."""
        for path in (self.cert_file, self.key_file, self.ca_cert_file):
            if path:  # OpenSSL's errors do not name the file: open it first
                with open(path, "rb"):
                    pass
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version, ctx.maximum_version = self.versions()
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.ca_cert_file:
            ctx.load_verify_locations(cafile=self.ca_cert_file)
        ctx.verify_mode = self.verify_mode
        if self.ciphers:
            ctx.set_ciphers(self.ciphers)
        if self.ciphersuites:
            _set_ciphersuites(ctx, self.ciphersuites)
        return ctx


class TlsContext:
    """An endpoint's TLS: the :class:`ssl.SSLContext` in force, reloadable.

    Built from :class:`TlsSettings` (the files are read now: a bad file is
    an error at once), or around a ready context (``TlsContext(context=...)``,
    which :meth:`reload` leaves as it is).
    """

    def __init__(self, settings: TlsSettings | None = None, *,
                 context: ssl.SSLContext | None = None) -> None:
        if (settings is None) == (context is None):
            raise TypeError("TlsContext needs settings or a context (one of them)")
        self.settings = settings
        self._lock = threading.Lock()
        self.context: ssl.SSLContext = context if context is not None else \
            settings.context()  # type: ignore[union-attr]

    def reload(self) -> bool:
        """Re-read the certificate, key and CA files; swap the context in
        only if they load. Logs the outcome; False keeps the old context."""
        if self.settings is None:
            return True
        with self._lock:
            try:
                context = self.settings.context()
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                logger.error("TLS: cannot load %s / %s: %s; still serving the previous "
                             "certificate", self.settings.cert_file, self.settings.key_file,
                             _reason(exc))
                return False
            self.context = context
        logger.info("TLS: reloaded certificate %s", self.settings.cert_file)
        return True


def handshake_failure(exc: BaseException) -> str:
    """Why a handshake failed, in a few words (for the DEBUG line)."""
    if isinstance(exc, TimeoutError):
        return "TLS handshake not completed in time"
    return f"TLS handshake failed: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror + (f": {exc.filename}" if exc.filename else "")
    return str(exc) or type(exc).__name__


# -- TLS 1.3 cipher suites: OpenSSL's call, which the ssl module does not wrap --

class _PySSLContext(ctypes.Structure):
    # CPython's PySSLContext begins with PyObject_HEAD and then SSL_CTX *ctx.
    _fields_ = [("ob_refcnt", ctypes.c_ssize_t), ("ob_type", ctypes.c_void_p),
                ("ctx", ctypes.c_void_p)]


def _set_ciphersuites(ctx: ssl.SSLContext, suites: str) -> None:
    try:
        lib = ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined]
        func = lib.SSL_CTX_set_ciphersuites
    except (OSError, AttributeError):
        raise ValueError("tls-ciphersuites: this Python's OpenSSL does not offer "
                         "SSL_CTX_set_ciphersuites") from None
    func.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    func.restype = ctypes.c_int
    raw = _PySSLContext.from_address(id(ctx)).ctx
    if not raw or func(raw, suites.encode()) != 1:
        raise ValueError(f"tls-ciphersuites: no usable TLS 1.3 cipher suite in {suites!r}")
