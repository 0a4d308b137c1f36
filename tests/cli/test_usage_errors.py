"""An unknown flag is reported by the sub-command that got it, with that
sub-command's usage and name, and exit status 2 (not the top-level usage)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sockworks.cli import main
from tests.cli.test_help import ALL

#: A valid command line for every parser, by prog, split where the unknown
#: flag goes: after the words that reach the parser, before the rest (a
#: parent parser's own options come before its sub-command: "serve --x kv").
VALID: dict[str, tuple[list[str], list[str]]] = {
    "sockworks": ([], ["serve", "kv"]),
    "sockworks serve": (["serve"], ["kv"]),
    "sockworks serve echo": (["serve", "echo"], []),
    "sockworks serve kv": (["serve", "kv"], ["--port", "0"]),
    "sockworks serve udp": (["serve", "udp"], []),
    "sockworks client": (["client"], []),
    "sockworks udp-client": (["udp-client"], ["ping"]),
    "sockworks mcast": (["mcast"], ["recv"]),
    "sockworks mcast send": (["mcast", "send"], ["hello"]),
    "sockworks mcast recv": (["mcast", "recv"], []),
    "sockworks bench": (["bench"], ["kv"]),
    "sockworks bench echo": (["bench", "echo"], []),
    "sockworks bench kv": (["bench", "kv"], ["-c", "1"]),
    "sockworks bench resp": (["bench", "resp"], ["--port", "6380"]),
    "sockworks bench udp": (["bench", "udp"], []),
    "sockworks bench compare": (["bench", "compare"], []),
    "sockworks config": (["config"], ["reference"]),
    "sockworks config check": (["config", "check"], ["sockworks.toml"]),
    "sockworks config dump": (["config", "dump"], []),
    "sockworks config reference": (["config", "reference"], []),
}


def test_every_parser_is_covered() -> None:
    assert set(VALID) == {parser.prog for parser in ALL}


@pytest.mark.parametrize("prog", sorted(VALID))
def test_unknown_flag_shows_the_sub_commands_usage(
        prog: str, capsys: pytest.CaptureFixture[str]) -> None:
    before, after = VALID[prog]
    with pytest.raises(SystemExit) as info:
        main([*before, "--no-such-flag", *after])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {prog} "), err
    assert err.endswith(f"\n{prog}: error: unrecognized arguments: --no-such-flag\n"), err


def test_unknown_flag_from_the_shell() -> None:
    result = subprocess.run([sys.executable, "-m", "sockworks", "serve", "kv", "--bogus"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: sockworks serve kv ")
    assert result.stderr.endswith("sockworks serve kv: error: unrecognized arguments: --bogus\n")
