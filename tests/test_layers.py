"""The import-layer contract (issue 24 item 1; the map: docs/layers.md): mdbd's modules import in one direction.

The layers are declared once, lowest first, in pyproject.toml's [tool.mdbd.layers]. A module may import modules of
its own layer and of lower layers, never of a higher one, and the import graph has no cycle. Imports inside
functions count (a cycle hidden in a function is still a cycle); those under `if TYPE_CHECKING:` do not (they never
run). An import left inside a function says why on its line (a comment: e.g. `# lazy: torch`).

The graph is read with `ast`, not by importing: a module's `from mdbd.x import y` is an edge to mdbd.x.y when that is
a module, else to mdbd.x. Importing a submodule also runs its parent packages' __init__, which is not counted: a
package's __init__ re-exports its own modules.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from mdbd.core.paths import REPO_ROOT

tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with Python 3.11's tomllib (make test's python)")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported mdbd module
    line: int
    local: bool  # inside a function
    commented: bool  # a comment on one of the statement's lines


def module_names(package_dir: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under `package_dir` (a package is its __init__.py)."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING"


def _imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    source = path.read_text()
    lines = source.splitlines()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    def record(node: ast.stmt, targets: list[str], local: bool) -> None:
        text = lines[node.lineno - 1:node.end_lineno]
        commented = any("#" in line for line in text)
        for target in targets:
            if target is not None and target != name:
                found.append(Import(name, target, node.lineno, local, commented))

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other, local)
                continue
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                record(child, [resolve(a.name) for a in child.names if a.name.split(".")[0] == "mdbd"], local)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[:len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                if base.split(".")[0] == "mdbd":
                    record(child, [resolve(f"{base}.{a.name}") if f"{base}.{a.name}" in modules else resolve(base)
                                   for a in child.names], local)
            visit(child, inner)

    visit(ast.parse(source), False)
    return found


def import_graph(package_dir: Path) -> list[Import]:
    """Every import of a module of the package by another, imports inside functions included."""
    modules = module_names(package_dir)
    return [imp for name, path in modules.items() for imp in _imports_of(name, path, modules)]


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle [a, b, ..., a] of the graph `edges` (module -> modules it imports), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := walk(start)):
            return cycle
    return None


def layer_of(module: str, layers: dict[str, list[str]]) -> int | None:
    """The index of the layer whose entry names `module` or a package above it (the longest entry wins)."""
    best, best_len = None, -1
    for index, entries in enumerate(layers.values()):
        for entry in entries:
            # the root package names only itself: a new top-level module must be given its layer
            below = module.startswith(entry + ".") and "." in entry
            if (module == entry or below) and len(entry) > best_len:
                best, best_len = index, len(entry)
    return best


def upward_imports(imports: list[Import], layers: dict[str, list[str]]) -> list[str]:
    """'a (layer) imports b (higher layer), line N' for every import of a higher layer."""
    names = list(layers)
    bad: dict[str, None] = {}  # one line per statement, in order
    for imp in imports:
        lower, upper = layer_of(imp.source, layers), layer_of(imp.target, layers)
        if lower is not None and upper is not None and upper > lower:
            bad[f"{imp.source} ({names[lower]}) imports {imp.target} ({names[upper]}), line {imp.line}"] = None
    return list(bad)


def declared_layers() -> dict[str, list[str]]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["mdbd"]["layers"]


@pytest.fixture(scope="module")
def graph() -> list[Import]:
    return import_graph(REPO_ROOT / "mdbd")


def _edges(imports: list[Import]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for imp in imports:
        edges.setdefault(imp.source, set()).add(imp.target)
    return edges


def test_no_import_cycle(graph):
    cycle = find_cycle(_edges(graph))
    assert cycle is None, "import cycle (imports inside functions count): " + " -> ".join(cycle)


def test_every_module_has_a_layer():
    layers = declared_layers()
    unplaced = [name for name in module_names(REPO_ROOT / "mdbd") if layer_of(name, layers) is None]
    assert not unplaced, f"modules in no layer of pyproject.toml's [tool.mdbd.layers]: {unplaced}"


def test_no_module_imports_a_higher_layer(graph):
    bad = upward_imports(graph, declared_layers())
    assert not bad, "imports of a higher layer (move the code down, or the importer up):\n" + "\n".join(bad)


def test_an_import_left_inside_a_function_says_why(graph):
    bare = list(dict.fromkeys(f"{imp.source}, line {imp.line}: {imp.target}" for imp in graph
                              if imp.local and not imp.commented))
    assert not bare, ("mdbd imports inside functions without a comment saying why (or move them to the top):\n"
                      + "\n".join(bare))


def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path):
    """The checker itself, on a tiny package: a cycle hidden in a function, an upward import, a TYPE_CHECKING
    import that does not count, and a bare import inside a function."""
    pkg = tmp_path / "mdbd"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("def f():\n    from mdbd.high import g  # lazy: a test\n")
    (pkg / "high.py").write_text("from mdbd import low\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "mid.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                        "    from mdbd.high import g\n\ndef h():\n    from ..low import f\n")
    imports = import_graph(pkg)
    edges = _edges(imports)
    assert edges == {"mdbd.low": {"mdbd.high"}, "mdbd.high": {"mdbd.low"}, "mdbd.sub.mid": {"mdbd.low"}}
    assert find_cycle(edges) in (["mdbd.high", "mdbd.low", "mdbd.high"], ["mdbd.low", "mdbd.high", "mdbd.low"])
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    layers = {"bottom": ["mdbd.low", "mdbd.sub"], "top": ["mdbd.high"]}
    assert upward_imports(imports, layers) == ["mdbd.low (bottom) imports mdbd.high (top), line 2"]
    assert layer_of("mdbd.sub.mid", layers) == 0 and layer_of("mdbd.other", layers) is None
    assert [(i.source, i.commented) for i in imports if i.local] == [("mdbd.low", True), ("mdbd.sub.mid", False)]
