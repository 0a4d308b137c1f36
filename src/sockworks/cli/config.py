"""``sockworks config check|dump|reference``: the configuration file, without a server.

``check PATH`` validates every table of a file (exit 0, or 2 with the
reason); ``dump [--config PATH] [SERVICE]`` prints the settings a ``serve``
command would run with, as TOML, secrets masked; ``reference`` prints the
key reference that ``docs/configuration.md`` carries (a test keeps the two
equal). The keys and checks are the ``serve`` parsers' own
(:mod:`sockworks.cli.settings_file`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sockworks.cli.serve import SERVICES
from sockworks.cli.settings_file import (
    ConfigError,
    check_config_file,
    effective_settings,
    render_reference,
    render_toml,
    service_parsers,
)

__all__ = ["EXIT_CONFIG", "register"]

#: A configuration mistake: the status argparse gives a bad flag.
EXIT_CONFIG = 2


def _root() -> argparse.ArgumentParser:
    from sockworks.cli import build_parser

    return build_parser()


def _check(args: argparse.Namespace) -> int:
    root = _root()
    try:
        tables = check_config_file(args.path, service_parsers(root))
    except ConfigError as exc:
        print(f"sockworks: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    keys = sum(len(values) for values in tables.values())
    print(f"{args.path}: OK ({len(tables)} tables, {keys} keys)")
    return 0


def _dump(args: argparse.Namespace) -> int:
    root = _root()
    services = [args.service] if args.service else list(service_parsers(root))
    tables: dict[str, dict[str, object]] = {}
    try:
        for service in services:
            tables[service] = effective_settings(root, service, args.config)
    except ConfigError as exc:
        print(f"sockworks: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    source = f"{args.config} over the defaults" if args.config else "the defaults"
    print(f"# Effective settings: {source}; command-line flags override these.")
    print("# Secrets (passwords in URLs) are masked.\n")
    print(render_toml(tables), end="")
    return 0


def _reference(args: argparse.Namespace) -> int:
    print(render_reference(_root()), end="")
    return 0


def register(sub: Any) -> None:
    config = sub.add_parser("config", help="check or show the configuration file",
                            description="Check a configuration file (TOML), or print "
                                        "the settings a server would run with.")
    actions = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="validate a file without starting anything",
                               description="Validate every table and key of PATH; exit 0 if "
                                           "it is valid, 2 with the file, key and reason if "
                                           "not.")
    check.add_argument("path", metavar="PATH")
    check.set_defaults(func=_check)
    dump = actions.add_parser("dump", help="print the effective settings as TOML",
                              description="Print the settings that serve SERVICE would run "
                                          "with (the defaults, under --config's values), as "
                                          "TOML with secrets masked.")
    dump.add_argument("--config", metavar="PATH", help="a configuration file (default: none)")
    dump.add_argument("service", nargs="?", choices=tuple(SERVICES),
                      help="one service (default: all)")
    dump.set_defaults(func=_dump)
    reference = actions.add_parser("reference", help="print the key reference (Markdown)",
                                   description="Print every key with its flag and default, "
                                               "as docs/configuration.md lists them.")
    reference.set_defaults(func=_reference)
