"""The package's import graph: no cycles, and layers that only import downwards.

Every ``.py`` file of ``metaflow_nb`` is parsed with :mod:`ast`; every ``import`` and
``from ... import`` counts, wherever it sits (module level or inside a function), except
those under ``if TYPE_CHECKING:``, which never run. Relative imports are resolved, and
``from pkg import name`` is an import of the submodule ``pkg.name`` when that is a
module. The lazy name table of ``metaflow_nb/__init__.py`` holds strings, not imports.

Layers, ground floor first (a module may import its own layer and the ones below)::

    foundation   metaflow_nb (the package), errors, _numba_cache, data, stats
    engine       kernels and their record types
    workers      contracts, registry, feature cache, built-in plugins
    config       YAML models, translator, BuildSpecs
    assembly     the one run path
    services     backtest, sweeps, store, results
    notebook, reporting
    api          the notebook verbs
    cli          cli, meta_cli, reporting.cli, demo

Run ``python tests/test_layers.py`` to print the graph's cycles and layer violations.
"""
from __future__ import annotations

import ast
import sys
from collections import deque
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "metaflow_nb"

#: (layer name, module prefixes), ground floor first; the longest matching prefix decides
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("metaflow_nb", "metaflow_nb.errors", "metaflow_nb._numba_cache", "metaflow_nb.data",
                    "metaflow_nb.stats")),
    ("engine", ("metaflow_nb.engine",)),
    ("workers", ("metaflow_nb.workers",)),
    ("config", ("metaflow_nb.config",)),
    ("assembly", ("metaflow_nb.assembly",)),
    ("services", ("metaflow_nb.services",)),
    ("notebook/reporting", ("metaflow_nb.notebook", "metaflow_nb.reporting")),
    ("api", ("metaflow_nb.api",)),
    ("cli", ("metaflow_nb.cli", "metaflow_nb.meta_cli", "metaflow_nb.reporting.cli", "metaflow_nb.demo")),
)
TOP = ("metaflow_nb.api", "metaflow_nb.cli")
CLI_MODULES = LAYERS[-1][1]


class Edge(NamedTuple):
    source: str
    target: str
    line: int


# ---------------------------------------------------------------- the graph

