"""Every ``--help`` is plain text for people: a description for every
sub-command, no Sphinx markup or module names, every default shown.

The test walks the real parser (``sockworks.cli.build_parser()``) into every
sub-command, so a new command or flag is checked without being listed here.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from sockworks.cli import build_parser
from sockworks.services.echo import DEFAULT_PORT as ECHO_PORT
from sockworks.services.kv import DEFAULT_PORT as KV_PORT
from sockworks.services.udp import DEFAULT_PORT as UDP_PORT

#: Markup meant for Sphinx or Markdown, not for a terminal: roles, backquotes.
MARKUP = re.compile(r":(class|mod|func|data|meth|attr|exc|obj):|`")
#: A dotted module path such as sockworks.protocols.udpjson.
MODULE_NAME = re.compile(r"\bsockworks\.[a-z_]+")


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser and every sub-command's parser, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases: once each
                yield from parsers(sub)


ALL = list(parsers(build_parser()))


def texts(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str]]:
    yield "description", parser.description or ""
    yield "epilog", parser.epilog or ""
    for action in parser._actions:
        if action.help and action.help is not argparse.SUPPRESS:
            yield f"help of {'/'.join(action.option_strings) or action.dest}", action.help
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield f"help of {choice.dest}", choice.help or ""


def test_the_walk_reaches_every_sub_command() -> None:
    progs = {parser.prog for parser in ALL}
    for prog in ("sockworks serve kv", "sockworks mcast send", "sockworks mcast recv",
                 "sockworks bench echo", "sockworks bench kv", "sockworks bench resp",
                 "sockworks bench udp", "sockworks bench compare", "sockworks udp-client"):
        assert prog in progs


@pytest.mark.parametrize("parser", ALL, ids=[parser.prog for parser in ALL])
def test_every_sub_command_has_a_plain_description(parser: argparse.ArgumentParser) -> None:
    assert parser.description and parser.description.strip(), parser.prog
    for where, text in texts(parser):
        assert not MARKUP.search(text), f"{parser.prog}: markup in {where}: {text!r}"
        assert not MODULE_NAME.search(text), f"{parser.prog}: module name in {where}: {text!r}"


@pytest.mark.parametrize("parser", ALL, ids=[parser.prog for parser in ALL])
def test_every_default_is_shown(parser: argparse.ArgumentParser) -> None:
    silent = []
    for action in parser._actions:
        if not action.option_strings or action.help is argparse.SUPPRESS or action.required:
            continue
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        if action.default is False or (action.default is None and action.nargs == 0):
            continue  # an on/off switch, off unless given
        # A flag without a default says so too ("default: memory only", "default: none").
        if not action.help or "default" not in action.help:
            silent.append(f"{'/'.join(action.option_strings)} (default {action.default!r})")
    assert not silent, f"{parser.prog}: help does not say the default of {silent}"


@pytest.mark.parametrize("parser", ALL, ids=[parser.prog for parser in ALL])
def test_help_renders(parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()  # %(default)s and friends expand without error
    assert parser.prog in text


def parser_for(*command: str) -> argparse.ArgumentParser:
    prog = " ".join(("sockworks", *command))
    return next(parser for parser in ALL if parser.prog == prog)


def test_clients_default_to_the_port_their_server_listens_on() -> None:
    assert parser_for("bench", "kv").parse_args([]).port == KV_PORT == 9000
    assert parser_for("client").parse_args([]).port == KV_PORT
    assert parser_for("serve", "kv").parse_args([]).port == KV_PORT
    assert parser_for("bench", "echo").parse_args([]).port == ECHO_PORT
    assert parser_for("bench", "udp").parse_args([]).port == UDP_PORT
    assert parser_for("udp-client").parse_args(["ping"]).port == UDP_PORT
    assert parser_for("serve", "udp").parse_args([]).port == UDP_PORT
