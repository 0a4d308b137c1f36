"""Throw-away certificate authorities for the TLS tests, made with openssl.

:func:`make_pki` writes two CAs (``ca``, and ``other_ca`` that signs nothing
the server trusts), two server certificates for 127.0.0.1 (``server`` and
``server2``, for rotation), a client certificate signed by ``ca`` and one
signed by ``other_ca``; :func:`client_context` builds the client side.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support import require_binary

__all__ = ["Pki", "client_context", "make_pki", "tls_connect"]


@dataclass(frozen=True)
class Pki:
    directory: Path

    def path(self, name: str) -> str:
        return str(self.directory / name)

    def server_flags(self, name: str = "server") -> list[str]:
        return ["--tls-cert-file", self.path(f"{name}.pem"),
                "--tls-key-file", self.path(f"{name}.key")]


def _run(openssl: str, *argv: object) -> None:
    subprocess.run([openssl, *map(str, argv)], check=True, capture_output=True,
                   stdin=subprocess.DEVNULL, timeout=60)


def _ca(openssl: str, d: Path, name: str) -> None:
    _run(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / f"{name}.key",
         "-out", d / f"{name}.pem", "-days", "2", "-subj", f"/CN=sockworks test {name}")


def _leaf(openssl: str, d: Path, name: str, ca: str, cn: str, ext: str) -> None:
    (d / f"{name}.cnf").write_text(ext + "\n")
    _run(openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", d / f"{name}.key",
         "-out", d / f"{name}.csr", "-subj", f"/CN={cn}")
    _run(openssl, "x509", "-req", "-in", d / f"{name}.csr", "-CA", d / f"{ca}.pem", "-CAkey",
         d / f"{ca}.key", "-CAcreateserial", "-out", d / f"{name}.pem", "-days", "2",
         "-extfile", d / f"{name}.cnf")


def make_pki(directory: Path) -> Pki:
    openssl = require_binary("openssl")
    _ca(openssl, directory, "ca")
    _ca(openssl, directory, "other_ca")
    san = "subjectAltName=IP:127.0.0.1"
    _leaf(openssl, directory, "server", "ca", "server one", san)
    _leaf(openssl, directory, "server2", "ca", "server two", san)
    client = "extendedKeyUsage=clientAuth"
    _leaf(openssl, directory, "client", "ca", "client", client)
    _leaf(openssl, directory, "stranger", "other_ca", "stranger", client)
    return Pki(directory)


def client_context(pki: Pki, cert: str | None = None) -> ssl.SSLContext:
    """Trusts ``ca``; presents ``cert`` (``client``, ``stranger``) if given."""
    ctx = ssl.create_default_context(cafile=pki.path("ca.pem"))
    if cert is not None:
        ctx.load_cert_chain(pki.path(f"{cert}.pem"), pki.path(f"{cert}.key"))
    return ctx


def tls_connect(address: tuple[str, int], ctx: ssl.SSLContext,
                timeout: float = 10.0) -> ssl.SSLSocket:
    sock = socket.create_connection(address, timeout=timeout)
    try:
        return ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    except BaseException:
        sock.close()
        raise