def module_files(pkg: Path = PKG) -> dict[str, Path]:
    """``{module name: file}`` of every module of the package."""
    out = {}
    for path in sorted(pkg.rglob("*.py")):
        parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import node, skipping the bodies of ``if TYPE_CHECKING:``."""
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else None
            if name == "TYPE_CHECKING":
                todo.extend(node.orelse)
                continue
        todo.extend(ast.iter_child_nodes(node))


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module or ""
        names = []
        for a in node.names:
            sub = f"{origin}.{a.name}"
            names.append(sub if sub in modules else origin)
    out = []
    for name in names:
        # the longest package module the name lies in ("metaflow_nb.x.y.Thing" -> "metaflow_nb.x.y")
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            out.append(name)
    return out


def import_graph(pkg: Path = PKG) -> list[Edge]:
    """Every import between two modules of the package (function-local ones included)."""
    files = module_files(pkg)
    modules = set(files)
    edges = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in _runtime_imports(tree):
            for target in _targets(node, module, path.name == "__init__.py", modules):
                if target != module:
                    edges.append(Edge(module, target, node.lineno))
    return sorted(set(edges))


def _adjacency(edges: list[Edge]) -> dict[str, set[str]]:
    adj: dict[str, set[str]] = {}
    for e in edges:
        adj.setdefault(e.source, set()).add(e.target)
        adj.setdefault(e.target, set())
    return adj


def strongly_connected(edges: list[Edge]) -> list[list[str]]:
    """The components of more than one module (each one a knot of cycles), Tarjan's way."""
    adj = _adjacency(edges)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(adj):
        if root in index:
            continue
        work = [(root, iter(sorted(adj[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(adj[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def cycles(edges: list[Edge]) -> list[list[str]]:
    """For every module on a cycle, the shortest cycle through it, as a path that ends
    where it starts; the same cycle found from two of its modules is listed once."""
    adj = _adjacency(edges)
    seen: set[tuple[str, ...]] = set()
    out = []
    for comp in strongly_connected(edges):
        inside = set(comp)
        for start in comp:
            prev: dict[str, str] = {}
            queue = deque([start])
            found = None
            while queue and found is None:
                node = queue.popleft()
                for nxt in sorted(adj[node] & inside):
                    if nxt == start:
                        found = node
                        break
                    if nxt not in prev:
                        prev[nxt] = node
                        queue.append(nxt)
            if found is None:  # pragma: no cover - every module of a component is on a cycle
                continue
            path = [found]
            while path[-1] != start:
                path.append(prev[path[-1]])
            path.reverse()
            k = path.index(min(path))
            key = tuple(path[k:] + path[:k])
            if key not in seen:
                seen.add(key)
                out.append([*path, start])
    return out


def layer_of(module: str) -> int:
    best, level = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, level = len(p), i
    return level


def layer_violations(edges: list[Edge]) -> list[str]:
    out = []
    for e in edges:
        a, b = layer_of(e.source), layer_of(e.target)
        if a < b:
            out.append(f"{e.source} ({LAYERS[a][0]}) imports {e.target} ({LAYERS[b][0]}) at line {e.line}")
    return out


def _location(e: Edge) -> str:
    return f"{e.source} -> {e.target} (line {e.line})"


def _cycle_text(found: list[list[str]], edges: list[Edge]) -> str:
    """One cycle a line, each module followed by the line of its import of the next:
    ``a:12 -> b:30 -> a``."""
    lines = {(e.source, e.target): e.line for e in edges}
    return "\n".join("  " + " -> ".join(m + (f":{lines[(m, c[i + 1])]}" if i + 1 < len(c) else "")
                                         for i, m in enumerate(c)) for c in found)


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return import_graph()


# ---------------------------------------------------------------- the tool itself

def test_the_graph_reads_relative_function_local_and_submodule_imports(tmp_path):
    pkg = tmp_path / "metaflow_nb"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('_LAZY = {"x": ("metaflow_nb.a", "x")}\n')
    (pkg / "a.py").write_text("from . import b\nfrom .sub import c as _c, THING\n"
                              "def f():\n    from .sub.c import y\n    import metaflow_nb.b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n"
                              "else:\n    import os\n")
    (pkg / "sub" / "__init__.py").write_text("THING = 1\nfrom .. import b\n")
    (pkg / "sub" / "c.py").write_text("from ..a import z\nfrom . import THING\n")
    got = {(e.source, e.target) for e in import_graph(pkg)}
    assert got == {("metaflow_nb.a", "metaflow_nb.b"), ("metaflow_nb.a", "metaflow_nb.sub.c"),
                   ("metaflow_nb.a", "metaflow_nb.sub"), ("metaflow_nb.sub", "metaflow_nb.b"),
                   ("metaflow_nb.sub.c", "metaflow_nb.a"), ("metaflow_nb.sub.c", "metaflow_nb.sub")}
    found = cycles(import_graph(pkg))
    assert ["metaflow_nb.a", "metaflow_nb.sub.c", "metaflow_nb.a"] in found
    assert all(c[0] == c[-1] for c in found)


def test_layers_cover_every_module(edges):
    assert [m for m in module_files() if layer_of(m) < 0] == []


# ---------------------------------------------------------------- the rules

def test_no_import_cycles(edges):
    found = cycles(edges)
    assert not found, f"{len(found)} import cycle(s) between package modules:\n{_cycle_text(found, edges)}"


def test_engine_imports_nothing_above_it(edges):
    above = ("workers", "config", "assembly", "services", "notebook", "reporting", "api", "cli", "meta_cli", "demo")
    bad = [_location(e) for e in edges if e.source.startswith("metaflow_nb.engine")
           and e.target.split(".")[1] in above]
    assert not bad, "engine/ imports from above it:\n  " + "\n  ".join(bad)


def test_nothing_below_the_top_imports_api_or_cli(edges):
    bad = [_location(e) for e in edges if e.target in TOP and layer_of(e.source) < len(LAYERS) - 1]
    assert not bad, "only the CLI modules may import api.py / cli.py:\n  " + "\n  ".join(bad)


def test_layers_only_import_downwards(edges):
    bad = layer_violations(edges)
    assert not bad, f"{len(bad)} import(s) of a higher layer:\n  " + "\n  ".join(bad)


if __name__ == "__main__":
    graph = import_graph()
    found = cycles(graph)
    print(f"{len(graph)} imports, {len(strongly_connected(graph))} knot(s), {len(found)} cycle(s)")
    for comp in strongly_connected(graph):
        print(f"knot of {len(comp)}: {', '.join(comp)}")
    print(_cycle_text(found, graph))
    for v in layer_violations(graph):
        print("layer:", v)
    sys.exit(1 if found else 0)
