"""The README's quick-start examples, run as written against a real server.

Each ``$ command`` line in a ``sh`` block of the quick start is run with the
README's ports (9000, 6380) replaced by the test server's, and its output
compared with the lines that follow it in the README.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.support import StartServer, require_binary

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
QUICK_START = README[README.index("## The two commands"):README.index("## Layout")]


def sessions() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each ``$ `` line of the quick start."""
    found: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```sh\n(.*?)```", QUICK_START, re.S):
        expected: list[str] | None = None  # output lines follow a command in its block
        for line in block.splitlines():
            if line.startswith("$ "):
                expected = []
                found.append((line[2:], expected))
            elif expected is not None:
                expected.append(line)
    return found


def test_the_quick_start_names_what_its_examples_need() -> None:
    assert "netcat-openbsd" in QUICK_START and "redis-tools" in QUICK_START
    assert 'make run ARGS="--resp-port 6380"' in QUICK_START
    commands = [command for command, _ in sessions()]
    assert any(command.startswith("redis-cli -p 6380") for command in commands)
    assert any("| nc 127.0.0.1 9000" in command for command in commands)


def test_the_quick_start_examples_give_the_output_shown(start_server: StartServer) -> None:
    require_binary("nc")
    require_binary("redis-cli")
    server = start_server("serve", "kv", "--port", "0", "--resp-port", "0",
                          process=True, expect_listeners=2)
    text_port, resp_port = (str(port) for _, port in server.addresses)
    for command, expected in sessions():
        # --no-raw: quote replies as redis-cli does at a terminal, as shown.
        command = command.replace("redis-cli -p 6380", f"redis-cli --no-raw -p {resp_port}")
        command = command.replace("127.0.0.1 9000", f"127.0.0.1 {text_port}")
        command = command.replace(".venv/bin/sockworks client",
                                  f"{shlex.quote(sys.executable)} -m sockworks client "
                                  f"--port {text_port}")
        # nc -N: close the connection after stdin's EOF (netcat-openbsd), so
        # the example ends even if the server did not close first.
        command = command.replace("| nc ", "| nc -N ")
        result = subprocess.run(command, shell=True, capture_output=True, text=True,
                                timeout=30, check=False)
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.splitlines() == expected, command
