"""The ``sockworks`` command line: one sub-command module each.

Every module here exposes ``register(subparsers)``; the parser it adds sets
``func`` to a callable taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from sockworks._version import __version__
from sockworks.cli.settings_file import ConfigError, apply_config_file

#: Sub-command modules, in the order ``sockworks --help`` lists them.
COMMAND_MODULES = (
    "sockworks.cli.serve",
    "sockworks.cli.client",
    "sockworks.cli.udp_client",
    "sockworks.cli.mcast",
    "sockworks.cli.bench",
    "sockworks.cli.config",
)


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser that refuses arguments it does not know itself.

    argparse hands a sub-command's unknown arguments up to the top-level
    parser, which reports them with its own usage ("usage: sockworks
    [-h] ..."), useless for finding the right flag. Every parser of the
    command line is of this class (sub-parsers inherit the class of their
    parent), so the sub-command that got the unknown flag reports it, with
    its usage and its name, and exit status 2.
    """

    # The ignore below: typeshed declares three overloads (by namespace
    # type); this one signature accepts every call they describe.
    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: Any = None) -> tuple[Any, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="sockworks",
        description=("Production-quality network services: one server core, "
                     "every concurrency model."),
    )
    from sockworks.services.accel import DESCRIPTION

    # Which hot path this install runs (compiled or pure Python, and why).
    parser.add_argument("--version", action="version",
                        version=f"sockworks {__version__} (hot path: {DESCRIPTION})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, with a ``--config`` file's values under its flags.
    Raises ConfigError (one line naming the file, key and reason)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    return apply_config_file(parser, argv, parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except ConfigError as exc:
        print(f"sockworks: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and closed: not an error worth a traceback.
        sys.stderr.close()
        return 0
