"""wsforge's modules form no import cycle, and import in any order.

The graph is read from the source with :mod:`ast`: module-level, function-level and
``TYPE_CHECKING`` imports all count, because a lazy import that closes a loop is still a loop
(it only moves the failure to whichever caller happens to import first).
"""

from __future__ import annotations

import ast
import importlib
import random
import subprocess
import sys
from pathlib import Path

import pytest

import wsforge

PACKAGE = Path(wsforge.__file__).parent

REGISTRATION = ("wsforge.cli._app", "wsforge.cli.commands")
"""The one allowed back edge: typer's command registration (``main`` imports the command modules,
which decorate ``app``). Every cycle must go through it."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "_data" not in p.parts}
IMPORTABLE = sorted(name for name in MODULES if name != "wsforge.__main__")
"""``wsforge.__main__`` is ``python -m wsforge``: importing it runs the CLI, by design."""


def _resolve(current: str, is_package: bool, level: int, name: str | None) -> str:
    base = current.split(".") if is_package else current.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _target(name: str) -> str | None:
    """The wsforge module ``name`` refers to (a module, or the package holding an imported name)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (
                _resolve(module, is_package, node.level, node.module) if node.level else (node.module or "")
            )
            names = [
                base if _target(f"{base}.{a.name}") != f"{base}.{a.name}" else f"{base}.{a.name}"
                for a in node.names
            ]
        else:
            continue
        for name in names:
            target = _target(name)
            # A module's own packages are imported before it runs: not an edge of their own.
            if target is not None and target != module and not module.startswith(target + "."):
                found.add(target)
    # Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first.
    for target in list(found):
        parent = target.rpartition(".")[0]
        while parent and parent != module and not module.startswith(parent + "."):
            found.add(parent)
            parent = parent.rpartition(".")[0]
    return found


def import_graph() -> dict[str, set[str]]:
    return {module: imports_of(module) for module in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_lazy_and_type_checking_imports() -> None:
    """The walker finds function-level and TYPE_CHECKING imports, not only top-level ones."""
    graph = import_graph()
    assert "wsforge.cli.commands" in graph["wsforge.cli._app"]  # imported inside main()
    assert "wsforge.cli._app" in graph["wsforge.cli.new_cmd"]


def test_no_import_cycle_among_wsforge_modules() -> None:
    """Every module depends on the ones below it; only typer's command registration loops."""
    graph = import_graph()
    graph[REGISTRATION[0]].discard(REGISTRATION[1])
    assert [sorted(c) for c in cycles(graph)] == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_module_imports_in_any_order(seed: int) -> None:
    """A fresh interpreter imports every module, in a shuffled order, without an ImportError."""
    order = list(IMPORTABLE)
    random.Random(seed).shuffle(order)
    code = f"import importlib\nfor name in {order!r}:\n    importlib.import_module(name)\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow  # one interpreter per module: about ten seconds
def test_each_module_imports_first_on_its_own() -> None:
    """Each module can be the first wsforge module a program imports."""
    code = (
        "import subprocess, sys\n"
        f"names = {IMPORTABLE!r}\n"
        "bad = []\n"
        "for name in names:\n"
        "    r = subprocess.run([sys.executable, '-c', 'import ' + name], capture_output=True, text=True)\n"
        "    if r.returncode: bad.append((name, r.stderr.splitlines()[-1:]))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_importlib_finds_every_module() -> None:
    """The walker's module list is what Python imports (no stale or misnamed file)."""
    for name in MODULES:
        assert importlib.util.find_spec(name) is not None, name
