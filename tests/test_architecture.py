"""The package's layers: genembed.data < encode < search < reports < run. A subpackage imports only
those below it (and the root's errors, version and memory setting), and no modules import each
other in a circle. Imports under ``if TYPE_CHECKING:`` are annotations only and do not count."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

SRC = REPO / "src/genembed"
LAYERS = ("data", "encode", "search", "reports", "run")


def _module(path: Path, src: Path = SRC) -> str:
    parts = path.relative_to(src.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str], src: Path = SRC) -> set[str]:
    """The genembed modules a file imports at run time (at the top or inside functions)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}
    me = _module(path, src)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out |= {n for n in names if n in modules and n != me}
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in SRC.rglob("*.py")}
    return {m: _imports(p, set(files)) for m, p in files.items()}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_lives_in_a_layer_except_the_roots_errors_and_version():
    assert {m for m in _graph() if _layer(m) is None} == {"genembed", "genembed.errors"}


def test_no_subpackage_imports_one_above_it():
    upward = [f"{a} imports {b}" for a, deps in _graph().items() for b in deps
              if _layer(a) is not None and _layer(b) is not None and _layer(b) > _layer(a)]
    assert not upward, upward


def test_no_modules_import_each_other_in_a_circle():
    graph, seen, stack, cycles = _graph(), {}, [], []

    def visit(m: str) -> None:  # depth-first: a module met again while still on the stack closes a circle
        seen[m] = "open"
        stack.append(m)
        for d in sorted(graph[m]):
            if seen.get(d) == "open":
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in seen:
                visit(d)
        stack.pop()
        seen[m] = "done"

    for m in sorted(graph):
        if m not in seen:
            visit(m)
    assert not cycles, cycles


def test_the_rule_sees_an_upward_import(tmp_path):
    """The check itself: a data module that imports a search module is caught."""
    bad = tmp_path / "genembed/data/bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from genembed.run import cli\n\n"
                   "def f():\n    from ..search.index import read_manifest\n")
    deps = _imports(bad, {"genembed.data.bad", "genembed.search.index", "genembed.run.cli"}, tmp_path / "genembed")
    assert deps == {"genembed.search.index"}  # inside a function, relative: found; for annotations only: not
