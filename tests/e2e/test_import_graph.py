"""No import circles, every module importable on its own, and the read room never reaching into capture.

The graph is read from the installed package's sources with ``ast`` and counts every import, a
function-level one too: an import moved into a function to dodge a circle is still a circle
(``/work/shared/tools/house.py`` reads the tree the same way). Then each module is imported in a
fresh interpreter, alone (no other project module loaded), and all of them in shuffled orders, so that no module works only
because another one happened to be imported first.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

ROOTS = ("spendlog", "spendlog.db", "spendlog.dashboard", "spendlog.migrations")
# Scripts rather than modules: importing them runs them (the CLI, the Streamlit page, Alembic's env).
SCRIPTS = {"spendlog.__main__", "spendlog.dashboard.app", "spendlog.migrations.env"}
CAPTURE = ("spendlog.transport", "spendlog.capture", "spendlog.usage", "spendlog.answer", "spendlog.headers",
           "spendlog.sse", "spendlog.client", "spendlog.proxy")


def _modules() -> dict[str, Path]:
    """Every module of the installed package: import name -> source file."""
    found: dict[str, Path] = {}

    def walk(package: str, folder: Path) -> None:
        for path in sorted(folder.glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
        for sub in sorted(p for p in folder.iterdir() if (p / "__init__.py").is_file()):
            name = f"{package}.{sub.name}"
            spec = importlib.util.find_spec(name)
            if spec is not None and Path(spec.origin).parent == sub:  # a subpackage, not a stray folder
                walk(name, sub)

    for root in ROOTS:
        walk(root, Path(importlib.util.find_spec(root).origin).parent)
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports anywhere in its source (the longest known prefix)."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    out: set[str] = set()

    def add(target: str) -> None:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            for alias in node.names:
                full = f"{module}.{alias.name}"
                add(full if full in MODULES else module)
    return out


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is not None:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_module_list_is_the_whole_package():
    """The walk finds every room (so the other tests check the whole tree, not a part of it)."""
    for name in ("spendlog.transport", "spendlog.cli.export", "spendlog.proxy.app", "spendlog.report.money",
                 "spendlog.db.queries", "spendlog.dashboard.page", "spendlog.migrations.env"):
        assert name in MODULES, name
    assert any(n.startswith("spendlog.migrations.versions.") for n in MODULES)


def test_the_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_anywhere():
    # a package's own __init__ importing its submodules is not a circle of the design
    graph = {m: {t for t in _imports(m, p) if not t.startswith(m + ".")} for m, p in MODULES.items()}
    assert _circles(graph) == []


def test_the_read_room_never_imports_capture():
    """``spendlog.report`` and the dashboard read through ``spendlog.db``; they never import the
    transports, the client, the proxy or the wire-format parsers, even inside a function."""
    readers = [m for m in MODULES if m.startswith(("spendlog.report", "spendlog.dashboard"))]
    assert "spendlog.report.files" in readers and "spendlog.dashboard.formatting" in readers
    reached = {m: sorted(t for t in _imports(m, MODULES[m]) if t.startswith(CAPTURE)) for m in readers}
    assert {m: t for m, t in reached.items() if t} == {}


IMPORTABLE = sorted(set(MODULES) - SCRIPTS)
# Each name is imported with no project module loaded: before each one, every spendlog module the
# previous import loaded is dropped from sys.modules (third-party libraries stay, to keep it quick).
_EACH_ALONE = r"""
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "spendlog" or m.startswith("spendlog.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failed.append(name + ":\n" + traceback.format_exc(limit=-3))
print("\n".join(failed), file=sys.stderr)
sys.exit(1 if failed else 0)
"""
_IN_ORDER = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"


def _fresh_interpreter(code: str, names: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    return subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=600,
                          env=env)


@pytest.mark.slow
def test_each_module_imports_alone_in_a_fresh_interpreter():
    proc = _fresh_interpreter(_EACH_ALONE, IMPORTABLE)
    assert proc.returncode == 0, proc.stderr[-5000:]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_module_imports_in_a_shuffled_order(seed):
    order = list(IMPORTABLE)
    random.Random(seed).shuffle(order)
    proc = _fresh_interpreter(_IN_ORDER, order)
    assert proc.returncode == 0, f"order (seed {seed}): {order}\n{proc.stderr[-3000:]}"
