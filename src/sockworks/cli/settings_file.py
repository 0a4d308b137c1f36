"""The TOML configuration file (``--config PATH``), derived from the parsers.

There is no second list of settings: the keys a file accepts, their tables
and their checks are the ``serve`` sub-commands' argparse actions. A key is a
flag's ``dest`` (``--max-connections`` is ``max_connections``), its check is
the flag's ``type=`` and ``choices``, and its table is the flag's argument
group:

* ``[server]`` — the flags of the "server" group (``host``, ``port``,
  ``max_connections``, ``metrics_port``...), for every service that has them;
* ``[logging]`` — the "logging" group (``log_level``, ``log_file``, ...);
* ``[kv]``, ``[echo]``, ``[udp]`` — any flag of that service, the shared ones
  included (they win over ``[server]``/``[logging]`` for that service).

Precedence: command line > service table > ``[server]``/``[logging]`` >
built-in default. :func:`apply_config_file` installs the file's values as
the parser's defaults and parses the command line again, so a flag given on
the command line always wins and every value goes through the same check.

Everything here raises :class:`ConfigError` with one line naming the file,
the key and the reason; the command line prints it and exits with status 2.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import tomllib
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["ConfigError", "SHARED_TABLES", "apply_config_file", "check_config_file",
           "effective_settings", "mask_secret", "render_reference", "render_toml",
           "service_parsers", "settable_actions"]

#: Tables every service reads, named after the argparse group they hold.
SHARED_TABLES = ("server", "logging")

#: Parser entries that are not settings.
_NOT_SETTINGS = frozenset({"help", "config", "version"})


class ConfigError(Exception):
    """A configuration file that stops start-up: ``str(exc)`` is the line."""


# -- reading the parsers ------------------------------------------------------

def service_parsers(root: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """``serve``'s sub-parsers by service name, from the root parser."""
    serve = _subcommands(root)["serve"]
    return _subcommands(serve)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise LookupError(f"{parser.prog} has no sub-commands")


def settable_actions(parser: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.Action]]:
    """dest -> (argument group title, action) for every setting of a parser."""
    found: dict[str, tuple[str, argparse.Action]] = {}
    for group in parser._action_groups:
        for action in group._group_actions:
            if not action.option_strings or action.dest in _NOT_SETTINGS:
                continue
            found[action.dest] = (group.title or "", action)
    return found


def _table_keys(parsers: Mapping[str, argparse.ArgumentParser]
                ) -> dict[str, dict[str, dict[str, argparse.Action]]]:
    """table -> key -> service -> the action that checks it there. A shared
    key may differ between services (``model``'s choices, ``port``'s default)."""
    tables: dict[str, dict[str, dict[str, argparse.Action]]] = {
        name: {} for name in SHARED_TABLES}
    for service, parser in parsers.items():
        own = tables.setdefault(service, {})
        for dest, (group, action) in settable_actions(parser).items():
            own[dest] = {service: action}
            if group in SHARED_TABLES:
                tables[group].setdefault(dest, {})[service] = action
    return tables


# -- checking values ----------------------------------------------------------

def _kind(action: argparse.Action) -> str:
    if action.nargs == 0:
        return "true or false"
    if action.choices is not None:
        return "one of " + ", ".join(repr(c) for c in action.choices)
    return "a string" if action.type is None else "a value"


def _one(action: argparse.Action, value: object) -> object:
    """One TOML value through the flag's own type and choices."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"must be {_kind(action)}, got {_toml_value(value)}")
    if action.type is None and not isinstance(value, str):
        raise ValueError(f"must be a string, got {_toml_value(value)}")
    text = value if isinstance(value, str) else repr(value)
    converted: object = text
    if callable(action.type):
        try:
            converted = action.type(text)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise ValueError(str(exc) or f"invalid value {text!r}") from None
    if action.choices is not None and converted not in action.choices:
        raise ValueError(f"must be {_kind(action)}, got {_toml_value(value)}")
    return converted


def check_value(action: argparse.Action, value: object) -> object:
    """``value`` from a file, checked and converted as the flag would be."""
    if action.nargs == 0:      # store_true and friends
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {_toml_value(value)}")
        return action.const if value else action.default
    if isinstance(action, argparse._AppendAction):
        if not isinstance(value, list):
            raise ValueError(f"must be a list, got {_toml_value(value)}")
        width = action.nargs if isinstance(action.nargs, int) else None
        items: list[object] = []
        for item in value:
            if width is not None and width > 1:
                if not isinstance(item, list) or len(item) != width:
                    raise ValueError(f"each entry must be a list of {width} values, "
                                     f"got {_toml_value(item)}")
                items.append([_one(action, part) for part in item])
            else:
                items.append(_one(action, item))
        return items
    return _one(action, value)


def _load(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def check_config_file(path: str, parsers: Mapping[str, argparse.ArgumentParser]
                      ) -> dict[str, dict[str, dict[str, object]]]:
    """Every table of the file, checked: table -> key -> service -> value
    (a shared key is checked by each service that has it, and must suit at
    least one; :func:`file_values` refuses it for a service it does not suit)."""
    doc = _load(path)
    tables = _table_keys(parsers)
    checked: dict[str, dict[str, dict[str, object]]] = {}
    for table, values in doc.items():
        if table not in tables:
            raise ConfigError(f"{path}: unknown table [{table}]{_did_you_mean(table, tables)}"
                              f"; tables are {', '.join(f'[{t}]' for t in tables)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: {table} must be a table ([{table}]), "
                              f"got {_toml_value(values)}")
        keys = tables[table]
        checked[table] = {}
        for key, value in values.items():
            if key not in keys:
                raise ConfigError(f"{path}: [{table}] unknown key {key!r}"
                                  f"{_did_you_mean(key, keys)}")
            results: dict[str, object] = {}
            first: ValueError | None = None
            for service, action in keys[key].items():
                try:
                    results[service] = check_value(action, value)
                except ValueError as exc:
                    first = first or exc
                    results[service] = exc
            if first is not None and all(isinstance(r, ValueError) for r in results.values()):
                raise ConfigError(f"{path}: [{table}] {key}: {first}")
            checked[table][key] = results
    return checked


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def file_values(path: str, service: str, parsers: Mapping[str, argparse.ArgumentParser]
                ) -> dict[str, object]:
    """The values the file gives ``service``: shared tables, then its own."""
    checked = check_config_file(path, parsers)
    values: dict[str, object] = {}
    for table in (*SHARED_TABLES, service):
        for key, results in checked.get(table, {}).items():
            if service not in results:
                continue            # a shared key this service has no flag for
            value = results[service]
            if isinstance(value, ValueError):
                raise ConfigError(f"{path}: [{table}] {key}: {value} (for serve {service})")
            values[key] = value
    return values


def apply_config_file(root: argparse.ArgumentParser, argv: list[str] | None,
                      args: argparse.Namespace) -> argparse.Namespace:
    """``args`` again, with the ``--config`` file's values under the command
    line's flags (a no-op without ``--config``). Raises ConfigError."""
    path = getattr(args, "config", None)
    service = getattr(args, "service", None)
    if path is None or service is None or getattr(args, "command", None) != "serve":
        return args
    parsers = service_parsers(root)
    parsers[service].set_defaults(**file_values(path, service, parsers))
    return root.parse_args(argv)


