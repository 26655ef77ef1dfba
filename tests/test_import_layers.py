"""transforms/ reads top-down: no import cycle among its modules, and it imports no layer above it.

Static (ast), so an import under `if TYPE_CHECKING:` or inside a function counts too: a cycle hidden there
still makes the modules impossible to read, or to load, one after the other. Pure file checks, no imports.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "transforms"
UPPER_LAYERS = ("ctxsync", "pipelines")


def imported_modules(source: str, package: str = PACKAGE) -> set[str]:
    """Every module name an `import` or `from ... import` in the source names (any depth in the tree), as an
    absolute name (`from .x import y` in `package` is `package.x`), with `from pkg import mod` also giving
    `pkg.mod` (it may be a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:  # a module directly in the package: one dot is the package itself
                base = ".".join(filter(None, [package, node.module]))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports (relative imports are not used here)."""
    modules = {path.stem for path in package_dir.glob("*.py") if path.stem != "__init__"}
    graph = {}
    for name in modules:
        imported = imported_modules((package_dir / f"{name}.py").read_text(encoding="utf-8"), package_dir.name)
        graph[name] = {m.split(".")[1] for m in imported
                       if m.startswith(package_dir.name + ".") and m.split(".")[1] in modules} - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles, each as the path that closes it (a -> b -> a), found by depth-first search."""
    found, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        for dep in sorted(graph.get(node, ())):
            visit(dep, path + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return found


def test_transforms_has_no_import_cycle():
    graph = import_graph(ROOT / PACKAGE)
    assert len(graph) > 10 and graph["validate"], "the graph finder found nothing: it broke"
    assert cycles(graph) == []


def test_transforms_imports_no_upper_layer():
    offending = sorted(
        f"{path.name}: {module}"
        for path in (ROOT / PACKAGE).glob("*.py")
        for module in imported_modules(path.read_text(encoding="utf-8"))
        if module.split(".")[0] in UPPER_LAYERS)
    assert offending == []


def test_the_check_finds_a_cycle_hidden_under_type_checking(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import thing\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.c import X\n")
    (package / "c.py").write_text("def f():\n    import pkg.a\n")
    (package / "d.py").write_text("from pkg import c\n")
    (package / "e.py").write_text("from .d import f\nfrom . import a\n")
    graph = import_graph(package)
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"c"}, "e": {"a", "d"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    (package / "c.py").write_text("X = 1\n")
    assert cycles(import_graph(package)) == []
