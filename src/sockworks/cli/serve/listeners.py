"""The TLS and UNIX socket flags of the TCP ``serve`` commands, in Redis's names.

``--tls-port`` (``--tls-resp-port``) serves the text (RESP) protocol over TLS
with ``--tls-cert-file``/``--tls-key-file``; ``--tls-ca-cert-file`` and
``--tls-auth-clients`` ask clients for certificates. ``--unixsocket``
(``--unixsocket-resp``) listens on a UNIX domain socket, mode
``--unixsocketperm``. :func:`extra_endpoints` turns them into endpoints.
"""

from __future__ import annotations

import argparse
import ssl

from sockworks.cli.args import port_number
from sockworks.core.config import Endpoint
from sockworks.core.service import Service
from sockworks.core.tls import AUTH_CLIENTS, DEFAULT_PROTOCOLS, TlsContext, TlsSettings

__all__ = ["add_tls_arguments", "add_unix_arguments", "extra_endpoints", "socket_mode",
           "tls_context"]


def socket_mode(text: str) -> int:
    """``--unixsocketperm``: an octal file mode, as Redis's unixsocketperm."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an octal file mode like 700, got {text!r}"
                                         ) from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"must be an octal file mode 0..777, got {text!r}")
    return mode


def add_tls_arguments(parser: argparse.ArgumentParser, *, resp: bool) -> None:
    """--tls-port (and --tls-resp-port when ``resp``) and the certificate flags."""
    group = parser.add_argument_group("TLS (Redis's option names)")
    group.add_argument("--tls-port", type=port_number, metavar="PORT",
                       help="also serve over TLS on PORT (0 picks a free one; needs "
                            "--tls-cert-file and --tls-key-file; default: no TLS port)")
    if resp:
        group.add_argument("--tls-resp-port", type=port_number, metavar="PORT",
                           help="also serve RESP (the Redis protocol) over TLS on PORT "
                                "(default: none)")
    group.add_argument("--tls-cert-file", metavar="PATH",
                       help="the server's certificate (PEM, chain allowed; re-read on "
                            "SIGHUP; default: none)")
    group.add_argument("--tls-key-file", metavar="PATH",
                       help="its private key (PEM; re-read on SIGHUP; default: none)")
    group.add_argument("--tls-ca-cert-file", metavar="PATH",
                       help="CA certificates that sign client certificates (mutual TLS; "
                            "default: none)")
    group.add_argument("--tls-auth-clients", choices=tuple(AUTH_CLIENTS),
                       help="require a client certificate (yes), check one if sent "
                            "(optional), or never ask (no) (default: yes with "
                            "--tls-ca-cert-file, else no)")
    group.add_argument("--tls-protocols", default=DEFAULT_PROTOCOLS, metavar="'LIST'",
                       help=f"TLS versions allowed, space-separated: TLSv1.2, TLSv1.3 ... "
                            f"(default '{DEFAULT_PROTOCOLS}')")
    group.add_argument("--tls-ciphers", metavar="CIPHERS",
                       help="OpenSSL cipher list for TLS 1.2 and older (default: OpenSSL's)")
    group.add_argument("--tls-ciphersuites", metavar="SUITES",
                       help="TLS 1.3 cipher suites, colon-separated "
                            "(default: OpenSSL's)")


def add_unix_arguments(parser: argparse.ArgumentParser, *, resp: bool) -> None:
    """--unixsocket (and --unixsocket-resp when ``resp``) and --unixsocketperm."""
    group = parser.add_argument_group("UNIX domain sockets (Redis's option names)")
    group.add_argument("--unixsocket", metavar="PATH",
                       help="also listen on a UNIX socket at PATH; a stale file is replaced, "
                            "a live server's is refused; removed on exit (default: none)")
    if resp:
        group.add_argument("--unixsocket-resp", metavar="PATH",
                           help="also serve RESP on a UNIX socket at PATH (redis-cli -s) "
                                "(default: none)")
    group.add_argument("--unixsocketperm", type=socket_mode, metavar="OCTAL",
                       help="file mode of the UNIX socket(s), e.g. 700 (default: the "
                            "umask's)")


def tls_context(args: argparse.Namespace) -> TlsContext | None:
    """The TLS context the flags describe (None without a TLS port);
    ValueError with the reason when they do not hold together."""
    ports = [args.tls_port, getattr(args, "tls_resp_port", None)]
    if all(p is None for p in ports):
        return None
    if not args.tls_cert_file or not args.tls_key_file:
        raise ValueError("--tls-port needs --tls-cert-file and --tls-key-file")
    settings = TlsSettings(args.tls_cert_file, args.tls_key_file, args.tls_ca_cert_file,
                           args.tls_auth_clients, args.tls_protocols, args.tls_ciphers,
                           args.tls_ciphersuites)
    try:
        return TlsContext(settings)
    except ssl.SSLError as exc:
        raise OSError(f"cannot load the TLS certificate {args.tls_cert_file} and key "
                      f"{args.tls_key_file}: {exc.reason or exc}") from None
    except OSError as exc:
        raise OSError(f"cannot read TLS file {exc.filename or ''}: {exc.strerror or exc}"
                      ) from None


def extra_endpoints(args: argparse.Namespace, tls: TlsContext | None, service: Service,
                    resp: Service | None = None) -> list[Endpoint]:
    """The TLS endpoints (with ``tls``, from :func:`tls_context`), then the
    UNIX socket ones, that the flags ask for."""
    made: list[Endpoint] = []
    if args.tls_port is not None:
        made.append(Endpoint(args.host, args.tls_port, service, tls=tls))
    tls_resp_port = getattr(args, "tls_resp_port", None)
    if tls_resp_port is not None and resp is not None:
        made.append(Endpoint(args.host, tls_resp_port, resp, tls=tls))
    if args.unixsocket is not None:
        made.append(Endpoint(args.host, 0, service, unix_path=args.unixsocket,
                             unix_perm=args.unixsocketperm))
    unix_resp = getattr(args, "unixsocket_resp", None)
    if unix_resp is not None and resp is not None:
        made.append(Endpoint(args.host, 0, resp, unix_path=unix_resp,
                             unix_perm=args.unixsocketperm))
    return made