# -- writing ----------------------------------------------------------------

def mask_secret(value: object) -> object:
    """A URL's password (``redis://user:pass@host``) as ``***``; also
    query parameters that name a password. Anything else as it is."""
    if not isinstance(value, str) or "://" not in value:
        return value
    parts = urllib.parse.urlsplit(value)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:***@{hostport}"
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, "***" if "pass" in k.lower() or "secret" in k.lower() else v) for k, v in query]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path,
                                    urllib.parse.urlencode(query, safe="*/"), parts.fragment))


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def render_toml(tables: Mapping[str, Mapping[str, object]]) -> str:
    """Tables of plain values as TOML; None (unset) is a comment."""
    out: list[str] = []
    for table, values in tables.items():
        out.append(f"[{table}]")
        for key, value in values.items():
            if value is None:
                out.append(f"# {key} is unset")
            else:
                out.append(f"{key} = {_toml_value(mask_secret(value))}")
        out.append("")
    return "\n".join(out)


def effective_settings(root: argparse.ArgumentParser, service: str, path: str | None
                       ) -> dict[str, object]:
    """What ``serve SERVICE [--config PATH]`` would run with, key by key."""
    parsers = service_parsers(root)
    parser = parsers[service]
    if path is not None:
        parser.set_defaults(**file_values(path, service, parsers))
    args = parser.parse_args([])
    return {dest: getattr(args, dest) for dest in settable_actions(parser)}


def render_reference(root: argparse.ArgumentParser) -> str:
    """docs/configuration.md's key reference (the part after its marker)."""
    parsers = service_parsers(root)
    out: list[str] = []
    for table, keys in _table_keys(parsers).items():
        shared = table in SHARED_TABLES
        if not shared:      # shared flags are listed once, under their table
            keys = {k: a for k, a in keys.items()
                    if settable_actions(parsers[table])[k][0] not in SHARED_TABLES}
        out += [f"### `[{table}]`", ""]
        if shared:
            users = sorted({s for by_service in keys.values() for s in by_service})
            out += [f"Read by {', '.join(f'`serve {s}`' for s in users)}; each takes the keys "
                    "it has a flag for, and a service's own table may set them too.", ""]
        out += ["| key | flag | default | meaning |", "|---|---|---|---|"]
        for key, by_service in keys.items():
            action = next(iter(by_service.values()))
            out.append(f"| `{key}` | `{max(action.option_strings, key=len)}` | "
                       f"{_defaults(by_service)} | {_meaning(by_service)} |")
        out.append("")
    return "\n".join(out)


def _shown(value: object) -> str:
    return "unset" if value is None else f"`{_toml_value(value)}`"


def _defaults(by_service: Mapping[str, argparse.Action]) -> str:
    shown = {service: _shown(action.default) for service, action in by_service.items()}
    if len(set(shown.values())) == 1:
        return next(iter(shown.values()))
    return "; ".join(f"{service}: {value}" for service, value in sorted(shown.items()))


def _meaning(by_service: Mapping[str, argparse.Action]) -> str:
    action = next(iter(by_service.values()))
    text = (action.help or "").replace("|", "\\|").replace("\n", " ")
    choices = {s: tuple(a.choices) for s, a in by_service.items() if a.choices is not None}
    if len(set(choices.values())) == 1:
        text += " (one of: " + ", ".join(str(c) for c in next(iter(choices.values()))) + ")"
    elif choices:
        text += " (" + "; ".join(f"{s}: " + ", ".join(map(str, c))
                                 for s, c in sorted(choices.items())) + ")"
    return text.strip()
