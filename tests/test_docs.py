"""The docs tell the truth about the code they quote and describe.

* docs/writing-a-service.md: every fenced block whose info string names a
  file (```` ```python title="examples/counter/counter.py" ````) appears
  verbatim in that file, so the tutorial and the examples cannot drift apart.
* docs/api.md: every name ``sockworks`` exports is documented, and every
  signature in a ```` ```python signature ```` block matches the code
  (parameter names, kinds, defaults and annotations).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path
from typing import Any, ForwardRef

import pytest

import sockworks

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
TITLE = re.compile(r'title="(?P<path>[^"]+)"')


def fenced_blocks(doc: Path) -> list[tuple[str, str]]:
    """(info string, body) of every fenced block of ``doc``."""
    return [(m["info"].strip(), m["body"]) for m in FENCE.finditer(doc.read_text())]


def quoted_blocks() -> list[tuple[str, str]]:
    blocks = []
    for info, body in fenced_blocks(DOCS / "writing-a-service.md"):
        title = TITLE.search(info)
        if title:
            blocks.append((title["path"], body))
    return blocks


def test_tutorial_quotes_the_examples() -> None:
    blocks = quoted_blocks()
    files = {path for path, _ in blocks}
    assert files == {"examples/counter/counter.py", "examples/counter/test_counter.py"}
    assert len(blocks) >= 10


@pytest.mark.parametrize(("path", "body"), quoted_blocks(),
                         ids=lambda value: str(value).splitlines()[0][:40])
def test_tutorial_block_is_verbatim_in_its_file(path: str, body: str) -> None:
    source = (ROOT / path).read_text()
    assert body.strip("\n") in source, f"this block of docs/writing-a-service.md is not in {path}"


# -- docs/api.md -------------------------------------------------------------

API = DOCS / "api.md"


def test_api_documents_every_exported_name() -> None:
    text = API.read_text()
    for name in sockworks.__all__:
        assert f"`{name}" in text, f"docs/api.md does not document sockworks.{name}"


def signature_entries() -> list[str]:
    """Each entry of the ```python signature``` blocks: a line at column 0
    plus its indented continuation lines."""
    entries: list[str] = []
    for info, body in fenced_blocks(API):
        if info.split()[:2] != ["python", "signature"]:
            continue
        for line in body.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0].isspace() and entries:
                entries[-1] += " " + line.strip()
            else:
                entries.append(line.strip())
    return entries


def resolve(dotted: str) -> tuple[Any, Any]:
    """(owner, object) for ``Server.start``, ``sockworks.testing.KvEndpoints.url``..."""
    parts = dotted.split(".")
    if parts[0] == "sockworks":
        # the longest importable module prefix
        for cut in range(len(parts), 0, -1):
            try:
                obj: Any = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            rest = parts[cut:]
            break
    else:
        obj, rest = getattr(sockworks, parts[0]), parts[1:]
    owner = None
    for part in rest:
        owner = obj
        obj = inspect.getattr_static(obj, part)
    return owner, obj


def same_annotation(documented: ast.expr | None, actual: object) -> bool:
    if documented is None:
        return True  # not shown in the docs
    if actual is inspect.Parameter.empty or actual is None:
        return False
    if isinstance(actual, ForwardRef):  # NamedTuple fields under PEP 563
        actual = actual.__forward_arg__
    text = actual if isinstance(actual, str) else getattr(actual, "__name__", repr(actual))
    return ast.unparse(documented) == ast.unparse(ast.parse(str(text), mode="eval"))


def check_callable(name: str, documented: ast.FunctionDef, obj: Any, owner: Any) -> None:
    func = obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
    # Methods are documented with ``self``, as they are defined; classes as called.
    actual = list(inspect.signature(func).parameters.values())
    args = documented.args
    shown: list[tuple[ast.arg, inspect._ParameterKind, ast.expr | None]] = []
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    defaults += args.defaults
    shown += [(a, inspect.Parameter.POSITIONAL_OR_KEYWORD, d)
              for a, d in zip(positional, defaults)]
    if args.vararg:
        shown.append((args.vararg, inspect.Parameter.VAR_POSITIONAL, None))
    shown += [(a, inspect.Parameter.KEYWORD_ONLY, d)
              for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        shown.append((args.kwarg, inspect.Parameter.VAR_KEYWORD, None))
    assert [a.arg for a, _, _ in shown] == [p.name for p in actual], name
    for (arg, kind, default), param in zip(shown, actual):
        assert kind == param.kind, f"{name}: {arg.arg} is {param.kind.description}"
        assert same_annotation(arg.annotation, param.annotation), \
            f"{name}: {arg.arg}: {param.annotation}"
        if param.default is inspect.Parameter.empty:
            assert default is None, f"{name}: {arg.arg} has no default"
            continue
        assert default is not None, f"{name}: {arg.arg} has a default"
        if isinstance(default, ast.Constant) and default.value is Ellipsis:
            continue  # "...": a default the docs describe in words
        if isinstance(default, (ast.Name, ast.Attribute)):  # time.monotonic
            assert ast.unparse(default).split(".")[-1] == param.default.__name__, name
            continue
        # literals and arithmetic on them (64 * 1024)
        value = eval(compile(ast.Expression(default), name, "eval"), {"__builtins__": {}})
        assert value == param.default, f"{name}: {arg.arg}={param.default!r}"
    if documented.returns is not None:
        annotations = getattr(func, "__annotations__", {})
        assert same_annotation(documented.returns, annotations.get("return")), name


@pytest.mark.parametrize("entry", signature_entries(), ids=lambda e: e.split("(")[0][:40])
def test_api_signature_matches_the_code(entry: str) -> None:
    head = re.match(r"(?:class |def )?([\w.]+)(.*)", entry)
    assert head is not None
    name, rest = head.groups()
    owner, obj = resolve(name)
    if rest.startswith("("):
        tree = ast.parse(f"def _{rest}: ...")
        documented = tree.body[0]
        assert isinstance(documented, ast.FunctionDef)
        check_callable(name, documented, obj, owner)
    elif rest.startswith(" ->"):  # a property: its type
        assert isinstance(obj, property), f"{name} is not a property"
        returns = ast.parse(rest[3:].strip(), mode="eval").body
        assert obj.fget is not None
        assert same_annotation(returns, obj.fget.__annotations__.get("return")), name
    else:  # an attribute: "Service.blocking: bool = False"
        match = re.match(r":\s*(.+?)\s*=\s*(.+)$", rest)
        assert match is not None, f"cannot read {entry!r}"
        annotation, value = match.groups()
        assert ast.literal_eval(value) == obj, f"{name} is {obj!r}"
        if owner is not None and name.split(".")[-1] in getattr(owner, "__annotations__", {}):
            assert same_annotation(ast.parse(annotation, mode="eval").body,
                                   owner.__annotations__[name.split(".")[-1]]), name
