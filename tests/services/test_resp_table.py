"""The RESP command table (services/resp_table.py): complete, consistent, explicit.

Every ``cmd_*`` handler of the handler modules is in the table;
the count is pinned, so adding or dropping a command is a visible change; the
arities, flags and key positions agree with each other; and the table exists
only where it is written down (no module fills it as an import side effect).
"""

from __future__ import annotations

import inspect
import subprocess
import sys

from sockworks.services import (
    resp_acl,
    resp_admin,
    resp_blocking,
    resp_commands,
    resp_config,
    resp_functions,
    resp_introspect,
    resp_pubsub,
    resp_scripting,
    resp_table,
)
from sockworks.services.commands import bitmaps, keys, model, streams
from sockworks.services.resp_table import COMMANDS, SPECS

#: Commands in the table (aliases such as UNLINK and SUBSTR included).
COMMAND_COUNT = 202

#: Flags COMMAND may report (Redis's names).
KNOWN_FLAGS = {"readonly", "write", "denyoom", "fast", "loading", "stale", "admin", "noscript",
               "movablekeys", "blocking", "pubsub"}

#: What MULTI must not queue: the transaction and connection-state commands.
NOT_QUEUEABLE = {"multi", "exec", "discard", "watch", "quit", "reset"}


def handlers(module: object) -> set[str]:
    return {name for name, value in inspect.getmembers(module, inspect.isfunction)
            if name.startswith("cmd_") and value.__module__ == module.__name__}  # type: ignore[attr-defined]


def test_every_handler_is_in_the_table() -> None:
    in_table = {spec.handler.__name__ for spec in SPECS}
    modules = {m.__name__: m for m in (resp_commands, resp_admin, resp_acl, resp_config,
                                          resp_introspect, resp_pubsub, model, bitmaps, streams, keys,
                                          resp_blocking, resp_scripting, resp_functions)}
    assert set().union(*(handlers(m) for m in modules.values()),
                       {"model_read", "model_write", "bits_read", "bits_write"}) == in_table
    for spec in SPECS:
        module = modules[spec.handler.__module__]
        assert getattr(module, spec.handler.__name__) is spec.handler


def test_count_is_stable_and_names_are_unique() -> None:
    assert len(SPECS) == COMMAND_COUNT
    assert len(COMMANDS) == COMMAND_COUNT
    for name, spec in COMMANDS.items():
        assert name == spec.name.encode()
        assert spec.name == spec.name.lower()


def test_arity_flags_and_keys_are_consistent() -> None:
    for spec in SPECS:
        assert spec.arity != 0, spec.name
        assert set(spec.flags) <= KNOWN_FLAGS, spec.name
        assert len(set(spec.flags)) == len(spec.flags), spec.name
        assert not {"readonly", "write"} <= set(spec.flags), spec.name
        first, last, step = spec.keys
        if spec.handler.__module__ == resp_commands.__name__:
            # A data command reads or writes; only writes may use memory.
            assert {"readonly", "write"} & set(spec.flags), spec.name
            if "denyoom" in spec.flags:
                assert "write" in spec.flags, spec.name
        if first == 0:
            assert (last, step) == (0, 0), spec.name
            continue
        # The first key is an argument every call has; a bounded last key too.
        assert step >= 1, spec.name
        assert abs(spec.arity) > first, spec.name
        if last > 0:
            assert last >= first and abs(spec.arity) > last, spec.name
        else:
            assert spec.arity < 0, spec.name  # keys to the end: variadic


def test_only_transaction_and_connection_commands_bypass_multi() -> None:
    assert {spec.name for spec in SPECS if not spec.queueable} == NOT_QUEUEABLE


def test_handler_modules_hold_no_table() -> None:
    for module in (resp_commands, resp_admin):
        assert not hasattr(module, "COMMANDS")
        assert not hasattr(module, "register")
    assert resp_table.COMMANDS is COMMANDS


def test_importing_the_table_alone_gives_all_of_it() -> None:
    # A fresh interpreter: no other import can have filled anything in.
    code = "from sockworks.services.resp_table import COMMANDS; print(len(COMMANDS))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == str(COMMAND_COUNT)
