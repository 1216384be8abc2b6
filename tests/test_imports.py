"""The import graph of src/medssl has no cycles, and the data layer imports nothing from the layers above it.

Every ``import``/``from ... import`` of a medssl module counts, at module level and inside functions alike (a
lazy import that closes a cycle is still a cycle). ``from medssl.a import b`` is an edge to the submodule
``medssl.a.b`` when there is one, else to ``medssl.a``. The implicit import of a package's ``__init__`` by
its submodules is not an edge (a package re-exporting from its submodules is no cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def import_graph(src: Path, package: str = "medssl") -> dict[str, set[str]]:
    """Module name -> the modules of ``package`` it imports (see the module docstring)."""
    modules: dict[str, tuple[Path, bool]] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in modules.items():
        here = name if is_pkg else name.rpartition(".")[0]
        found: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {owner(a.name) for a in node.names if a.name.split(".")[0] == package}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                if base.split(".")[0] != package:
                    continue
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else owner(base) for a in node.names}
        graph[name] = {m for m in found if m and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _describe(graph, comp) -> str:
    return "; ".join(f"{m} -> {', '.join(sorted(graph[m] & set(comp)))}" for m in comp)


def test_no_import_cycles():
    graph = import_graph(SRC)
    assert "medssl.config" in graph and "medssl.data.cases" in graph
    found = cycles(graph)
    assert not found, "import cycles: " + " | ".join(_describe(graph, c) for c in found)


def test_data_layer_imports_nothing_above_it():
    """medssl.data.* reads stores and configs; training, methods, models and reports build on it."""
    above = ("medssl.train", "medssl.methods", "medssl.models", "medssl.reports", "medssl.cli", "medssl.jobs",
             "medssl.cost", "medssl.export")
    graph = import_graph(SRC)
    upward = {m: sorted(t for t in deps if t.startswith(above))
              for m, deps in graph.items() if m.startswith("medssl.data")}
    assert not {m: t for m, t in upward.items() if t}


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    pkg = tmp_path / "medssl"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from medssl.sub import b\n")  # function-level
    (pkg / "sub" / "b.py").write_text("from . import c\n")  # relative, names a submodule
    (pkg / "sub" / "c.py").write_text("import medssl.a\n")
    (pkg / "d.py").write_text("from medssl.sub.c import x\n")
    graph = import_graph(tmp_path)
    assert graph["medssl.a"] == {"medssl.sub.b"} and graph["medssl.sub.b"] == {"medssl.sub.c"}
    assert graph["medssl.d"] == {"medssl.sub.c"}
    assert cycles(graph) == [["medssl.a", "medssl.sub.b", "medssl.sub.c"]]
